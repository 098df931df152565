// `--protocol tcp`: after mTLS and the allow rules, bytes are relayed both ways, intact (SHA-256 on both
// ends), with back-pressure and half-close, to a TCP or unix-socket app; either side vanishing or
// resetting is passed on; each connection gets one audit line.
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { TestSidecar } from '../helpers/sidecar.js';
import {
  closed,
  connectTls,
  connectTlsResettable,
  type Digest,
  peerGone,
  readAll,
  sha256,
  startTcpApp,
  writeRandom,
} from '../helpers/tcp-echo-app.js';
import { ALLOWED_ID, MB, type TcpModeFixture, useTcpModeFixture } from '../helpers/tcp-mode-fixture.js';

/** Per connection the app accepted: a digest of every byte it received, once the caller ended. */
const received: Promise<Digest>[] = [];

/** The app echoes every byte and records what it received. */
function hashingEcho(socket: Socket): void {
  received.push(quiet(readAll(socket)));
  socket.pipe(socket);
}

/** The promise, with a rejection nobody awaited not reported as unhandled (a test that awaits it still sees it). */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** An app handler for one test: the default app delegates its next connections here. */
let handler: (socket: Socket) => void = hashingEcho;

const fixture = useTcpModeFixture((socket) => handler(socket));
let dir: TcpModeFixture['dir'];
let allowed: IssuedCertificate;
let sidecar: TestSidecar;
let tcpSidecar: TcpModeFixture['tcpSidecar'];
let onCleanup: TcpModeFixture['onCleanup'];
beforeAll(() => {
  ({ dir, allowed, sidecar, tcpSidecar, onCleanup } = fixture());
});

describe('tcp mode relays bytes both ways intact with back-pressure and half-close', () => {
  it('relays 100 MB through an echo app, intact both ways (SHA-256 at the app and back at the caller)', async () => {
    const before = received.length;
    const client = await connectTls(sidecar.port, allowed);
    const back = readAll(client);
    const sent = await writeRandom(client, 100 * MB, true);
    const echoed = await back;
    expect(received.length).toBe(before + 1);
    expect(await received[before]).toEqual(sent);
    // Echoed completely, then ended: the app's end came back after ours (half-close both ways).
    expect(echoed).toEqual(sent);
    await closed(client);
  }, 60_000);

  it('relays a single byte each way, without waiting for more', async () => {
    const client = await connectTls(sidecar.port, allowed);
    const first = new Promise<Buffer>((resolve) => client.once('data', resolve));
    client.write(Buffer.from([0x2a]));
    // The byte comes back while the connection is still open in both directions (no batching).
    expect(await first).toEqual(Buffer.from([0x2a]));
    const rest = readAll(client);
    client.end();
    expect((await rest).length).toBe(0);
    expect(await received.at(-1)).toEqual({ length: 1, sha256: sha256(Buffer.from([0x2a])) });
  });

  it('carries a 1-byte connection that ends at once: the byte, then both ends close', async () => {
    const client = await connectTls(sidecar.port, allowed);
    const back = readAll(client);
    client.end(Buffer.from('z'));
    const echoed = await back;
    expect(echoed).toEqual({ length: 1, sha256: sha256('z') });
    await closed(client);
  });

  it('is full duplex: the caller and the app each send 24 MB while receiving the other 24 MB', async () => {
    let appSent: Promise<Digest> | undefined;
    let appReceived: Promise<Digest> | undefined;
    handler = (socket) => {
      appReceived = readAll(socket);
      appSent = writeRandom(socket, 24 * MB, true);
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      let firstByteAt = 0;
      client.once('data', () => (firstByteAt = performance.now()));
      const fromApp = readAll(client);
      const sent = await writeRandom(client, 24 * MB, false);
      const sendDoneAt = performance.now();
      client.end();
      const got = await fromApp;
      expect(appSent).toBeDefined();
      expect(got).toEqual(await appSent);
      expect(await appReceived).toEqual(sent);
      // Both directions were moving at once: the app's bytes arrived while the caller was still sending.
      expect(firstByteAt).toBeGreaterThan(0);
      expect(firstByteAt).toBeLessThan(sendDoneAt);
      await closed(client);
    } finally {
      handler = hashingEcho;
    }
  }, 60_000);

  it('half-close by the caller: it ends after sending and still receives the whole answer', async () => {
    let answer: Digest | undefined;
    handler = (socket) => {
      const got = readAll(socket);
      // The app answers only after the caller's end reached it.
      void got.then(async (digest) => {
        socket.write(`${digest.sha256}\n`);
        answer = await writeRandom(socket, 3 * MB, true);
      });
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      const chunks: Buffer[] = [];
      client.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve) => client.once('end', resolve));
      const sent = await writeRandom(client, 5 * MB, true);
      await ended;
      const all = Buffer.concat(chunks);
      const nl = all.indexOf(0x0a);
      expect(all.subarray(0, nl).toString()).toBe(sent.sha256);
      const body = all.subarray(nl + 1);
      expect({ length: body.length, sha256: sha256(body) }).toEqual(answer);
      await closed(client);
    } finally {
      handler = hashingEcho;
    }
  }, 30_000);

  it('half-close by the app: it ends first, and the caller keeps sending until it is done', async () => {
    let greeting: Digest | undefined;
    let appReceived: Promise<Digest> | undefined;
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      appReceived = readAll(socket);
      void writeRandom(socket, 2 * MB, true).then((d) => (greeting = d));
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      const fromApp = await readAll(client);
      // The app has said all it will say; its side is closed, the caller's is open.
      expect(fromApp).toEqual(greeting);
      expect(client.writable).toBe(true);
      const sent = await writeRandom(client, 4 * MB, true);
      expect(await appReceived).toEqual(sent);
      await closed(client);
      await expect.poll(() => appSocket?.closed).toBe(true);
    } finally {
      handler = hashingEcho;
    }
  }, 30_000);

  it('applies back-pressure: an app that stops reading stalls the caller instead of filling our memory', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      received.push(quiet(readAll(socket)));
      socket.pause();
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      await expect.poll(() => appSocket).toBeDefined();
      appSocket!.pause();
      // Write (from one 1 MiB block, as fast as the socket takes it) until a write waits more than a second.
      const block = Buffer.alloc(MB, 0x5a);
      let pushed = 0;
      let stalled = false;
      while (pushed < 400 * MB) {
        pushed += block.length;
        if (!client.write(block)) {
          const drained = await Promise.race([
            new Promise<boolean>((resolve) => client.once('drain', () => resolve(true))),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000)),
          ]);
          if (!drained) {
            stalled = true;
            break;
          }
        }
      }
      const heldUp = pushed;
      expect(stalled).toBe(true);
      // Kernel buffers hold some (both hops); a relay without back-pressure would have taken all 400 MB.
      expect(heldUp).toBeLessThan(64 * MB);
      // Let the app read: every byte arrives, in order.
      const back = readAll(client);
      client.once('drain', () => client.end());
      appSocket!.resume();
      const got = await received.at(-1)!;
      expect(got.length).toBe(heldUp);
      const expected = sha256(Buffer.concat(new Array<Buffer>(heldUp / MB).fill(block)));
      expect(got.sha256).toBe(expected);
      appSocket!.end();
      await back;
    } finally {
      handler = hashingEcho;
    }
  }, 60_000);

  it('passes a caller that vanishes on to the app: its FIN as end, its reset as a closed connection', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      socket.on('data', () => {});
    };
    try {
      // FIN: the app reads the end of the stream (it may still answer: that is half-close).
      const finner = await connectTls(sidecar.port, allowed);
      finner.write('partial');
      await expect.poll(() => appSocket).toBeDefined();
      const first = appSocket!;
      const appEnded = new Promise<void>((resolve) => first.once('end', resolve));
      finner.destroy();
      await appEnded;
      // Once the app writes to a caller that is gone (the caller's host answers with a reset), the relay
      // is torn down, the app's side included.
      const knock = setInterval(() => first.write('anyone there?'), 100);
      try {
        await expect.poll(() => first.closed, { timeout: 5000 }).toBe(true);
      } finally {
        clearInterval(knock);
      }

      // RST (a crashed peer): the app's connection is closed at once.
      const resetter = await connectTlsResettable(sidecar.port, allowed);
      resetter.tls.on('error', () => {});
      resetter.tls.write('partial');
      await expect.poll(() => appSocket !== first).toBe(true);
      const second = appSocket!;
      const gone = peerGone(second);
      resetter.tcp.resetAndDestroy();
      await gone;
      const writes = setInterval(() => second.write('x'), 100);
      try {
        await expect.poll(() => second.closed, { timeout: 5000 }).toBe(true);
      } finally {
        clearInterval(writes);
      }
    } finally {
      handler = hashingEcho;
    }
  });

  it('disconnects the caller when the app resets its connection', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      socket.on('data', () => {});
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      client.on('error', () => {});
      client.write('hello');
      await expect.poll(() => appSocket).toBeDefined();
      appSocket!.resetAndDestroy();
      await peerGone(client);
    } finally {
      handler = hashingEcho;
    }
  });

  it('writes an audit line per connection with protocol tcp, the peer and the decision', async () => {
    const client = await connectTls(sidecar.port, allowed);
    client.end('x');
    await readAll(client);
    const line = sidecar.logs.filter((l) => l.event === 'authz').at(-1);
    expect(line).toMatchObject({ protocol: 'tcp', peer: ALLOWED_ID, decision: 'allow', auth: 'mtls' });
  });

  it('relays to a unix socket app (--upstream unix:///path)', async () => {
    const unixReceived: Promise<Digest>[] = [];
    const unixApp = await startTcpApp(
      (socket) => {
        unixReceived.push(readAll(socket));
        socket.pipe(socket);
      },
      { path: join(dir.path, 'app.sock') },
    );
    onCleanup(() => unixApp.close());
    const viaUnix = await tcpSidecar(unixApp.upstream);
    const client = await connectTls(viaUnix.port, allowed);
    const back = readAll(client);
    const sent = await writeRandom(client, 8 * MB, true);
    const echoed = await back;
    expect(await unixReceived[0]).toEqual(sent);
    expect(echoed).toEqual(sent);

    const tiny = await connectTls(viaUnix.port, allowed);
    const one = readAll(tiny);
    tiny.end(Buffer.from([0]));
    expect((await one).length).toBe(1);
    expect(unixApp.accepted()).toBe(2);
  }, 30_000);
});
