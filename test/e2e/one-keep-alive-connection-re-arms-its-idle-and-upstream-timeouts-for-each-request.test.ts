// The HTTP/1.1 engine's timeouts belong to each request, not to the connection they share: on one keep-alive
// connection, a request made after the previous one's --upstream-timeout would have run out still gets its own
// (504), and a slow request outlasting --idle-timeout is not cut by it (the connection was not idle); once
// idle again, the connection is closed; a head begun after a request, or pipelined behind a slow one, still gets
// its --header-timeout (408). The guard of the engine's timers, made once per connection and re-armed
// with refresh() for each request, a timer that fires when no longer armed doing nothing (h1-connection.ts).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { type Http2Fixture, useHttp2Fixture } from '../helpers/http2-fixture.js';

const fixture = useHttp2Fixture();
let allowed: IssuedCertificate;
let sidecarFor: Http2Fixture['sidecarFor'];
let app: Server;
let appUrl: string;
/** Called by the app for /late: answers the request when the test says so. */
let answerLate: (() => void) | undefined;

beforeAll(async () => {
  ({ allowed, sidecarFor } = fixture());
  app = createServer((req, res) => {
    if (req.url === '/never') return; // no answer: --upstream-timeout's case
    if (req.url === '/late') {
      answerLate = () => res.end('late');
      return;
    }
    res.end('fast');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
});
afterAll(async () => {
  app.closeAllConnections();
  await new Promise<void>((resolve) => app.close(() => resolve()));
});

/** One caller connection; `request` sends a GET and resolves with the status and body of its response. */
async function callerConnection(port: number): Promise<{
  socket: TLSSocket;
  request(path: string): Promise<{ status: number; body: string }>;
  closed: Promise<void>;
  /** Every byte received so far. */
  received(): string;
}> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    cert: allowed.chainPem,
    key: allowed.keyPem,
    rejectUnauthorized: false,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  let buffered = '';
  let all = '';
  let waiting: ((r: { status: number; body: string }) => void) | undefined;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    buffered += d.toString('latin1');
    all += d.toString('latin1');
    const end = buffered.indexOf('\r\n\r\n');
    if (end < 0 || !waiting) return;
    const head = buffered.slice(0, end);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? '0');
    if (buffered.length < end + 4 + length) return;
    const body = buffered.slice(end + 4, end + 4 + length);
    buffered = buffered.slice(end + 4 + length);
    const done = waiting;
    waiting = undefined;
    done({ status: Number(head.split(' ')[1]), body });
  });
  return {
    socket,
    closed,
    received: () => all,
    request: (path) =>
      new Promise((resolve) => {
        waiting = resolve;
        socket.write(`GET ${path} HTTP/1.1\r\nhost: app\r\n\r\n`);
      }),
  };
}

describe('one keep-alive connection re-arms its idle, upstream and header timeouts for each request', () => {
  it('a request after a quick one on the same connection still gets 504 at --upstream-timeout', async () => {
    const sidecar = await sidecarFor(appUrl, { 'upstream-timeout': '1s' });
    const caller = await callerConnection(sidecar.port);
    try {
      expect(await caller.request('/fast')).toEqual({ status: 200, body: 'fast' });
      // The timer armed for /fast comes due first, for nothing (this process's event loop: deadline order);
      // /never must get it anew.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const timedOut = await caller.request('/never');
      expect(timedOut.status).toBe(504);
    } finally {
      caller.socket.destroy();
    }
  }, 15_000);

  it('a slow request that outlasts --idle-timeout is not cut by it; idle again, the connection is closed', async () => {
    const sidecar = await sidecarFor(appUrl, { 'idle-timeout': '1s', 'upstream-timeout': '30s' });
    const caller = await callerConnection(sidecar.port);
    try {
      expect(await caller.request('/fast')).toEqual({ status: 200, body: 'fast' });
      answerLate = undefined;
      const late = caller.request('/late');
      // The idle timeout counted from /fast's end runs out during /late: the connection must still be open.
      // The sidecar runs in this process, on this event loop: a timer of ours armed now for longer than its
      // idle timeout fires after that one (timers run in deadline order), whatever the machine's load.
      await expect.poll(() => answerLate, { timeout: 10_000 }).toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(caller.socket.destroyed).toBe(false);
      (answerLate as unknown as () => void)();
      // The answer, or the connection's end if the sidecar cut it: whichever comes first.
      expect(await Promise.race([late, caller.closed.then(() => 'closed before the answer')])).toEqual({
        status: 200,
        body: 'late',
      });
      // Idle again: the sidecar closes the connection (the test never does).
      await caller.closed;
    } finally {
      caller.socket.destroy();
    }
  }, 20_000);
  it('a head begun after the connection has served a request is cut at --header-timeout (408)', async () => {
    const sidecar = await sidecarFor(appUrl, { 'header-timeout': '1s', 'idle-timeout': '30s' });
    const caller = await callerConnection(sidecar.port);
    try {
      expect(await caller.request('/fast')).toEqual({ status: 200, body: 'fast' });
      // Past the header timeout armed when the connection opened (deadline order, as above): the slow head
      // below must get the timer anew.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      caller.socket.write('GET /slowloris HTTP/1.1\r\nhost: app\r\n');
      await caller.closed;
      expect(caller.received()).toContain('HTTP/1.1 408 ');
    } finally {
      caller.socket.destroy();
    }
  }, 15_000);

  it('a head pipelined behind a slow request is cut at --header-timeout counted from that answer (408)', async () => {
    const sidecar = await sidecarFor(appUrl, {
      'header-timeout': '1s',
      'idle-timeout': '30s',
      'upstream-timeout': '30s',
    });
    const caller = await callerConnection(sidecar.port);
    try {
      answerLate = undefined;
      const late = caller.request('/late');
      caller.socket.write('GET /slowloris HTTP/1.1\r\nhost: app\r\n');
      await expect.poll(() => answerLate, { timeout: 10_000 }).toBeDefined();
      // Past every header timeout armed so far: the pipelined head must get one once /late is answered.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      (answerLate as unknown as () => void)();
      expect(await late).toEqual({ status: 200, body: 'late' });
      await caller.closed;
      expect(caller.received()).toContain('HTTP/1.1 408 ');
    } finally {
      caller.socket.destroy();
    }
  }, 20_000);
});
