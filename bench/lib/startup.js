// Startup to ready: spawn the CLI → /readyz answers 200, several times, in each identity/auth mode: file
// (certs on disk, mTLS), jwt (JWT bundle file, plain transport) and spire (the SVID from a Workload API over
// a Unix socket, mTLS); and, for scale, the same for a Node process that only serves /readyz (what Node
// itself costs here). With a second Node for the sidecar (the `-node24` rows' one) every mode runs on both,
// the newer Node's series named `file@24`, `jwt@24`, `spire@24`, `bare@24`. The modes take turns within each
// run (file, jwt, spire, bare, file@24, ..., file, ...) so that a busy moment on the shared machine lands on
// all of them rather than on one mode's series.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { URL } from 'node:url';
import { freePort, spawnChild, stopChild, waitForHttp200, waitForLine } from './children.js';
import { SERVER_ID } from './pki.js';
import { hasCompileCache, sidecarArgs, startSidecar } from './sidecar.js';
import { cpuMs } from './proc.js';
import { median } from './stats.js';

const BARE_NODE = `
const http = require('node:http');
http.createServer((req, res) => res.end('ok')).listen(Number(process.argv[1]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

/** The sidecar's startup modes, in the order they take turns. */
export const STARTUP_MODES = /** @type {const} */ (['file', 'jwt', 'spire']);

/** @typedef {(typeof STARTUP_MODES)[number]} StartupMode */

/** File mode again without the compile cache the image ships (on the Nodes that have one): what it saves. */
export const COLD_MODE = 'file-cold';

/**
 * @typedef {object} StartupSeries
 * @property {number[]} ms spawn → ready, per run
 * @property {number[]} cpuMs CPU time to ready (utime + stime), per run: what the wall time would be on an
 *   idle core, so less sensitive to a busy machine
 * @property {number | undefined} medianMs
 * @property {number | undefined} cpuMedianMs
 * @property {string} [error] the failure that stopped this series (later runs skip it)
 */

/** @returns {StartupSeries} */
const series = () => ({ ms: [], cpuMs: [], medianMs: undefined, cpuMedianMs: undefined });

/**
 * @typedef {object} StartupResult
 * @property {number} runs
 * @property {{ tag: string, version: string }[]} nodes the Nodes measured, in turn order
 * @property {Record<string, StartupSeries>} modes by mode and Node tag: `file`, `jwt`, `spire`, `file@24`, ...
 * @property {Record<string, StartupSeries>} bare the bare Node server, by Node tag ('' and '@24')
 */

/**
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string,
 *   appPort: number, nodes: import('./sidecar-nodes.js').SidecarNode[] }} ctx `nodes`: the sidecar's Nodes
 * @returns {Promise<StartupResult>}
 */
export async function measureStartup({ options, pki, tmp, appPort, nodes }) {
  /** @type {Record<string, StartupSeries>} */
  const modes = Object.fromEntries(
    nodes.flatMap((n) => [...STARTUP_MODES, COLD_MODE].map((m) => [`${m}${n.tag}`, series()])),
  );
  /** @type {Record<string, StartupSeries>} */
  const bare = Object.fromEntries(nodes.map((n) => [n.tag, series()]));

  // One Workload API for every spire run, started before the first: its own startup is not the sidecar's.
  const socket = join(tmp, 'agent.sock');
  const workloadApi = spawnChild(
    process.execPath,
    [new URL('../servers/workload-api.js', import.meta.url).pathname, socket, pki.serverDir, SERVER_ID, pki.jwksFile],
    { logFile: join(tmp, 'workload-api.log'), pipeStdout: true },
  );
  try {
    await waitForLine(workloadApi, /^listening /m, 10_000).catch((err) => {
      for (const n of nodes) modes[`spire${n.tag}`].error = `Workload API: ${err.message}`;
    });

    for (let i = 0; i < options.startupRuns; i++) {
      for (const node of nodes) {
        await startupTurn({ options, pki, tmp, appPort, socket, node, modes, bareNode: bare[node.tag] });
      }
    }
  } finally {
    await stopChild(workloadApi);
  }

  for (const s of [...Object.values(modes), ...Object.values(bare)]) {
    s.medianMs = median(s.ms);
    s.cpuMedianMs = median(s.cpuMs);
  }
  return { runs: options.startupRuns, nodes: nodes.map((n) => ({ tag: n.tag, version: n.version })), modes, bare };
}

/**
 * One turn of every mode on one Node, then the bare Node server on it.
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string,
 *   appPort: number, socket: string, node: import('./sidecar-nodes.js').SidecarNode,
 *   modes: Record<string, StartupSeries>, bareNode: StartupSeries }} turn
 */
async function startupTurn({ options, pki, tmp, appPort, socket, node, modes, bareNode }) {
  const cold = hasCompileCache(node.path) ? [COLD_MODE] : [];
  for (const mode of [...STARTUP_MODES, ...cold]) {
    const s = modes[`${mode}${node.tag}`];
    if (s.error) continue;
    const [port, adminPort] = [await freePort(), await freePort()];
    const args = sidecarArgs(
      { auth: mode === 'jwt' ? 'jwt' : 'mtls' },
      {
        port,
        adminPort,
        appPort,
        certDir: pki.serverDir,
        jwksFile: pki.jwksFile,
        workloadApiSocket: mode === 'spire' ? socket : undefined,
      },
    );
    try {
      const { child, readyMs } = await startSidecar({
        node: node.path,
        cli: options.cli,
        nodeArgs: options.sidecarNodeArgs,
        args: [...args, ...options.sidecarArgs],
        adminPort,
        logFile: join(tmp, `startup-${mode}${node.tag}.log`),
        cold: mode === COLD_MODE,
      });
      s.ms.push(readyMs);
      s.cpuMs.push(cpuMs([/** @type {number} */ (child.pid)]));
      await stopChild(child);
    } catch (err) {
      // One mode failing (say, no Workload API) should not cost the others their numbers.
      s.error = /** @type {Error} */ (err).message;
    }
  }

  const barePort = await freePort();
  const spawned = performance.now();
  // The sidecar's Node: the scale is what that Node itself costs to start.
  const bare = spawnChild(node.path, ['-e', BARE_NODE, String(barePort)], {
    logFile: join(tmp, `startup-node${node.tag}.log`),
  });
  const ready = await waitForHttp200(`http://127.0.0.1:${barePort}/readyz`, { timeoutMs: 10_000, child: bare });
  bareNode.ms.push(ready - spawned);
  bareNode.cpuMs.push(cpuMs([/** @type {number} */ (bare.pid)]));
  await stopChild(bare);
}
