// VERIFIER-RULES B8 on the outbound side, as the peer gate does for callers: a remote whose leaf has no keyUsage
// extension is accepted (RFC 5280 reads none as no restriction), but X509-SVID §4.3 says an SVID sets
// digitalSignature, so the sidecar logs the remote's issuer's mistake once, when it first verifies the leaf, not on
// every connection, whichever route (HTTPS or TCP) reaches it.
import { createServer, type Server } from 'node:https';
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { createDevCa, issueSvid, servingOptions, svidWith, tempDir } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/ns/shop/sa/orders';
const REMOTE = 'spiffe://example.org/ns/db/sa/bare';
const WELL_MADE = 'spiffe://example.org/ns/db/sa/well-made';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let sidecar: TestSidecar;
const remotes: Server[] = [];

/** An HTTPS remote serving `id` (its leaf as `template` makes it) that answers "reached <name>". */
async function remote(id: string, name: string, template: Parameters<typeof svidWith>[2] = {}): Promise<number> {
  const svid = Object.keys(template).length > 0 ? await svidWith(ca, id, template) : await issueSvid(ca, { id });
  const server = createServer({ cert: svid.chainPem, key: svid.keyPem }, (_req, res) => res.end(`reached ${name}`));
  remotes.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** The app's plain HTTP request through outbound route `i` (an https:// route). */
async function viaHttpsRoute(i: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${sidecar.outboundAddresses()[i].port}/`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The app's bytes through outbound route `i` (a tls:// route): one HTTP/1.1 request, read to the end. */
function viaTcpRoute(i: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port: sidecar.outboundAddresses()[i].port });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
    socket.write('GET / HTTP/1.1\r\nhost: remote\r\nconnection: close\r\n\r\n');
  });
}

const warnings = () => sidecar.logs.filter((l) => l.event === 'remote_without_key_usage');

let barePort: number;
beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  barePort = await remote(REMOTE, 'bare', { keyUsage: undefined });
  const wellMadePort = await remote(WELL_MADE, 'well-made');
  sidecar = await startTestSidecar({
    ...(await servingOptions(dir.path, ca, A)),
    outbound: [
      `127.0.0.1:0=https://127.0.0.1:${wellMadePort},id=${WELL_MADE}`,
      `127.0.0.1:0=https://127.0.0.1:${barePort},id=${REMOTE}`,
      `127.0.0.1:0=tls://127.0.0.1:${barePort},id=${REMOTE}`,
    ],
  });
});
afterAll(async () => {
  await sidecar?.close();
  for (const server of remotes) server.close();
  await dir?.remove();
});

it('a remote whose SVID has keyUsage is reached with no warning', async () => {
  expect(await viaHttpsRoute(0)).toBe('reached well-made');
  expect(warnings()).toEqual([]);
});

it('a remote whose SVID has no keyUsage is reached, and one warning names it, for its first connection only', async () => {
  expect(await viaHttpsRoute(1)).toBe('reached bare');
  expect(warnings()).toEqual([
    expect.objectContaining({
      level: 'warn',
      event: 'remote_without_key_usage',
      id: REMOTE,
      remote: `127.0.0.1:${barePort}`,
    }),
  ]);
  // A new TLS connection to it (the TCP route's own) finds the leaf verified: it was logged when verified.
  expect(await viaTcpRoute(2)).toMatch(/^HTTP\/1\.1 200 [^]*reached bare$/);
  expect(warnings()).toHaveLength(1);
});
