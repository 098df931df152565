// One listener, both HTTP versions by ALPN: HTTP/2 callers (Node's http2 client, curl --http2) and
// HTTP/1.1 callers (Node's https client, curl --http1.1) reach the same app on the same port, with the
// same verified identity and the same refusals. HTTP/2 requests are translated for an HTTP/1.1 app
// (bodies of known and unknown length, large streamed responses); with --upstream-protocol h2c, an
// HTTP/2 app is reached by both kinds of caller.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import * as http2 from 'node:http2';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { type ClientCert, requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { closedPort } from '../helpers/tcp-echo-app.js';

const SERVER_ID = 'spiffe://example.org/ns/shop/sa/orders';
const ALLOWED_ID = 'spiffe://example.org/ns/shop/sa/frontend';
const DENIED_ID = 'spiffe://example.org/ns/shop/sa/stranger';
const MB = 1024 * 1024;
/** The large response: 1 MiB blocks, each stamped with its index (a lost, repeated or swapped block shows). */
const BLOCK = randomBytes(MB);

function block(i: number): Buffer {
  const b = Buffer.from(BLOCK);
  b.writeUInt32BE(i, 0);
  return b;
}

function bigSha256(blocks: number): string {
  const hash = createHash('sha256');
  for (let i = 0; i < blocks; i++) hash.update(block(i));
  return hash.digest('hex');
}

interface Seen {
  method: string;
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
}

interface App {
  url: string;
  seen: Seen[];
  /** Large responses: when the app finished writing, and whether the response was cut before that. */
  big: { finishedAt?: number; aborted: boolean }[];
  server: Server | http2.Http2Server;
  close(): Promise<void>;
}

/** An HTTP/1.1 app: records each request; `/big?blocks=N` streams N MiB (unknown length: chunked). */
async function startH1App(): Promise<App> {
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
async function startH2cApp(): Promise<App> {
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

let dir: { path: string; remove: () => Promise<void> };
let files: ServingFiles;
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let certFiles: { cert: string; key: string };
let app: App;
let sidecar: TestSidecar;
const cleanups: (() => Promise<void>)[] = [];

async function sidecarFor(upstream: string, extra: Record<string, string> = {}): Promise<TestSidecar> {
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
}

beforeAll(async () => {
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  files = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  [allowed, denied] = await Promise.all([issueSvid(ca, { id: ALLOWED_ID }), issueSvid(ca, { id: DENIED_ID })]);
  certFiles = { cert: join(dir.path, 'caller.crt'), key: join(dir.path, 'caller.key') };
  await writeFile(certFiles.cert, allowed.chainPem);
  await writeFile(certFiles.key, allowed.keyPem);
  app = await startH1App();
  cleanups.push(() => app.close());
  sidecar = await sidecarFor(app.url);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await dir?.remove();
});

/** An HTTP/2 session to the sidecar with a client certificate (ALPN h2 only). */
async function h2session(port: number, cert: ClientCert | undefined): Promise<http2.ClientHttp2Session> {
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

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  firstByteAt: number;
}

/** One HTTP/2 request; `body` is sent as given, or piped from an async source, then the stream ends. */
function h2request(
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

/** The real curl, as a child process (the app runs in this process: a blocking exec would starve it). */
function curl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
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

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function idHeaders(seen: Seen): string[] {
  return seen.rawHeaders.filter((_, i) => i % 2 === 1 && seen.rawHeaders[i - 1].toLowerCase() === 'x-spiffe-id');
}

describe('http2 and http1 callers share one port', () => {
  it('an HTTP/2 caller and an HTTP/1.1 caller on the same port both reach the app with the verified ID', async () => {
    const session = await h2session(sidecar.port, allowed);
    expect(session.alpnProtocol).toBe('h2');
    const h2 = await h2request(session, {
      ':path': '/from-h2',
      'x-spiffe-id': 'spiffe://example.org/admin',
      x_spiffe_id: 'spiffe://example.org/admin',
      'x-forwarded-client-cert': 'URI=spiffe://example.org/admin',
    });
    session.close();
    expect(h2.status).toBe(200);
    expect(h2.headers['x-app']).toBe('h1');
    // Connection-specific fields of the HTTP/1.1 app never appear in an HTTP/2 response.
    expect(h2.headers.connection).toBeUndefined();
    expect(h2.headers['keep-alive']).toBeUndefined();
    expect(h2.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    const fromH2 = JSON.parse(h2.body.toString()) as Seen;
    expect(fromH2.url).toBe('/from-h2');
    expect(fromH2.headers['x-spiffe-id']).toBe(ALLOWED_ID);
    expect(idHeaders(app.seen.at(-1)!)).toEqual([ALLOWED_ID]);
    expect(JSON.stringify(app.seen.at(-1)!.rawHeaders)).not.toContain('spiffe://example.org/admin');
    expect(fromH2.headers.host).toBe(`127.0.0.1:${sidecar.port}`);

    const h1 = await requestVia(sidecar.port, allowed, {
      path: '/from-h1',
      headers: { 'x-spiffe-id': 'spiffe://example.org/admin' },
    });
    expect(h1.status).toBe(200);
    const fromH1 = JSON.parse(h1.body) as Seen;
    expect(fromH1.url).toBe('/from-h1');
    expect(fromH1.headers['x-spiffe-id']).toBe(ALLOWED_ID);
    expect(idHeaders(app.seen.at(-1)!)).toEqual([ALLOWED_ID]);
  });

  it('curl --http2 and curl --http1.1 against the same port: versions 2 and 1.1, same verified ID', async () => {
    const url = `https://127.0.0.1:${sidecar.port}/from-curl`;
    const common = ['--cert', certFiles.cert, '--key', certFiles.key, '-H', 'x-spiffe-id: spiffe://example.org/admin'];
    const [two, one] = await Promise.all([
      curl([...common, '--http2', '-w', '\n%{http_version} %{http_code}', url]),
      curl([...common, '--http1.1', '-w', '\n%{http_version} %{http_code}', url]),
    ]);
    for (const [res, version] of [
      [two, '2'],
      [one, '1.1'],
    ] as const) {
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      const [body, trailer] = res.stdout.split('\n');
      expect(trailer).toBe(`${version} 200`);
      expect((JSON.parse(body) as Seen).headers['x-spiffe-id']).toBe(ALLOWED_ID);
    }
  });

  it('an HTTP/2 POST with a known length arrives intact, with its content-length', async () => {
    const session = await h2session(sidecar.port, allowed);
    const body = randomBytes(3 * MB + 7);
    const res = await h2request(
      session,
      { ':method': 'POST', ':path': '/upload', 'content-length': String(body.length) },
      body,
    );
    session.close();
    expect(res.status).toBe(200);
    const seen = app.seen.at(-1)!;
    expect(seen).toMatchObject({ method: 'POST', url: '/upload', bodyLength: body.length, bodySha256: sha256(body) });
    expect(seen.headers['content-length']).toBe(String(body.length));
  });

  it('an HTTP/2 POST of unknown length is sent chunked and arrives intact', async () => {
    const session = await h2session(sidecar.port, allowed);
    const parts = [randomBytes(1), randomBytes(700 * 1024), randomBytes(1 * MB), randomBytes(3)];
    const res = await h2request(session, { ':method': 'POST', ':path': '/stream' }, async function* () {
      for (const p of parts) {
        yield p;
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    session.close();
    expect(res.status).toBe(200);
    const seen = app.seen.at(-1)!;
    const whole = Buffer.concat(parts);
    expect(seen).toMatchObject({ method: 'POST', url: '/stream', bodyLength: whole.length, bodySha256: sha256(whole) });
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.headers['content-length']).toBeUndefined();
  });

  it('an HTTP/2 GET with a body of unknown length is framed: the app reads one request, not two', async () => {
    const session = await h2session(sidecar.port, allowed);
    const smuggled = 'GET /admin HTTP/1.1\r\nhost: x\r\n\r\n';
    const before = app.seen.length;
    const res = await h2request(session, { ':method': 'GET', ':path': '/with-body' }, async function* () {
      yield Buffer.from(smuggled);
    });
    expect(res.status).toBe(200);
    // A following request on the same keep-alive connection to the app still is what it says.
    const next = await h2request(session, { ':path': '/after' });
    session.close();
    expect(next.status).toBe(200);
    expect(app.seen.slice(before).map((s) => s.url)).toEqual(['/with-body', '/after']);
    expect(app.seen[before].bodySha256).toBe(sha256(smuggled));
  });

  it('an HTTP/2 body longer than its content-length cannot smuggle a second request to the HTTP/1.1 app', async () => {
    const before = app.seen.length;
    const session = await h2session(sidecar.port, allowed);
    const smuggled = 'GET /smuggled HTTP/1.1\r\nhost: x\r\nx-spiffe-id: spiffe://example.org/admin\r\n\r\n';
    await h2request(
      session,
      { ':method': 'POST', ':path': '/short', 'content-length': '5' },
      Buffer.from(`hello${smuggled}`),
    ).catch(() => undefined);
    // The next request on a connection the app may reuse is still what it says.
    const next = await h2request(session, { ':path': '/after-short' }).catch(
      async () => await h2request(await h2session(sidecar.port, allowed), { ':path': '/after-short' }),
    );
    session.close();
    expect(next.status).toBe(200);
    const urls = app.seen.slice(before).map((s) => s.url);
    expect(urls).not.toContain('/smuggled');
    expect(urls).toContain('/after-short');
    for (const s of app.seen.slice(before)) expect(idHeaders(s)).toEqual([ALLOWED_ID]);
  });

  it('cookie crumbs of an HTTP/2 request reach the HTTP/1.1 app as one cookie header', async () => {
    const session = await h2session(sidecar.port, allowed);
    await h2request(session, { ':path': '/cookies', cookie: ['a=1', 'b=2', 'c=3'] });
    session.close();
    expect(app.seen.at(-1)!.headers.cookie).toBe('a=1; b=2; c=3');
  });

  it('serves many concurrent streams on one HTTP/2 connection, each with the verified ID', async () => {
    const session = await h2session(sidecar.port, allowed);
    const before = app.seen.length;
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        h2request(session, { ':path': `/multi/${i}`, 'x-spiffe-id': 'spiffe://example.org/admin' }),
      ),
    );
    session.close();
    expect(results.map((r) => r.status)).toEqual(new Array(25).fill(200));
    expect(results.map((r) => (JSON.parse(r.body.toString()) as Seen).url)).toEqual(
      Array.from({ length: 25 }, (_, i) => `/multi/${i}`),
    );
    const seen = app.seen.slice(before);
    expect(seen).toHaveLength(25);
    for (const s of seen) expect(idHeaders(s)).toEqual([ALLOWED_ID]);
  });

  it('streams a 64 MB response to an HTTP/2 caller, intact and before the app has finished', async () => {
    const session = await h2session(sidecar.port, allowed);
    const res = await h2request(session, { ':path': '/big?blocks=64' });
    session.close();
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(64 * MB);
    expect(sha256(res.body)).toBe(bigSha256(64));
    const state = app.big.at(-1)!;
    expect(state.aborted).toBe(false);
    expect(res.firstByteAt).toBeLessThan(state.finishedAt!);
  }, 60_000);

  it('streams the same large response to an HTTP/1.1 caller', async () => {
    const res = await new Promise<{ status: number; version: string; length: number; sha256: string }>(
      (resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: sidecar.port,
            path: '/big?blocks=16',
            cert: allowed.chainPem,
            key: allowed.keyPem,
            rejectUnauthorized: false,
            agent: false,
          },
          (r) => {
            const hash = createHash('sha256');
            let length = 0;
            r.on('data', (d: Buffer) => {
              hash.update(d);
              length += d.length;
            });
            r.on('end', () =>
              resolve({ status: r.statusCode ?? 0, version: r.httpVersion, length, sha256: hash.digest('hex') }),
            );
            r.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end();
      },
    );
    expect(res).toEqual({ status: 200, version: '1.1', length: 16 * MB, sha256: bigSha256(16) });
  }, 60_000);

  it('cancels the app’s response when the HTTP/2 caller resets its stream', async () => {
    const session = await h2session(sidecar.port, allowed);
    const stream = session.request({ ':path': '/big?blocks=512' }, { endStream: true });
    const before = app.big.length;
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => app.big.length).toBe(before + 1);
    await expect.poll(() => app.big[before].aborted, { timeout: 5000 }).toBe(true);
    expect(app.big[before].finishedAt).toBeUndefined();
    session.close();
  }, 30_000);

  it('a denied HTTP/2 caller gets 403 and the app sees nothing', async () => {
    const before = app.seen.length;
    const session = await h2session(sidecar.port, denied);
    const res = await h2request(session, { ':method': 'POST', ':path': '/orders' }, 'please');
    session.close();
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body.toString())).toEqual({ error: 'forbidden', reason: expect.any(String) });
    expect(app.seen.length).toBe(before);
    const line = sidecar.logs.filter((l) => l.event === 'authz').at(-1);
    expect(line).toMatchObject({ decision: 'deny', peer: DENIED_ID });
  });

  it('an HTTP/2 caller without a certificate is disconnected and the app sees nothing', async () => {
    const before = app.seen.length;
    const outcome = await h2session(sidecar.port, undefined).then(
      async (session) => {
        try {
          const res = await h2request(session, { ':path': '/anonymous' });
          return `answered ${res.status}`;
        } catch {
          return 'refused';
        }
      },
      () => 'refused',
    );
    expect(outcome).toBe('refused');
    expect(app.seen.length).toBe(before);
  });

  it('CONNECT over HTTP/2 is answered 400 and never reaches the app', async () => {
    const before = app.seen.length;
    const session = await h2session(sidecar.port, allowed);
    const res = await h2request(session, { ':method': 'CONNECT', ':authority': 'internal.example:22' }, 'SSH-2.0');
    session.close();
    expect(res.status).toBe(400);
    expect(app.seen.length).toBe(before);
  });

  it('an HTTP/2 caller gets 502 when the HTTP/1.1 app is down', async () => {
    const dead = await sidecarFor(`http://127.0.0.1:${await closedPort()}`);
    const session = await h2session(dead.port, allowed);
    const res = await h2request(session, { ':path': '/' });
    session.close();
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'bad_gateway' });
  });

  describe('--upstream-timeout 1s bounds the wait for the answer, not the upload', () => {
    let timed: TestSidecar;
    beforeAll(async () => {
      timed = await sidecarFor(app.url, { 'upstream-timeout': '1s' });
    });

    /** 10 parts, 250 ms apart: the request lasts 2.5 s; the app answers once it has all of it. */
    async function* slowly(parts: Buffer[]) {
      for (const p of parts) {
        yield p;
        await new Promise((r) => setTimeout(r, 250));
      }
    }

    it('control: a request the app answers late gets 504 after about a second', async () => {
      const slowApp = createServer(() => {});
      await new Promise<void>((resolve) => slowApp.listen(0, '127.0.0.1', resolve));
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            slowApp.close(() => resolve());
            slowApp.closeAllConnections();
          }),
      );
      const silent = await sidecarFor(`http://127.0.0.1:${(slowApp.address() as AddressInfo).port}`, {
        'upstream-timeout': '1s',
      });
      const session = await h2session(silent.port, allowed);
      const res = await h2request(session, { ':path': '/never' });
      session.close();
      expect(res.status).toBe(504);
    });

    it('an HTTP/2 upload that lasts 2.5 s reaches the app and gets its answer', async () => {
      const parts = Array.from({ length: 10 }, () => randomBytes(1000));
      const session = await h2session(timed.port, allowed);
      const res = await h2request(session, { ':method': 'POST', ':path': '/slow-h2-upload' }, () => slowly(parts));
      session.close();
      expect(res.status).toBe(200);
      expect(app.seen.at(-1)).toMatchObject({ url: '/slow-h2-upload', bodySha256: sha256(Buffer.concat(parts)) });
    }, 15_000);

    it('an HTTP/1.1 upload that lasts 2.5 s reaches the app and gets its answer', async () => {
      const parts = Array.from({ length: 10 }, () => randomBytes(1000));
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: timed.port,
            method: 'POST',
            path: '/slow-h1-upload',
            cert: allowed.chainPem,
            key: allowed.keyPem,
            rejectUnauthorized: false,
            agent: false,
          },
          (r) => {
            r.resume();
            r.on('end', () => resolve(r.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        void (async () => {
          for await (const p of slowly(parts)) req.write(p);
          req.end();
        })();
      });
      expect(status).toBe(200);
      expect(app.seen.at(-1)).toMatchObject({ url: '/slow-h1-upload', bodySha256: sha256(Buffer.concat(parts)) });
    }, 15_000);
  });

  describe('--upstream-protocol h2c: an HTTP/2 app behind the same kind of port', () => {
    let h2cApp: App;
    let viaH2c: TestSidecar;
    beforeAll(async () => {
      h2cApp = await startH2cApp();
      cleanups.push(() => h2cApp.close());
      viaH2c = await sidecarFor(h2cApp.url, { 'upstream-protocol': 'h2c' });
    });

    it('an HTTP/2 caller reaches it with the verified ID, a streamed body and the app’s trailers', async () => {
      const session = await h2session(viaH2c.port, allowed);
      const body = randomBytes(2 * MB);
      const res = await h2request(
        session,
        { ':method': 'PUT', ':path': '/h2c', 'x-spiffe-id': 'spiffe://example.org/admin' },
        async function* () {
          yield body.subarray(0, MB);
          yield body.subarray(MB);
        },
      );
      session.close();
      expect(res.status).toBe(200);
      expect(res.headers['x-app']).toBe('h2c');
      expect(res.trailers?.['x-checksum']).toBe(sha256(body));
      const seen = h2cApp.seen.at(-1)!;
      expect(seen).toMatchObject({ method: 'PUT', url: '/h2c', bodySha256: sha256(body) });
      expect(idHeaders(seen)).toEqual([ALLOWED_ID]);
    });

    it('a response without trailers (and a non-200 status) ends cleanly for an HTTP/2 caller', async () => {
      const session = await h2session(viaH2c.port, allowed);
      const res = await h2request(session, { ':path': '/no-trailers' });
      session.close();
      expect(res.status).toBe(201);
      expect((JSON.parse(res.body.toString()) as Seen).headers['x-spiffe-id']).toBe(ALLOWED_ID);
      expect(res.trailers === undefined || Object.keys(res.trailers).length === 0).toBe(true);
    });

    it('an HTTP/1.1 caller reaches it too, body and verified ID included', async () => {
      const res = await requestVia(viaH2c.port, allowed, {
        method: 'POST',
        path: '/h1-to-h2c',
        headers: { 'x-spiffe-id': 'spiffe://example.org/admin', 'content-type': 'text/plain' },
        body: 'hello h2c',
      });
      expect(res.status).toBe(200);
      expect(res.headers['x-app']).toBe('h2c');
      const seen = h2cApp.seen.at(-1)!;
      expect(seen).toMatchObject({ method: 'POST', url: '/h1-to-h2c', bodySha256: sha256('hello h2c') });
      expect(idHeaders(seen)).toEqual([ALLOWED_ID]);
    });

    it('curl --http2 and --http1.1 both get the h2c app’s answer', async () => {
      const url = `https://127.0.0.1:${viaH2c.port}/curl-h2c`;
      const common = ['--cert', certFiles.cert, '--key', certFiles.key, '-w', '\n%{http_version} %{http_code}', url];
      const [two, one] = await Promise.all([curl(['--http2', ...common]), curl(['--http1.1', ...common])]);
      expect(two.stdout.split('\n')[1]).toBe('2 200');
      expect(one.stdout.split('\n')[1]).toBe('1.1 200');
      for (const res of [two, one]) {
        expect((JSON.parse(res.stdout.split('\n')[0]) as Seen).headers['x-spiffe-id']).toBe(ALLOWED_ID);
      }
    });

    it('a denied HTTP/2 caller gets 403 and the h2c app sees nothing', async () => {
      const before = h2cApp.seen.length;
      const session = await h2session(viaH2c.port, denied);
      const res = await h2request(session, { ':path': '/h2c' });
      session.close();
      expect(res.status).toBe(403);
      expect(h2cApp.seen.length).toBe(before);
    });
  });
});
