// When a connection must end: the earlier of its certificate's notAfter and its latest token's exp, told
// once, and never after the connection closed. Real sockets (a loopback pair); the clock is vitest's.
import { createServer, type Server, type Socket, connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConnectionDeadlines, type DeadlineCause } from '../../src/proxy/connection-deadline.js';

let server: Server;
let port: number;
const open: Socket[] = [];

beforeAll(async () => {
  server = createServer((s) => open.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
afterEach(() => {
  vi.useRealTimers();
  for (const s of open.splice(0)) s.destroy();
});

async function socketPair(): Promise<Socket> {
  const client = connect(port, '127.0.0.1');
  open.push(client);
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  return client;
}

function recorder() {
  const seen: [Socket, DeadlineCause][] = [];
  return { seen, deadlines: new ConnectionDeadlines((socket, cause) => seen.push([socket, cause])) };
}

describe('ConnectionDeadlines', () => {
  it("a certificate's notAfter: told once, after it has passed", async () => {
    const socket = await socketPair();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { seen, deadlines } = recorder();
    deadlines.certificate(socket, Date.now() + 5000);
    vi.advanceTimersByTime(4999);
    expect(seen).toEqual([]);
    vi.advanceTimersByTime(2);
    expect(seen).toEqual([[socket, 'certificate']]);
    vi.advanceTimersByTime(60_000);
    expect(seen).toHaveLength(1);
  });

  it('tokens: the latest exp counts; a certificate that expires first wins', async () => {
    const socket = await socketPair();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { seen, deadlines } = recorder();
    const t0 = Date.now();
    deadlines.token(socket, t0 + 1000);
    deadlines.token(socket, t0 + 3000);
    deadlines.token(socket, t0 + 2000); // earlier than the latest: no change
    vi.advanceTimersByTime(2500);
    expect(seen).toEqual([]);
    deadlines.certificate(socket, t0 + 2800);
    vi.advanceTimersByTime(301);
    expect(seen).toEqual([[socket, 'certificate']]);
  });

  it('a token over a longer-lived certificate ends the connection at its exp', async () => {
    const socket = await socketPair();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { seen, deadlines } = recorder();
    deadlines.certificate(socket, Date.now() + 3_600_000);
    deadlines.token(socket, Date.now() + 1000);
    vi.advanceTimersByTime(1001);
    expect(seen).toEqual([[socket, 'token']]);
  });

  it('a deadline past setTimeout range is looked at again, not fired early', async () => {
    const socket = await socketPair();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { seen, deadlines } = recorder();
    deadlines.certificate(socket, Date.now() + 30 * 86_400_000);
    vi.advanceTimersByTime(2 ** 31);
    expect(seen).toEqual([]);
    vi.advanceTimersByTime(30 * 86_400_000);
    expect(seen).toEqual([[socket, 'certificate']]);
  });

  it('a closed connection is never told', async () => {
    const socket = await socketPair();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { seen, deadlines } = recorder();
    deadlines.certificate(socket, Date.now() + 50);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.destroy();
    await closed;
    vi.advanceTimersByTime(1000);
    expect(seen).toEqual([]);
  });
});
