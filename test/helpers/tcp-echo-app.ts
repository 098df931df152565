// A TCP app behind a `--protocol tcp` sidecar, and the byte-stream tools its tests share: an mTLS client
// that may half-close, a writer that honours back-pressure, a reader that hashes. The app counts every
// connection it accepts, so a test can prove that a denied peer never reached it.
import { createHash, randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { type AddressInfo, connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { ClientCert } from './client.js';

export interface TcpApp {
  /** `tcp://127.0.0.1:PORT` or `unix:///path`: what `--upstream` takes. */
  upstream: string;
  port: number;
  /** Connections the app accepted, ever. */
  accepted(): number;
  /** Every connection the app accepted, in order. */
  sockets: Socket[];
  close(): Promise<void>;
}

/** Echo by default: every byte goes back, and the app ends its side when the caller ends theirs. */
export async function startTcpApp(
  handler: (socket: Socket) => void = (socket) => socket.pipe(socket),
  options: { path?: string } = {},
): Promise<TcpApp> {
  const sockets: Socket[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    socket.on('error', () => socket.destroy());
    handler(socket);
  });
  if (options.path) {
    const path = options.path;
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  } else {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  }
  const port = options.path ? 0 : (server.address() as AddressInfo).port;
  return {
    upstream: options.path ? `unix://${options.path}` : `tcp://127.0.0.1:${port}`,
    port,
    accepted: () => sockets.length,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (options.path) await unlink(options.path).catch(() => {});
    },
  };
}

/** A port on loopback where nothing listens (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * tls.connect honours allowHalfOpen (it passes it to the TLSSocket it makes), but ConnectionOptions does
 * not declare it: spread this in.
 */
export const HALF_OPEN = { allowHalfOpen: true } as ConnectionOptions;

/** An mTLS connection that may half-close (`end()` and still read), resolved once the handshake is done. */
export async function connectTls(
  port: number,
  cert: ClientCert | undefined,
  host = '127.0.0.1',
  extra: { ca?: string } = {},
): Promise<TLSSocket> {
  const socket = tlsConnect({
    host,
    port,
    cert: cert?.chainPem,
    key: cert?.keyPem,
    ca: extra.ca,
    rejectUnauthorized: false,
    ...HALF_OPEN,
  });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  return socket;
}

/** An mTLS connection over a TCP socket of our own, so that a test can reset it (RST) like a crashed peer. */
export async function connectTlsResettable(port: number, cert: ClientCert): Promise<{ tls: TLSSocket; tcp: Socket }> {
  const tcp = netConnect(port, '127.0.0.1');
  await new Promise((resolve, reject) => tcp.once('connect', resolve).once('error', reject));
  const tls = tlsConnect({ socket: tcp, cert: cert.chainPem, key: cert.keyPem, rejectUnauthorized: false });
  await new Promise((resolve, reject) => tls.once('secureConnect', resolve).once('error', reject));
  return { tls, tcp };
}

export interface Digest {
  length: number;
  sha256: string;
}

/** Reads until the peer ends its side; resolves with what came, hashed. Rejects on error or close before end. */
export function readAll(stream: Duplex): Promise<Digest> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let length = 0;
    let ended = false;
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    stream.once('end', () => {
      ended = true;
      resolve({ length, sha256: hash.digest('hex') });
    });
    stream.once('error', reject);
    stream.once('close', () => {
      if (!ended) reject(new Error(`closed before end after ${length} bytes`));
    });
  });
}

/**
 * Writes `total` random bytes in chunks, waiting for 'drain' whenever the stream says it is full (so the
 * writer is paced by back-pressure, never buffering the whole stream); resolves with their digest.
 * `end` ends the writable side afterwards.
 */
export async function writeRandom(
  stream: Duplex,
  total: number,
  end: boolean,
  chunkSize = 256 * 1024,
): Promise<Digest> {
  const hash = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const chunk = randomBytes(Math.min(chunkSize, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!stream.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        stream.once('error', onError);
        stream.once('drain', () => {
          stream.off('error', onError);
          resolve();
        });
      });
    }
  }
  if (end) stream.end();
  return { length: sent, sha256: hash.digest('hex') };
}

/** Resolves when the peer has ended its side or the socket has closed, whichever comes first. */
export function peerGone(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed || socket.readableEnded) resolve();
    else {
      socket.once('end', () => resolve());
      socket.once('close', () => resolve());
    }
  });
}

/** Resolves when the socket has closed (and says whether it had errored). */
export function closed(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.closed) resolve(socket.errored !== null);
    else socket.once('close', (hadError) => resolve(hadError));
  });
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
