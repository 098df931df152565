// The raw HTTP/1.1 path's sockets read into one shared buffer (shared-read-buffer.ts): app connections by
// net.connect's `onread` option, accepted caller sockets (TLS and plain) adopted into the same. Over real
// loopback connections these prove the stream's promises still hold for each kind: bytes that come before
// anyone listens wait for the listener, ahead of later ones; a paused socket delivers nothing until resumed;
// 8 MiB arrive intact and in order across pauses. And that adoption happens on this Node (else the path is
// slower, silently), but never to a socket that already reads its own way.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { AppConnections } from '../../src/proxy/app-connections.js';
import { adoptSharedReads } from '../../src/proxy/shared-read-buffer.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { closeServer, listenOn } from '../helpers/proxy-unit.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let caPem: string;
let serverSvid: IssuedCertificate;
beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  caPem = ca.certPem;
  serverSvid = await issueSvid(ca, { id: 'spiffe://example.org/server' });
});

/** The socket under test (`reader`), the other end of its connection (`writer`), and a reset of that end. */
interface Pair {
  reader: net.Socket;
  writer: net.Socket;
  reset: () => void;
}

/** An app connection from the pool (the `onread` option); the app's accepted socket writes. */
async function appConnection(): Promise<Pair> {
  const server = net.createServer();
  const port = await listenOn(server);
  const pool = new AppConnections('127.0.0.1', port, 4);
  cleanups.push(
    () => closeServer(server),
    () => pool.close(),
  );
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const { socket: reader } = pool.take();
  const [writer] = await accepted;
  cleanups.push(
    () => void reader.destroy(),
    () => void writer.destroy(),
  );
  return { reader, writer, reset: () => writer.resetAndDestroy() };
}

/**
 * Listens with `server`, whose first socket (on `event`) is adopted before anyone reads it. `adopted()`: that
 * socket, once it came, checked to have been adopted.
 */
async function adoptingServer<S extends net.Socket>(
  server: net.Server,
  event: 'connection' | 'secureConnection',
): Promise<{ port: number; adopted: () => Promise<S> }> {
  const accepted = new Promise<{ socket: S; adopted: boolean }>((resolve) =>
    server.once(event, (socket: S) => resolve({ socket, adopted: adoptSharedReads(socket) })),
  );
  const port = await listenOn(server);
  cleanups.push(() => closeServer(server));
  const adopted = async () => {
    const { socket, adopted } = await accepted;
    cleanups.push(() => void socket.destroy());
    expect(adopted).toBe(true);
    return socket;
  };
  return { port, adopted };
}

/** A caller's TLS socket as a tls.Server accepts it, adopted; the client writes. */
async function acceptedTls(): Promise<Pair> {
  const server = tls.createServer({ cert: serverSvid.chainPem, key: serverSvid.keyPem });
  const { port, adopted } = await adoptingServer<tls.TLSSocket>(server, 'secureConnection');
  // Over a TCP socket of our own: a TLS socket cannot be reset, its TCP connection can.
  const tcp = net.connect(port, '127.0.0.1');
  const writer = tls.connect({ socket: tcp, ca: caPem, servername: 'localhost', checkServerIdentity: () => undefined });
  cleanups.push(() => void writer.destroy());
  await once(writer, 'secureConnect');
  return { reader: await adopted(), writer, reset: () => tcp.resetAndDestroy() };
}

/** A caller's plain socket (JWT mode's plain transport) as a net.Server accepts it, adopted; the client writes. */
async function acceptedPlain(): Promise<Pair> {
  const { port, adopted } = await adoptingServer<net.Socket>(net.createServer(), 'connection');
  const writer = net.connect(port, '127.0.0.1');
  cleanups.push(() => void writer.destroy());
  return { reader: await adopted(), writer, reset: () => writer.resetAndDestroy() };
}

/** Resolves on the event-loop turn in which `done()` first holds (checked once per turn, no timer). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setImmediate(resolve));
}

describe.each([
  ['an app connection (net.connect with the onread option)', appConnection],
  ['an accepted TLS socket (adopted)', acceptedTls],
  ['an accepted plain socket (adopted)', acceptedPlain],
])('%s', (_kind, connect) => {
  it('bytes that come before anyone listens wait for the listener, ahead of the bytes sent later', async () => {
    const { reader, writer } = await connect();
    // A 'data' event with nobody listening is a lost chunk: counted, so that the test fails at once.
    let lost = 0;
    const emit = reader.emit.bind(reader);
    reader.emit = (event: string | symbol, ...args: unknown[]) => {
      if (event === 'data' && reader.listenerCount('data') === 0) lost++;
      return emit(event, ...args);
    };
    writer.write('first;');
    await until(() => reader.readableLength > 0 || lost > 0);
    expect(lost).toBe(0);
    expect(reader.readableLength).toBe('first;'.length);
    const received: Buffer[] = [];
    reader.on('data', (chunk: Buffer) => received.push(chunk));
    writer.end('second;');
    await once(reader, 'end');
    expect(Buffer.concat(received).toString()).toBe('first;second;');
  });

  it("a paused socket still sees its peer reset the connection, as with Node's default reads", async () => {
    // We pause a caller while admission decides, or while the app does not read: a caller that leaves then
    // must not hold its connection, and the app's, until we resume.
    const { reader, writer, reset } = await connect();
    reader.on('error', () => {});
    const first = once(reader, 'data');
    reader.on('data', () => reader.pause());
    writer.write('x');
    await first;
    expect(reader.isPaused()).toBe(true);
    // Not events.once: it rejects on the 'error' (ECONNRESET) that comes first.
    const errors: string[] = [];
    reader.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    const closed = new Promise((resolve) => reader.once('close', resolve));
    reset();
    await closed;
    expect(errors).toEqual(['ECONNRESET']);
  });

  it('a paused socket delivers nothing until resumed, and 8 MiB arrive intact and in order across pauses', async () => {
    const { reader, writer } = await connect();
    const total = 8 * 1024 * 1024;
    const sent = createHash('sha256');
    // A pattern that differs from one 64 KiB block to the next, so that a block out of place changes the hash.
    for (let offset = 0; offset < total; offset += 64 * 1024) {
      const block = Buffer.alloc(64 * 1024, (offset / 65536) % 251);
      block.writeUInt32BE(offset, 0);
      sent.update(block);
      writer.write(block);
    }
    writer.end();
    const got = createHash('sha256');
    let bytes = 0;
    let whilePaused = 0;
    let reads = 0;
    reader.on('data', (chunk: Buffer) => {
      if (reader.isPaused()) whilePaused++;
      got.update(chunk);
      bytes += chunk.length;
      // Every other read pauses the socket; it resumes a turn later, after any read that was due.
      if (reads++ % 2 === 0) {
        reader.pause();
        setImmediate(() => reader.resume());
      }
    });
    await once(reader, 'end');
    expect(bytes).toBe(total);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(reads).toBeGreaterThan(2);
    expect(whilePaused).toBe(0);
  });
});

it('a socket that already reads into a buffer of its own, or is destroyed, is not adopted', async () => {
  const { reader } = await appConnection();
  expect(adoptSharedReads(reader)).toBe(false);
  const { reader: plain } = await acceptedPlain();
  plain.destroy();
  expect(adoptSharedReads(plain)).toBe(false);
});
