// Shared setup for the HTTP/2-and-HTTP/1.1 e2e files: an HTTP/1.1 app and an h2c app that record every
// request (body by SHA-256), an mTLS sidecar in front, and HTTP/2, HTTPS and curl clients. A file calls
// `useHttp2Fixture()` once; nothing here asserts, so a failure always points at the test file.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { ClientCert } from './client.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from './pki.js';
import { startTestSidecar, type TestSidecar } from './sidecar.js';

export const SERVER_ID = 'spiffe://example.org/ns/shop/sa/orders';
export const ALLOWED_ID = 'spiffe://example.org/ns/shop/sa/frontend';
export const DENIED_ID = 'spiffe://example.org/ns/shop/sa/stranger';
export const MB = 1024 * 1024;

/** The large response: 1 MiB blocks, each stamped with its index (a lost, repeated or swapped block shows). */
const BLOCK = randomBytes(MB);

export function block(i: number): Buffer {
  const b = Buffer.from(BLOCK);
  b.writeUInt32BE(i, 0);
  return b;
}

export function bigSha256(blocks: number): string {
  const hash = createHash('sha256');
  for (let i = 0; i < blocks; i++) hash.update(block(i));
  return hash.digest('hex');
}

export interface Seen {
  method: string;
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
}

export interface App {
  url: string;
  seen: Seen[];
  /** Large responses: when the app finished writing, and whether the response was cut before that. */
  big: { finishedAt?: number; aborted: boolean }[];
  server: Server | http2.Http2Server;
  close(): Promise<void>;
}

/** An HTTP/1.1 app: records each request; `/big?blocks=N` streams N MiB (unknown length: chunked). */
export async function startH1App(): Promise<App> {
  const seen: Seen[] = [];
  const big: App['big'] = [];
  const server = createServer((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    req.on('end', () => {
      const record: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        httpVersion: req.httpVersion,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyLength: length,
        bodySha256: hash.digest('hex'),
      };
      seen.push(record);
      const m = /^\/big\?blocks=(\d+)$/.exec(record.url);
      if (!m) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'h1', 'set-cookie': ['a=1', 'b=2'] });
        res.end(JSON.stringify(record));
        return;
      }
      const state: App['big'][number] = { aborted: false };
      big.push(state);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.once('close', () => {
        if (!res.writableFinished) state.aborted = true;
      });
      let i = 0;
      const blocks = Number(m[1]);
      const pump = () => {
        while (i < blocks) {
          if (res.destroyed) return;
          if (!res.write(block(i++))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end(() => (state.finishedAt = performance.now()));
      };
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    big,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A cleartext HTTP/2 app (prior knowledge): records requests, answers JSON with a trailer. */
export async function startH2cApp(): Promise<App> {
  const seen: Seen[] = [];
  const server = http2.createServer();
  server.on(
    'stream',
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      const hash = createHash('sha256');
      let length = 0;
      stream.on('data', (d: Buffer) => {
        hash.update(d);
        length += d.length;
      });
      stream.on('end', () => {
        const record: Seen = {
          method: String(headers[':method']),
          url: String(headers[':path']),
          httpVersion: '2.0',
          headers: headers as IncomingHttpHeaders,
          rawHeaders,
          bodyLength: length,
          bodySha256: hash.digest('hex'),
        };
        seen.push(record);
        if (record.url === '/no-trailers') {
          stream.respond({ ':status': 201, 'content-type': 'application/json', 'x-app': 'h2c' });
          stream.end(JSON.stringify(record));
          return;
        }
        stream.respond(
          { ':status': 200, 'content-type': 'application/json', 'x-app': 'h2c' },
          { waitForTrailers: true },
        );
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': record.bodySha256 }));
        stream.end(JSON.stringify(record));
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    big: [],
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An HTTP/2 session to the sidecar with a client certificate (ALPN h2 only). */
export async function h2session(port: number, cert: ClientCert | undefined): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    cert: cert?.chainPem,
    key: cert?.keyPem,
    rejectUnauthorized: false,
  });
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
    session.once('close', () => reject(new Error('session closed before it connected')));
  });
  return session;
}

export interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  firstByteAt: number;
}

/** One HTTP/2 request; `body` is sent as given, or piped from an async source, then the stream ends. */
export function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string | (() => AsyncIterable<Buffer>),
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const endStream = body === undefined;
    const stream = session.request(headers, { endStream });
    const chunks: Buffer[] = [];
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    let firstByteAt = 0;
    stream.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h;
    });
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (d: Buffer) => {
      if (!firstByteAt) firstByteAt = performance.now();
      chunks.push(d);
    });
    stream.on('end', () => {
      if (!status) reject(new Error('the stream ended without a response'));
      else resolve({ status, headers: responseHeaders, trailers, body: Buffer.concat(chunks), firstByteAt });
    });
    stream.on('close', () => {
      if (!status) reject(new Error(`the stream closed without a response (code ${stream.rstCode})`));
    });
    stream.on('error', reject);
    if (typeof body === 'function') {
      void (async () => {
        for await (const chunk of body()) if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r));
        stream.end();
      })();
    } else if (body !== undefined) {
      stream.end(body);
    }
  });
}

/** One cleartext HTTP/2 request (h2c, prior knowledge) on a session of its own, as an app asks an outbound route. */
export async function h2cJson(
  port: number,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const failed = new Promise<never>((_, reject) => session.on('error', reject));
  try {
    const res = await Promise.race([h2request(session, headers), failed]);
    return { status: res.status, body: JSON.parse(res.body.toString('utf8')) as Record<string, unknown> };
  } finally {
    session.close();
  }
}

/** The real curl, as a child process (the app runs in this process: a blocking exec would starve it). */
export function curl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--insecure', '--max-time', '15', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function idHeaders(seen: Seen): string[] {
  return seen.rawHeaders.filter((_, i) => i % 2 === 1 && seen.rawHeaders[i - 1].toLowerCase() === 'x-spiffe-id');
}

export interface Http2Fixture {
  dir: { path: string; remove: () => Promise<void> };
  files: ServingFiles;
  allowed: IssuedCertificate;
  denied: IssuedCertificate;
  /** The allowed caller's certificate and key as files, for curl. */
  certFiles: { cert: string; key: string };
  /** The HTTP/1.1 app, and a sidecar (allowing ALLOWED_ID) in front of it. */
  app: App;
  sidecar: TestSidecar;
  /** Another sidecar with the same identity and allow rule, closed after the file. */
  sidecarFor(upstream: string, extra?: Record<string, string>): Promise<TestSidecar>;
  /** Runs after the file, before the fixture's own teardown (last registered first). */
  onCleanup(cleanup: () => Promise<void>): void;
}

/** Registers the file's beforeAll/afterAll; the returned function gives the fixture once they ran. */
export function useHttp2Fixture(): () => Http2Fixture {
  let fixture: Http2Fixture | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    const dir = await tempDir();
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const files = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
    const [allowed, denied] = await Promise.all([issueSvid(ca, { id: ALLOWED_ID }), issueSvid(ca, { id: DENIED_ID })]);
    const certFiles = { cert: join(dir.path, 'caller.crt'), key: join(dir.path, 'caller.key') };
    await writeFile(certFiles.cert, allowed.chainPem);
    await writeFile(certFiles.key, allowed.keyPem);
    const sidecarFor = async (upstream: string, extra: Record<string, string> = {}) => {
      const started = await startTestSidecar({
        upstream,
        'mtls-cert-file': files.certFile,
        'mtls-key-file': files.keyFile,
        'mtls-ca-file': files.caFile,
        allow: [ALLOWED_ID],
        ...extra,
      });
      cleanups.push(() => started.close());
      return started;
    };
    cleanups.push(() => dir.remove());
    const app = await startH1App();
    cleanups.push(() => app.close());
    const sidecar = await sidecarFor(app.url);
    fixture = {
      dir,
      files,
      allowed,
      denied,
      certFiles,
      app,
      sidecar,
      sidecarFor,
      onCleanup: (cleanup) => cleanups.push(cleanup),
    };
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return () => {
    if (!fixture) throw new Error('useHttp2Fixture: used before its beforeAll ran');
    return fixture;
  };
}
