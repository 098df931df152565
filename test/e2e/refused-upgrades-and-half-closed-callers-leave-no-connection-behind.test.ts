// Found by the security review of the raw HTTP/1.1 path: a refused upgrade must close its connection (a
// half-open one held a connection slot for ever, on both engines), a caller that resets an upgrade socket
// must not crash the process (node:http no longer listens on a socket it handed over), and a caller that
// half-closes is taken for gone, as node:http takes it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCaller, requestVia } from '../helpers/client.js';
import { mtlsFileOptions } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let nodeEngine: TestSidecar;
beforeAll(async () => {
  s = await startScenario();
  nodeEngine = await startTestSidecar({
    upstream: s.app.url,
    ...mtlsFileOptions(s.files),
    allow: [ALLOWED_ID],
    'http-engine': 'node',
  });
});
afterAll(async () => {
  await nodeEngine?.close();
  await s?.close();
});

const UPGRADE =
  'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

// TLS over a TCP socket of the test's own: the test can reset it (RST), as a hostile caller would. Half-open
// allowed: the client never answers the sidecar's FIN with its own.
const open = (port: number, cert: { chainPem: string; keyPem: string }) => openCaller(port, cert, true);

/** The sidecar's `spiffe_sidecar_active_connections`. */
async function activeConnections(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return Number(/^spiffe_sidecar_active_connections (\d+)$/m.exec(text)?.[1]);
}

describe.each([
  ['raw', () => s.sidecar.port, () => s.sidecar.adminAddress().port],
  ['node', () => nodeEngine.port, () => nodeEngine.adminAddress().port],
])('--http-engine %s', (_engine, port, admin) => {
  it('a refused upgrade is answered and its connection closed by the sidecar, not left half-open', async () => {
    const before = await activeConnections(admin());
    const { socket, received } = await open(port(), s.denied);
    socket.write(UPGRADE);
    await expect.poll(received).toMatch(/^HTTP\/1\.1 403 /);
    expect(received()).toContain('"reason":"no_matching_rule"');
    // The client never closes its side (its TCP socket allows half-open): the sidecar's count of open
    // connections comes back down only if the sidecar closed this one itself, rather than half-closing it.
    await expect.poll(() => activeConnections(admin()), { timeout: 10_000 }).toBe(before);
    socket.destroy();
  });

  it('a caller that resets an upgrade socket right after its refusal does not take the sidecar down', async () => {
    for (let i = 0; i < 5; i++) {
      const { socket, tcp } = await open(port(), s.denied);
      socket.write(UPGRADE);
      await new Promise((resolve) => socket.once('data', resolve));
      tcp.resetAndDestroy();
    }
    expect((await requestVia(port(), s.allowed, { path: '/after-resets' })).status).toBe(200);
  });
});

describe('a caller that half-closes after pipelining', () => {
  it('is taken for gone, as node:http takes it: the connection is closed and no partial request reaches the app', async () => {
    const { socket, closed } = await open(s.sidecar.port, s.allowed);
    socket.end('GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /thr');
    await closed;
    expect(s.app.seen.map((r) => r.url)).not.toContain('/thr');
    expect((await requestVia(s.sidecar.port, s.allowed, { path: '/after-half-close' })).status).toBe(200);
  });
});
