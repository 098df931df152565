// isWebSocketUpgrade as a table, and tunnelWebSocket between a raw caller socket and a real HTTP/1.1 app on
// loopback: 101 and bytes both ways, an app that declines, 502/504, the tunnel idle timeout, other upgrades.
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { answer, writeAnswerRaw } from '../../src/proxy/answers.js';
import { isWebSocketUpgrade, tunnelWebSocket } from '../../src/proxy/forward-websocket.js';
import type { InboundLimits } from '../../src/proxy/limits.js';
import {
  closeServer,
  closedPort,
  forwardContext,
  listenOn,
  logLine,
  namesOf,
  readToClose,
  type TestContext,
  targetFor,
  trackSockets,
} from '../helpers/proxy-unit.js';
import { recordingExchange } from '../helpers/exchange-progress.js';

describe('isWebSocketUpgrade', () => {
  const cases: [method: string, upgrade: string | undefined, expected: boolean][] = [
    ['GET', 'websocket', true],
    ['GET', 'WebSocket', true],
    ['GET', ' websocket ', true],
    ['POST', 'websocket', false],
    ['GET', 'h2c', false],
    ['GET', 'websocket, h2c', false],
    ['GET', undefined, false],
  ];
  it.each(cases)('%s with upgrade %j: %s', (method, upgrade, expected) => {
    const req = { method, headers: upgrade === undefined ? {} : { upgrade } } as http.IncomingMessage;
    expect(isWebSocketUpgrade(req)).toBe(expected);
  });
});

let app: http.Server | undefined;
let front: http.Server | undefined;
let ctx: TestContext | undefined;
const appSockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of appSockets.splice(0)) s.destroy();
  ctx?.close();
  await closeServer(front);
  await closeServer(app);
  app = front = ctx = undefined;
});

interface AppUpgrade {
  rawHeaders: string[];
  url: string;
  head: Buffer;
}

/** An app that accepts WebSocket upgrades (101) and echoes every byte; or declines, is silent, or switches to h2c. */
async function startApp(mode: 'echo' | 'decline' | 'silent' | 'h2c' = 'echo') {
  const upgrades: AppUpgrade[] = [];
  const closed: number[] = [];
  app = http.createServer((req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('upgrade required'));
  app.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    appSockets.push(socket);
    socket.on('error', () => {});
    socket.once('close', () => closed.push(1));
    upgrades.push({ rawHeaders: req.rawHeaders, url: req.url!, head });
    if (mode === 'silent') {
      // Half-open, as Node's server sockets are: the app closes its side once ours has ended.
      socket.once('end', () => socket.end());
      socket.resume();
      return;
    }
    if (mode === 'h2c') {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
      socket.once('end', () => socket.end()); // closes once the sidecar has closed its side
      socket.resume();
      return;
    }
    if (mode === 'decline') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nno way');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n',
    );
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  return { port: await listenOn(app), upgrades, closed };
}

/** An upgrade the sidecar answers itself (or relays the app's refusal of): every byte until it closes. */
async function answerTo(port: number): Promise<{ status: string; text: string }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(UPGRADE);
  const text = (await readToClose(socket)).toString();
  return { status: text.split('\r\n')[0], text };
}

/** What the context's metrics were told of failed app requests. */
const upstreamErrors = (c: TestContext) => c.metrics.calls.filter((call) => call[0] === 'upstreamError');

/** The sidecar's side: upgrades go to tunnelWebSocket, other upgrades get 400, as inbound.ts does. */
async function startFront(appPort: number, overrides: Partial<InboundLimits> = {}) {
  const c = (ctx = forwardContext(`http://127.0.0.1:${appPort}`, overrides));
  const tunnels = new Set<net.Socket>();
  front = http.createServer();
  trackSockets(front);
  front.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (!isWebSocketUpgrade(req)) {
      writeAnswerRaw(socket, answer(400, 'unsupported_upgrade'));
      return;
    }
    tunnelWebSocket(c, socket, head, targetFor(c, req, false, 'websocket'), tunnels, recordingExchange());
  });
  return { port: await listenOn(front), ctx: c, tunnels };
}

const UPGRADE =
  'GET /chat?room=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nx-spiffe-id: forged\r\n\r\n';

/** A raw caller: sends `text`, resolves with the response head and the socket (bytes after the head kept). */
async function upgrade(port: number, text = UPGRADE) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(text);
  let buffered = Buffer.alloc(0);
  for (let i = 0; i < 1000; i++) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    buffered = Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf('\r\n\r\n');
    if (end !== -1) {
      socket.pause();
      return { socket, head: buffered.subarray(0, end).toString(), rest: buffered.subarray(end + 4) };
    }
  }
  throw new Error('no response head');
}

/** Reads from a paused socket until `n` bytes have come (bounded by the socket closing). */
async function readBytes(socket: net.Socket, n: number, initial = Buffer.alloc(0)): Promise<Buffer> {
  let got = initial;
  socket.resume();
  while (got.length < n) {
    const [chunk] = (await Promise.race([
      once(socket, 'data'),
      once(socket, 'close').then(() => [Buffer.alloc(0)]),
    ])) as [Buffer];
    if (chunk.length === 0) break;
    got = Buffer.concat([got, chunk]);
  }
  socket.pause();
  return got;
}

describe('tunnelWebSocket', () => {
  it('101 from the app, then bytes both ways; the app saw the upgrade with our fields', async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    const { socket, head, rest } = await upgrade(f.port);
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
    expect(head).toContain('Sec-WebSocket-Accept: abc');
    expect(f.tunnels.size).toBe(1);
    socket.write('hello through the tunnel');
    expect((await readBytes(socket, 24, rest)).toString()).toBe('hello through the tunnel');
    const seen = a.upgrades[0];
    expect(seen.url).toBe('/chat?room=1');
    expect(seen.rawHeaders.slice(0, 8)).toEqual([
      'x-auth-method',
      'api-key',
      'x-api-key-name',
      'partner',
      'x-forwarded-for',
      '127.0.0.1',
      'x-forwarded-proto',
      'http',
    ]);
    const names = namesOf(seen.rawHeaders);
    expect(names).not.toContain('x-spiffe-id');
    expect(names).toContain('sec-websocket-key');
    expect(seen.rawHeaders.slice(-4)).toEqual(['connection', 'upgrade', 'upgrade', 'websocket']);
    socket.destroy();
    await expect.poll(() => f.tunnels.size, { timeout: 5000, interval: 10 }).toBe(0);
    await expect.poll(() => a.closed.length, { timeout: 5000, interval: 10 }).toBe(1);
  });

  it('bytes sent right after the upgrade request reach the app first', async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    const { socket, rest } = await upgrade(f.port, `${UPGRADE}early bytes`);
    expect((await readBytes(socket, 11, rest)).toString()).toBe('early bytes');
    socket.destroy();
  });

  it('an app that declines the upgrade: its answer is relayed, then the connection closes', async () => {
    const a = await startApp('decline');
    const f = await startFront(a.port);
    const { status, text } = await answerTo(f.port);
    expect(status).toBe('HTTP/1.1 403 Forbidden');
    expect(text.endsWith('\r\n\r\nno way')).toBe(true);
  });

  it('a dead app: 502 upstream_unreachable on the raw socket', async () => {
    const f = await startFront(await closedPort());
    const { status, text } = await answerTo(f.port);
    expect(status).toBe('HTTP/1.1 502 Bad Gateway');
    expect(text).toContain('"reason":"upstream_unreachable"');
    // Counted and logged as an HTTP request the app did not answer is.
    expect(upstreamErrors(f.ctx)).toEqual([['upstreamError', 'upstream_unreachable']]);
    await logLine(f.ctx.logs, { event: 'upstream_error', reason: 'upstream_unreachable', error: 'ECONNREFUSED' });
  });

  it('an app that switches to another protocol: 502 bad_response, counted as a response that cannot be relayed', async () => {
    const a = await startApp('h2c');
    const f = await startFront(a.port);
    const { status, text } = await answerTo(f.port);
    expect(status).toBe('HTTP/1.1 502 Bad Gateway');
    expect(text).toContain('"reason":"bad_response"');
    expect(upstreamErrors(f.ctx)).toEqual([['upstreamError', 'upstream_unreachable']]);
    // The app's connection is not kept: the sidecar closed it.
    await expect.poll(() => a.closed.length).toBe(1);
  });

  it('a caller that leaves before the app answers takes the app request with it, and no app failure is counted', async () => {
    const a = await startApp('silent');
    const f = await startFront(a.port, { upstreamTimeoutMs: 60_000 });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.write(UPGRADE);
    await expect.poll(() => a.upgrades.length).toBe(1);
    socket.resetAndDestroy();
    // The app connection is closed by the sidecar (the app would wait for ever), not at --upstream-timeout.
    await expect.poll(() => a.closed.length).toBe(1);
    expect(upstreamErrors(f.ctx)).toEqual([]);
    expect(f.ctx.logs.filter((l) => l.event === 'upstream_error')).toEqual([]);
  });

  it('a caller cut by us before the app answers (a drain, a revocation) takes the app request with it', async () => {
    const a = await startApp('silent');
    const f = await startFront(a.port, { upstreamTimeoutMs: 60_000 });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(UPGRADE);
    await expect.poll(() => a.upgrades.length).toBe(1);
    for (const tunnel of f.tunnels) tunnel.destroy();
    await expect.poll(() => a.closed.length).toBe(1);
    expect(upstreamErrors(f.ctx)).toEqual([]);
  });

  it('an app that does not answer the upgrade within --upstream-timeout: 504', async () => {
    const a = await startApp('silent');
    const f = await startFront(a.port, { upstreamTimeoutMs: 150 });
    const { status, text } = await answerTo(f.port);
    expect(status).toBe('HTTP/1.1 504 Gateway Timeout');
    expect(text).toContain('"reason":"upstream_timeout"');
    // Only the one answer: the app request's failure adds no second response.
    expect(text.match(/HTTP\/1\.1/g)).toHaveLength(1);
    await expect.poll(() => a.closed.length, { timeout: 5000, interval: 10 }).toBe(1);
    // Counted once, as a timeout (the app request destroyed after it is not a second failure), and logged.
    expect(upstreamErrors(f.ctx)).toEqual([['upstreamError', 'upstream_timeout']]);
    await logLine(f.ctx.logs, { event: 'upstream_error', reason: 'upstream_timeout' });
  });

  it('no byte either way for --tunnel-idle-timeout: logged, both sides closed', async () => {
    const a = await startApp();
    const f = await startFront(a.port, { tunnelIdleTimeoutMs: 200 });
    const { socket } = await upgrade(f.port);
    socket.resume();
    await once(socket, 'close');
    await logLine(f.ctx.logs, { event: 'request_timeout', reason: 'tunnel_idle_timeout', remote: '127.0.0.1' });
    await expect.poll(() => a.closed.length, { timeout: 5000, interval: 10 }).toBe(1);
    expect(f.tunnels.size).toBe(0);
  });

  it('any other upgrade is refused with 400 unsupported_upgrade, and the app sees nothing', async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    const socket = net.connect(f.port, '127.0.0.1');
    socket.write(
      'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
    );
    const text = (await readToClose(socket)).toString();
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(text).toContain('"reason":"unsupported_upgrade"');
    expect(a.upgrades).toEqual([]);
  });
});
