// A caller connection keeps its app connection while it lasts; when the caller leaves, the app connection may be
// pooled for the next caller, but only for what is left of the app's `Keep-Alive: timeout` (less a margin), counted
// from the app's last response: the app counts from there too. Counted from the caller's leaving, a connection the
// caller had kept idle could be reused just as the app closed it: a 502 (`read ECONNRESET`), seen under load in
// rotation-under-load-drops-no-request. Here the app says `timeout=4`, never closes anything itself (so a wrongly
// pooled connection would be reused, not merely reset), and the caller idles 3.2 s: more than 4 s less the 1 s margin.
// Counted wrongly, the connection would wait in the pool for 3 s more and the next caller would get it.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { openRaw } from '../helpers/client.js';
import { createDevCa, issueSvid, servingOptions, tempDir } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const CLIENT_ID = 'spiffe://example.org/caller';
let dir: { path: string; remove: () => Promise<void> };
let app: Server;
let sidecar: TestSidecar;
let client: IssuedCertificate;
/** The app's connections, in the order they came, and which one served each request (by path). */
const appSockets: Socket[] = [];
const servedOn = new Map<string, number>();

beforeAll(async () => {
  dir = await tempDir();
  app = createServer((socket) => {
    const index = appSockets.push(socket) - 1;
    let pending = '';
    socket.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(0, end).split(' ')[1] ?? '';
        pending = pending.slice(end + 4);
        servedOn.set(path, index);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=4\r\n\r\nok');
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const ca = await createDevCa({ trustDomain: 'example.org' });
  client = await issueSvid(ca, { id: CLIENT_ID });
  sidecar = await startTestSidecar({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    ...(await servingOptions(dir.path, ca, 'spiffe://example.org/server')),
    allow: [CLIENT_ID],
  });
});
afterAll(async () => {
  await sidecar.close();
  for (const socket of appSockets) socket.destroy();
  await new Promise((resolve) => app.close(resolve));
  await dir.remove();
});

/** The one request of a raw TLS connection; resolves once its whole response has come. */
async function get(caller: Awaited<ReturnType<typeof openRaw>>, path: string): Promise<void> {
  caller.socket.write(`GET ${path} HTTP/1.1\r\nhost: app\r\n\r\n`);
  await new Promise<void>((resolve) => {
    const check = () => {
      if (!caller.received().endsWith('\r\n\r\nok')) return;
      caller.socket.off('data', check);
      resolve();
    };
    caller.socket.on('data', check);
    check();
  });
}

describe('an app connection idle for most of the app’s keep-alive timeout is not pooled', () => {
  it('closes it when its caller leaves, and the next caller gets a new one', async () => {
    const first = await openRaw(sidecar.port, client);
    await get(first, '/first');
    expect(servedOn.get('/first')).toBe(0);
    const firstAppSocket = appSockets[0] as Socket;
    const appSideClosed = new Promise<void>((resolve) => firstAppSocket.once('close', () => resolve()));
    // Idle longer than the app's 4 s less the 1 s margin, then leave, and the next caller comes at once.
    await new Promise((r) => setTimeout(r, 3200));
    first.socket.end();
    const second = await openRaw(sidecar.port, client);
    await get(second, '/second');
    expect(servedOn.get('/second')).toBe(1);
    expect(appSockets).toHaveLength(2);
    // The first one was closed by the sidecar (the app never closes a connection here).
    await appSideClosed;
    second.socket.destroy();
  });
});
