// ghostunnel as the second mTLS reference: a Go TLS proxy (crypto/tls) that checks the client's SPIFFE ID, built
// once per machine from the Go module proxy at the version test/interop/go-peers.js pins (v1.8.4, the newest the
// proxy serves), into ~/.cache/spiffe-sidecar-interop. The bench says what it does and goes on without the row
// when it cannot build it (no Go, the module proxy unreachable), as it does without nginx.
// In server mode it terminates mTLS and relays bytes to the app (L4: one app connection per client connection,
// no HTTP parsing); it is run as deployed (GOMAXPROCS = the CPU count), with per-connection log lines off
// (`--quiet=conns`, as nginx runs without an access log) and a short drain on SIGTERM.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { connect } from 'node:tls';
import { buildPeer, goVersion, PEERS } from '../../test/interop/go-peers.js';

/** The version go-peers.js builds, e.g. v1.8.4. */
export const GHOSTUNNEL_VERSION = /** @type {{ version: string }} */ (PEERS.ghostunnel).version;

/**
 * @typedef {{ binary: string, version: string, go: string } | { missing: string }} Ghostunnel
 */

/**
 * The ghostunnel binary, built when the cache does not have it; `{ missing }` (with the reason logged) when it
 * is skipped or cannot be built.
 * @param {(line: string) => void} say
 * @param {boolean} wanted whether this run measures the row (BENCH_ONLY): no build otherwise
 * @returns {Promise<Ghostunnel>}
 */
export async function ensureGhostunnel(say, wanted) {
  if (process.env.BENCH_GHOSTUNNEL === 'skip') {
    say('ghostunnel: skipped (BENCH_GHOSTUNNEL=skip): its row and the ratios against it are left out');
    return { missing: 'skipped (BENCH_GHOSTUNNEL=skip)' };
  }
  if (!wanted) return { missing: 'not run (BENCH_ONLY)' };
  try {
    const peer = await buildPeer('ghostunnel', (line) => say(line.replace(/^interop: /, 'ghostunnel: ')));
    const version = peer.version.replace(/^.*@/, '');
    const go = await goVersion();
    say(
      `ghostunnel: ${version} (${go}) ${peer.built ? `built in ${peer.seconds} s` : 'from the cache'}: ${peer.bin.ghostunnel}`,
    );
    return { binary: peer.bin.ghostunnel, version, go };
  } catch (err) {
    const message = /** @type {Error} */ (err).message.split('\n')[0];
    say(`ghostunnel: could not be built (${message}): the ghostunnel row is skipped`);
    return { missing: `not available (could not be built: ${message})` };
  }
}

/**
 * The command line of ghostunnel in server mode in front of the app, with the bench's server SVID, trusting the
 * bench's CA and admitting only the load generator's SPIFFE ID.
 * @param {{ port: number, appPort: number, certDir: string, allowId: string }} options
 * @returns {string[]}
 */
export function ghostunnelArgs({ port, appPort, certDir, allowId }) {
  return [
    'server',
    `--listen=127.0.0.1:${port}`,
    `--target=127.0.0.1:${appPort}`,
    `--cert=${join(certDir, 'tls.crt')}`,
    `--key=${join(certDir, 'tls.key')}`,
    `--cacert=${join(certDir, 'ca.crt')}`,
    `--allow-uri=${allowId}`,
    '--quiet=conns',
    '--shutdown-timeout=2s',
  ];
}

/**
 * Checks that ghostunnel does check the caller's SPIFFE ID, not only its CA (as the sidecar rows do): a client
 * with another ID of the same trust domain (the server's own SVID) gets no answer. Throws if it gets one.
 * @param {number} port
 * @param {string} otherSvidDir tls.crt, tls.key, ca.crt of an SVID whose ID is not allowed
 */
export async function expectOtherIdsRefused(port, otherSvidDir) {
  const read = (/** @type {string} */ file) => readFileSync(join(otherSvidDir, file), 'utf8');
  const answer = await new Promise((resolve) => {
    let text = '';
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: read('tls.crt'),
      key: read('tls.key'),
      ca: read('ca.crt'),
      checkServerIdentity: () => undefined,
    });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'));
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
  });
  if (answer !== '') {
    throw new Error(`ghostunnel answered a client whose SPIFFE ID is not allowed: ${String(answer).slice(0, 80)}`);
  }
}
