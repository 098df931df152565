// When a connection must end: the earlier of its certificate's notAfter and its latest token's exp, told
// once, and never after the connection closed, and nothing kept of a closed one. Real sockets (a loopback
// pair); the clock is vitest's.
import { execFile } from 'node:child_process';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConnectionDeadlines, type DeadlineCause } from '../../src/proxy/connection-deadline.js';

const execFileAsync = promisify(execFile);
const dist = join(import.meta.dirname, '../../dist');

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

  it('keeps nothing of a closed connection: 20,000 deadlines of distinct lengths, closed, leave no timer lists', async () => {
    // In a child with --expose-gc, on the built module and Node's real timers: Node keeps the list of an
    // unref'd timer cleared before its time (~160 bytes, one per distinct duration) until that time.
    const script = `
      const { EventEmitter } = await import('node:events');
      const { ConnectionDeadlines } = await import(${JSON.stringify(pathToFileURL(join(dist, 'proxy/connection-deadline.js')).href)});
      const deadlines = new ConnectionDeadlines(() => {});
      const measure = () => { gc(); return process.memoryUsage().heapUsed; };
      // Each round's durations are new to Node's timer lists: a warm-up round, then the one measured.
      const round = (count, from) => {
        for (let i = 0; i < count; i++) {
          const socket = new EventEmitter();
          socket.destroyed = false;
          deadlines.certificate(socket, Date.now() + from + i * 7);
          socket.emit('close');
        }
      };
      round(1000, 3_600_000);
      const before = measure();
      round(20000, 7_200_000);
      console.log(JSON.stringify({ retained: measure() - before }));`;
    const { stdout } = await execFileAsync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script]);
    const { retained } = JSON.parse(stdout) as { retained: number };
    // 20,000 kept lists would be ~3 MB.
    expect(retained).toBeLessThan(1_000_000);
  });
});
