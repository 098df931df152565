// A real TLS client for the tests: node:https with a client certificate. The server's certificate is
// not what these tests are about, so the client does not verify it.
import { request as httpsRequest } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface ClientCert {
  chainPem: string;
  keyPem: string;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string> | string[];
  body?: string | Buffer;
}

export function requestVia(
  port: number,
  cert: ClientCert | undefined,
  options: RequestOptions = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: options.headers,
        cert: cert?.chainPem,
        key: cert?.keyPem,
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Resolves with the error a rejected client sees; fails the test if the request got an answer. */
export async function expectRejected(port: number, cert: ClientCert | undefined, options: RequestOptions = {}) {
  try {
    const res = await requestVia(port, cert, options);
    throw new Error(`expected the connection to be rejected, got HTTP ${res.status}: ${res.body}`);
  } catch (err) {
    if ((err as Error).message.startsWith('expected the connection')) throw err;
    return err as NodeJS.ErrnoException;
  }
}

/** A raw mTLS connection for tests that speak bytes: what came back so far, and the socket. */
export async function openRaw(port: number, cert: ClientCert) {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: cert.chainPem,
    key: cert.keyPem,
    rejectUnauthorized: false,
  });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString();
  });
  return { socket, received: () => received };
}

/**
 * A caller over TLS on a TCP socket of the test's own (`tcp`, which it can reset as a hostile caller would),
 * with what it reads and the first error its socket gets (EPIPE, ECONNRESET) recorded. `halfOpen`: it can
 * still write after the sidecar's FIN, and never answers it with its own.
 */
export async function openCaller(port: number, cert: ClientCert, halfOpen = false) {
  const tcp = tcpConnect({ host: '127.0.0.1', port, allowHalfOpen: halfOpen });
  tcp.on('error', () => {});
  const socket: TLSSocket = tlsConnect({
    socket: tcp,
    cert: cert.chainPem,
    key: cert.keyPem,
    rejectUnauthorized: false,
  });
  let received = '';
  let error: string | undefined;
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('secureConnect', resolve).once('close', resolve));
  return { socket, tcp, closed, received: () => received, error: () => error };
}
