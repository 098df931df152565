// A WebSocket caller may send frames right after its upgrade request, before the app's 101 (nothing in
// RFC 6455 stops a client from doing so): those bytes must reach the app once the tunnel is up, not be read and
// dropped while the sidecar waits for the app. And an app that declines the upgrade is relayed as a response
// the caller can read: its status with our reason phrase (never the app's), its body as the caller receives it
// (de-chunked, so no chunked framing is announced), and the connection closing after it. An app's 101 reaches the
// caller without the fields of the app's hop (RFC 9110 §7.6.1), as any answer does; a 101 that is no switch to
// WebSocket (another protocol, two, or no Connection: upgrade) is a 502 and nothing of it is relayed. Both engines.
import * as http from 'node:http';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { createDevCa, issueSvid, mtlsFileOptions, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';
const UPGRADE =
  'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
const DECLINE =
  'HTTP/1.1 403 No\x01Way\r\nTransfer-Encoding: chunked\r\nX-App: declined\r\n\r\n6\r\nno way\r\n5\r\n, sir\r\n0\r\n\r\n';

/**
 * The app's canned answers to upgrades, by path (written as latin1). A 101 with fields of the app's hop (RFC 9110
 * §7.6.1) beside those that make the switch, one of the app's and a byte past ASCII; and 101s that are no switch to
 * WebSocket: to another protocol, to two, and one without Connection: upgrade (node:http takes it for a response).
 */
const SWITCHES: Record<string, string> = {
  '/switch-with-hop-fields':
    'HTTP/1.1 101 Switching\x01Now\r\nUpgrade: WebSocket\r\nConnection: Upgrade, X-Hop\r\nX-Hop: app-hop-only\r\n' +
    'Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nContent-Length: 0\r\n' +
    'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-App: caf\xe9\r\n\r\n',
  '/switch-to-h2c': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI * HTTP/2.0',
  '/switch-to-two':
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n',
  '/switch-without-connection': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframes',
};

interface Held {
  socket: Socket;
  /** Writes the 101, then resolves with every byte the app reads, once `until` is among them. */
  accept(until: string): Promise<string>;
}

/** The app: `/ws` upgrades wait for the test (held), `/declined` upgrades get DECLINE. */
function startApp() {
  const held: ((h: Held) => void)[] = [];
  const server = http.createServer((_req, res) => res.end('not an upgrade'));
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    opened.push(socket);
    socket.on('error', () => {});
    if (req.url === '/declined') {
      socket.end(DECLINE);
      return;
    }
    const canned = SWITCHES[req.url ?? ''];
    if (canned !== undefined) {
      socket.write(canned, 'latin1');
      return;
    }
    let read = head.toString('latin1');
    held.shift()?.({
      socket,
      accept: (until) =>
        new Promise((resolve) => {
          socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
          const check = () => {
            if (read.includes(until)) resolve(read);
          };
          socket.on('data', (d: Buffer) => {
            read += d.toString('latin1');
            check();
          });
          check();
        }),
    });
  });
  const nextUpgrade = () => new Promise<Held>((resolve) => held.push(resolve));
  return { server, nextUpgrade };
}

async function open(port: number, cert: IssuedCertificate) {
  const socket: TLSSocket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: cert.chainPem,
    key: cert.keyPem,
    rejectUnauthorized: false,
  });
  opened.push(socket);
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  let received = '';
  const waiting: { text: string; resolve: () => void }[] = [];
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
    for (const w of waiting.filter((w) => received.includes(w.text))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  /** Resolves once `text` is among the bytes received (an event, not a deadline: the test's timeout bounds it). */
  const until = (text: string) =>
    received.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ text, resolve }));
  return { socket, received: () => received, closed, until };
}

/** The status line and the fields of what `received` begins with. */
function headOf(received: string): { status: string; fields: string[]; names: string[] } {
  const [status, ...fields] = received.slice(0, received.indexOf('\r\n\r\n')).split('\r\n');
  return { status, fields, names: fields.map((f) => f.slice(0, f.indexOf(':')).toLowerCase()) };
}

/** Resolves once `socket` has handed `text` to the kernel. */
const send = (socket: TLSSocket, text: string) => new Promise<void>((resolve) => socket.write(text, () => resolve()));

/**
 * Event-loop turns, not time: the sidecar runs in this process, so after a few turns it has read what the
 * kernel already held for it (each turn polls its sockets).
 */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Sockets of the app and of the callers, destroyed at the end whatever a test left open. */
const opened: Socket[] = [];

let dir: { path: string; remove: () => Promise<void> };
let app: ReturnType<typeof startApp>;
let caller: IssuedCertificate;
const sidecars: Record<'raw' | 'node', TestSidecar> = {} as Record<'raw' | 'node', TestSidecar>;

/** Warnings the process printed while the tunnels ran (the sidecars run in this process). */
const warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);

beforeAll(async () => {
  process.on('warning', onWarning);
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  caller = await issueSvid(ca, { id: A });
  const files = mtlsFileOptions(await writeServingFiles(dir.path, await issueSvid(ca, { id: B }), ca.certPem));
  app = startApp();
  await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
  const upstream = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  for (const engine of ['raw', 'node'] as const)
    sidecars[engine] = await startTestSidecar({
      upstream,
      ...files,
      allow: [A],
      'http-engine': engine,
    });
});
afterAll(async () => {
  process.off('warning', onWarning);
  for (const socket of opened) socket.destroy();
  for (const s of Object.values(sidecars)) await s.close();
  app.server.closeAllConnections();
  await new Promise((resolve) => app.server.close(resolve));
  await dir.remove();
});

describe.each(['raw', 'node'] as const)('the %s engine', (engine) => {
  // Each tunnel and each declined upgrade adds a fixed number of listeners to the caller's socket (its pipeline's):
  // Node must not take them for a leak and print a warning for every tunnel.
  afterEach(async () => {
    await turns(2); // process.emitWarning emits on a later tick
    expect(warnings.splice(0).map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });

  it("bytes the caller sends after its upgrade request, before the app's 101, reach the app first", async () => {
    const c = await open(sidecars[engine].port, caller);
    const upgraded = app.nextUpgrade();
    await send(c.socket, UPGRADE);
    const held = await upgraded;
    // The app has the upgrade request and has not answered: the caller's next bytes come in their own read.
    await send(c.socket, 'early-frame;');
    await turns(5);
    const read = held.accept('late-frame');
    await c.until('101 Switching Protocols');
    await send(c.socket, 'late-frame');
    expect(await read).toBe('early-frame;late-frame');
  });

  it("the app's 101 reaches the caller with the fields of the switch and the app's own, not those of the app's hop", async () => {
    const c = await open(sidecars[engine].port, caller);
    c.socket.write(UPGRADE.replace('/ws', '/switch-with-hop-fields'));
    await c.until('\r\n\r\n');
    const { status, fields, names } = headOf(c.received());
    expect(status).toBe('HTTP/1.1 101 Switching Protocols');
    // Its own bytes as the app sent them (latin1 é, not re-encoded as UTF-8).
    expect(fields).toEqual(
      expect.arrayContaining([
        'upgrade: websocket',
        'connection: upgrade',
        'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
        'X-App: caf\xe9',
      ]),
    );
    for (const hop of ['x-hop', 'keep-alive', 'proxy-connection', 'content-length'])
      expect(names, hop).not.toContain(hop);
    // One Connection field and one Upgrade, ours: the app's (its Connection named X-Hop) do not reach the caller.
    expect(names.filter((n) => n === 'connection' || n === 'upgrade').sort()).toEqual(['connection', 'upgrade']);
  });

  it.each(['/switch-to-h2c', '/switch-to-two', '/switch-without-connection'])(
    'a 101 that is no switch to WebSocket (%s) is 502 bad_response, and nothing of it reaches the caller',
    async (path) => {
      const c = await open(sidecars[engine].port, caller);
      c.socket.write(UPGRADE.replace('/ws', path));
      await c.closed;
      const { status } = headOf(c.received());
      expect(status).toBe('HTTP/1.1 502 Bad Gateway');
      expect(JSON.parse(c.received().slice(c.received().indexOf('\r\n\r\n') + 4))).toEqual({
        error: 'bad_gateway',
        reason: 'bad_response',
      });
      expect(c.received()).not.toContain('101');
      expect(c.received()).not.toContain('PRI *');
      expect(c.received()).not.toContain('frames');
    },
  );

  it("a declined upgrade: the app's status with our reason phrase, its body de-chunked, then the close", async () => {
    const c = await open(sidecars[engine].port, caller);
    c.socket.write(UPGRADE.replace('/ws', '/declined'));
    await c.closed;
    const text = c.received();
    const end = text.indexOf('\r\n\r\n');
    const { status, fields, names } = headOf(text);
    expect(status).toBe('HTTP/1.1 403 Forbidden');
    expect(fields).toContain('X-App: declined');
    expect(names).not.toContain('transfer-encoding');
    expect(fields.map((f) => f.toLowerCase())).toContain('connection: close');
    expect(text.slice(end + 4)).toBe('no way, sir');
  });
});
