// relay(): bytes moved with back-pressure over real sockets, failures that destroy both ends, and the stall
// watches (source_idle, source_too_slow, destination_stalled), with fake timers where time is the subject.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { relay, type RelayStall } from '../../src/proxy/relay.js';
import { closeServer, listenOn } from '../helpers/proxy-unit.js';

const MB = 1024 * 1024;

/** A source of `total` bytes in 64 KiB chunks (a counter pattern), counting what has been read of it. */
function counted(total: number) {
  let produced = 0;
  const hash = createHash('sha256');
  const source = new Readable({
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const chunk = Buffer.alloc(Math.min(64 * 1024, total - produced), produced % 251);
      produced += chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { source, produced: () => produced, digest: () => hash.digest('hex') };
}

/** A server whose accepted socket is the relay's destination; the client reads (or not) on the other end. */
async function socketPair(): Promise<{ server: net.Server; ours: net.Socket; theirs: net.Socket }> {
  const server = net.createServer();
  const port = await listenOn(server);
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const theirs = net.connect(port, '127.0.0.1');
  const [ours] = await accepted;
  return { server, ours, theirs };
}

describe('relay over real sockets', () => {
  let server: net.Server | undefined;
  afterEach(() => closeServer(server));

  it('moves every byte in order and ends the destination', async () => {
    const pair = await socketPair();
    server = pair.server;
    const { source, digest } = counted(8 * MB);
    const received = createHash('sha256');
    let size = 0;
    pair.theirs.on('data', (c: Buffer) => {
      size += c.length;
      received.update(c);
    });
    const errors: Error[] = [];
    relay(source, pair.ours, (err) => errors.push(err));
    await once(pair.theirs, 'end');
    expect(size).toBe(8 * MB);
    expect(received.digest('hex')).toBe(digest());
    expect(errors).toEqual([]);
  });

  it('holds the source back while the destination does not read, then resumes', async () => {
    const pair = await socketPair();
    server = pair.server;
    pair.theirs.pause();
    const total = 64 * MB;
    const { source, produced } = counted(total);
    const paused = once(source, 'pause');
    relay(source, pair.ours);
    await paused;
    // Back-pressure: the socket buffers stay bounded, so only a part of the source was read.
    await new Promise((resolve) => setImmediate(resolve));
    const whilePaused = produced();
    expect(whilePaused).toBeLessThan(total / 2);
    let size = 0;
    pair.theirs.on('data', (c: Buffer) => (size += c.length));
    pair.theirs.resume();
    await once(pair.theirs, 'end');
    expect(size).toBe(total);
  });

  it('destination_stalled: a reader that takes nothing while bytes wait is reported, nothing destroyed', async () => {
    const pair = await socketPair();
    server = pair.server;
    pair.theirs.pause();
    const { source } = counted(256 * MB);
    const errors: Error[] = [];
    const stall = new Promise<RelayStall>((resolve) =>
      relay(source, pair.ours, (err) => errors.push(err), {
        destinationStallMs: 200,
        sourceIdleMs: 100,
        onStall: resolve,
      }),
    );
    expect(await stall).toBe('destination_stalled');
    // The watch leaves the decision to the caller: both ends are still there, and nothing was reported.
    expect(source.destroyed).toBe(false);
    expect(pair.ours.destroyed).toBe(false);
    // Nor is a later failure reported: the caller owns both ends now.
    source.destroy(new Error('later'));
    pair.ours.destroy();
    await once(pair.ours, 'close');
    expect(errors).toEqual([]);
  });

  it('a destination socket that fails destroys the source and reports the error once', async () => {
    const pair = await socketPair();
    server = pair.server;
    const source = new PassThrough();
    source.write('some');
    const errors: Error[] = [];
    relay(source, pair.ours, (err) => errors.push(err));
    pair.ours.destroy(new Error('boom'));
    await once(source, 'close');
    expect(source.destroyed).toBe(true);
    expect(errors.map((e) => e.message)).toEqual(['boom']);
  });

  it('a source socket whose peer resets destroys the destination', async () => {
    const pair = await socketPair();
    server = pair.server;
    const destination = new PassThrough();
    destination.resume();
    const errors: Error[] = [];
    relay(pair.ours, destination, (err) => errors.push(err));
    const arrived = once(destination, 'data');
    pair.theirs.write('half a body');
    await arrived;
    pair.theirs.resetAndDestroy();
    await once(destination, 'close');
    expect(destination.destroyed).toBe(true);
    expect(errors).toHaveLength(1);
  });
});

describe('relay failures on plain streams', () => {
  it('a source that errors destroys the destination and reports the error', async () => {
    const from = new PassThrough();
    const to = new PassThrough();
    const errors: Error[] = [];
    relay(from, to, (err) => errors.push(err));
    from.destroy(new Error('source failed'));
    await once(to, 'close');
    expect(to.destroyed).toBe(true);
    expect(errors.map((e) => e.message)).toEqual(['source failed']);
  });

  it('a source closed before its end destroys the destination', async () => {
    const from = new PassThrough();
    const to = new PassThrough();
    const errors: Error[] = [];
    relay(from, to, (err) => errors.push(err));
    from.write('x');
    from.destroy();
    await once(to, 'close');
    expect(errors.map((e) => e.message)).toEqual(['the source closed before its end']);
  });

  it('a destination closed before the end destroys the source', async () => {
    const from = new PassThrough();
    const to = new Writable({ write: (_c, _e, cb) => cb() });
    const errors: Error[] = [];
    relay(from, to, (err) => errors.push(err));
    to.destroy();
    await once(from, 'close');
    expect(from.destroyed).toBe(true);
    expect(errors.map((e) => e.message)).toEqual(['the destination closed before the end']);
  });

  it('an ordinary end reports nothing and destroys nothing early', async () => {
    const from = new PassThrough();
    const chunks: string[] = [];
    const to = new Writable({
      write: (c: Buffer, _e, cb) => {
        chunks.push(c.toString());
        cb();
      },
    });
    const errors: Error[] = [];
    relay(from, to, (err) => errors.push(err));
    from.end('all of it');
    await once(to, 'finish');
    expect(chunks.join('')).toBe('all of it');
    expect(errors).toEqual([]);
  });
});

describe('relay watches, on fake time', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A fresh source and destination, and the stalls reported. */
  function watched(watch: {
    sourceIdleMs?: number;
    sourceMinRate?: { bytesPerSecond: number; afterMs: number };
    destinationStallMs?: number;
  }) {
    const from = new PassThrough();
    const received: Buffer[] = [];
    const to = new Writable({
      write: (c: Buffer, _e, cb) => {
        received.push(c);
        cb();
      },
    });
    const stalls: RelayStall[] = [];
    relay(from, to, undefined, { ...watch, onStall: (s) => stalls.push(s) });
    return { from, to, stalls, received };
  }

  /** Lets the streams' nextTick work run (fake timers leave nextTick real). */
  const ticks = () => new Promise<void>((resolve) => process.nextTick(resolve));

  it('source_idle: no byte for the limit is reported once, a byte before it resets the wait', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { from, to, stalls } = watched({ sourceIdleMs: 1000 });
    await vi.advanceTimersByTimeAsync(900);
    from.write('a');
    await ticks();
    await vi.advanceTimersByTimeAsync(900);
    expect(stalls).toEqual([]);
    await vi.advanceTimersByTimeAsync(200);
    expect(stalls).toEqual(['source_idle']);
    await vi.advanceTimersByTimeAsync(5000);
    expect(stalls).toEqual(['source_idle']);
    // Nothing destroyed for the caller, and the source is no longer piped.
    expect(from.destroyed || to.destroyed).toBe(false);
  });

  it('source_too_slow: a trickle that resets any idle timer is cut once past the grace period', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { from, stalls, received } = watched({
      sourceIdleMs: 10_000,
      sourceMinRate: { bytesPerSecond: 240, afterMs: 5000 },
    });
    for (let second = 1; second <= 5; second++) {
      await vi.advanceTimersByTimeAsync(1000);
      from.write('x');
      await ticks();
    }
    expect(stalls).toEqual([]);
    await vi.advanceTimersByTimeAsync(1000);
    from.write('x');
    await ticks();
    expect(stalls).toEqual(['source_too_slow']);
    expect(received.length).toBeLessThanOrEqual(6);
  });

  it('a source at the minimum rate is never cut', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { from, to, stalls } = watched({
      sourceIdleMs: 10_000,
      sourceMinRate: { bytesPerSecond: 240, afterMs: 5000 },
    });
    for (let second = 1; second <= 10; second++) {
      await vi.advanceTimersByTimeAsync(1000);
      from.write(Buffer.alloc(300));
      await ticks();
    }
    from.end();
    await ticks();
    await vi.advanceTimersByTimeAsync(0);
    expect(to.writableFinished).toBe(true);
    expect(stalls).toEqual([]);
  });

  it('time held back by the destination is not the source idling: destination_stalled instead', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const from = new PassThrough({ highWaterMark: 16 });
    let release: (() => void) | undefined;
    const to = new Writable({
      highWaterMark: 16,
      write: (_c, _e, cb) => (release = cb),
    });
    const stalls: RelayStall[] = [];
    relay(from, to, undefined, { sourceIdleMs: 100, destinationStallMs: 1000, onStall: (s) => stalls.push(s) });
    // As from a socket: the bytes come after pipe() has started the flow (a later tick).
    await ticks();
    from.write(Buffer.alloc(64));
    await ticks();
    await vi.advanceTimersByTimeAsync(500);
    expect(stalls).toEqual([]);
    expect(from.isPaused()).toBe(true);
    await vi.advanceTimersByTimeAsync(600);
    expect(stalls).toEqual(['destination_stalled']);
    expect(release).toBeDefined();
  });

  it('a destination that drains in time resets its watch, and the source watch comes back', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const from = new PassThrough({ highWaterMark: 16 });
    const held: (() => void)[] = [];
    const to = new Writable({ highWaterMark: 16, write: (_c, _e, cb) => held.push(cb) });
    const stalls: RelayStall[] = [];
    relay(from, to, undefined, { sourceIdleMs: 300, destinationStallMs: 1000, onStall: (s) => stalls.push(s) });
    await ticks();
    from.write(Buffer.alloc(64));
    await ticks();
    await vi.advanceTimersByTimeAsync(900);
    // Drain everything: each callback lets the next chunk in (bounded: the source holds 64 bytes).
    for (let i = 0; i < 100 && held.length > 0; i++) {
      held.shift()!();
      await ticks();
      await vi.advanceTimersByTimeAsync(0);
    }
    expect(held).toEqual([]);
    expect(stalls).toEqual([]);
    await vi.advanceTimersByTimeAsync(400);
    expect(stalls).toEqual(['source_idle']);
  });

  it('the last bytes of an ended source still wait for the destination under its watch', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const from = new PassThrough();
    const to = new Writable({ write: () => {} });
    const stalls: RelayStall[] = [];
    relay(from, to, undefined, { destinationStallMs: 1000, onStall: (s) => stalls.push(s) });
    from.end('the last bytes');
    await ticks();
    await vi.advanceTimersByTimeAsync(999);
    expect(stalls).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(stalls).toEqual(['destination_stalled']);
  });

  it('a finished relay leaves no timer behind', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { from, to, stalls } = watched({ sourceIdleMs: 1000, destinationStallMs: 1000 });
    from.end('done');
    await ticks();
    await vi.advanceTimersByTimeAsync(0);
    expect(to.writableFinished).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(stalls).toEqual([]);
  });
});
