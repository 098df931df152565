// forwardH1 between a real HTTP/1.1 caller and a real HTTP/1.1 app on loopback: what the app receives, what
// the caller gets, 502/504, the 408 for a stalled body, the cut of a response the caller does not read.
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAnswerH1 } from '../../src/proxy/answers.js';
import { forwardH1 } from '../../src/proxy/forward-h1.js';
import type { Reply } from '../../src/proxy/forwarding.js';
import type { InboundLimits } from '../../src/proxy/limits.js';
import {
  answerJson,
  closeServer,
  closedPort,
  forwardContext,
  h1Request,
  listenOn,
  logLine,
  readToClose,
  type TestContext,
  targetFor,
} from '../helpers/proxy-unit.js';
import { recordingExchange } from '../helpers/exchange-progress.js';

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
}

let app: http.Server | undefined;
let front: http.Server | undefined;
let ctx: TestContext | undefined;
afterEach(async () => {
  ctx?.close();
  await closeServer(front);
  await closeServer(app);
  app = front = ctx = undefined;
});

/** An app that records each request (after its body) and answers with `respond`. */
async function startApp(respond: (req: http.IncomingMessage, res: http.ServerResponse) => void = defaultRespond) {
  const seen: Seen[] = [];
  const aborted: string[] = [];
  app = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) }),
    );
    res.on('close', () => {
      if (!res.writableFinished) aborted.push(req.url!);
    });
    respond(req, res);
  });
  const port = await listenOn(app);
  return { port, seen, aborted };
}

function defaultRespond(req: http.IncomingMessage, res: http.ServerResponse) {
  req.on('end', () => {
    res.statusMessage = 'Fine Thanks';
    res.writeHead(201, {
      'content-type': 'text/plain',
      'x-app': 'yes',
      'keep-alive': 'timeout=5',
      connection: 'keep-alive',
    });
    res.end(`got ${req.method} ${req.url}`);
  });
  req.resume();
}

/** The sidecar's side: a server whose handler forwards every request with forwardH1, as inbound.ts does. */
async function startFront(appPort: number, overrides: Partial<InboundLimits> = {}) {
  ctx = forwardContext(`http://127.0.0.1:${appPort}`, overrides);
  const reached: string[] = [];
  const c = ctx;
  front = http.createServer((req, res) => {
    const reply: Reply = (a, keepAlive = false) => {
      writeAnswerH1(res, a, keepAlive && req.complete);
      req.resume();
    };
    forwardH1(
      c,
      req,
      res,
      targetFor(c, req, false),
      reply,
      recordingExchange(() => reached.push(req.url!)),
    );
  });
  return { port: await listenOn(front), ctx: c, reached };
}

describe('forwardH1', () => {
  it('a GET reaches the app with its line and fields in order, identity first, hop-by-hop gone', async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    const got = await h1Request(f.port, {
      path: '/v1/items?q=1',
      headers: {
        'X-One': '1',
        'x-spiffe-id': 'spiffe://forged/id',
        'X-Forwarded-For': '6.6.6.6',
        Connection: 'keep-alive, x-drop',
        'x-drop': 'secret',
        'X-Two': '2',
      },
    });
    expect(got.status).toBe(201);
    expect(got.body.toString()).toBe('got GET /v1/items?q=1');
    expect(a.seen).toHaveLength(1);
    const seen = a.seen[0];
    expect([seen.method, seen.url]).toEqual(['GET', '/v1/items?q=1']);
    expect(seen.rawHeaders).toEqual([
      'x-auth-method',
      'api-key',
      'x-api-key-name',
      'partner',
      'x-forwarded-for',
      '127.0.0.1',
      'x-forwarded-proto',
      'http',
      'X-One',
      '1',
      'X-Two',
      '2',
      'Host',
      `127.0.0.1:${f.port}`,
      // Our own, for our keep-alive connection to the app.
      'Connection',
      'keep-alive',
    ]);
    expect(f.reached).toEqual(['/v1/items?q=1']);
  });

  it("the caller gets the app's status and fields, never its reason phrase nor its hop-by-hop fields", async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    const got = await h1Request(f.port, { path: '/' });
    expect(got.status).toBe(201);
    expect(got.statusMessage).toBe('Created');
    expect(got.headers['x-app']).toBe('yes');
    expect(got.headers['keep-alive']).toBeUndefined();
  });

  it.each<[what: string, headers: Record<string, string>, body: Buffer, framing: string]>([
    ['a body of known length', {}, Buffer.alloc(300_000, 7), 'content-length'],
    ['a chunked body', { 'transfer-encoding': 'chunked' }, Buffer.alloc(300_000, 9), 'transfer-encoding'],
  ])('%s reaches the app whole and framed', async (_what, headers, body, framing) => {
    const a = await startApp();
    const f = await startFront(a.port);
    const got = await h1Request(f.port, { method: 'POST', path: '/upload', headers, body });
    expect(got.status).toBe(201);
    const seen = a.seen[0];
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(sha(seen.body)).toBe(sha(body));
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).toContain(framing);
  });

  it('while draining, the response says connection: close', async () => {
    const a = await startApp();
    const f = await startFront(a.port);
    f.ctx.isDraining.value = true;
    const got = await h1Request(f.port, { path: '/' });
    expect(got.headers.connection).toBe('close');
  });

  it('a dead app: 502 upstream_unreachable, logged and counted, the connection kept', async () => {
    const f = await startFront(await closedPort());
    const agent = new http.Agent({ keepAlive: true });
    const got = await h1Request(f.port, { path: '/', agent }).finally(() => agent.destroy());
    expect(got.status).toBe(502);
    expect(answerJson(got.body)).toEqual({ error: 'bad_gateway', reason: 'upstream_unreachable' });
    expect(got.headers.connection).toBe('keep-alive');
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_unreachable']]);
    await logLine(f.ctx.logs, { event: 'upstream_error', reason: 'upstream_unreachable', error: 'ECONNREFUSED' });
    expect(f.reached).toEqual([]);
  });

  it('an app that sends no response headers within --upstream-timeout: 504, its request aborted', async () => {
    const a = await startApp((req) => req.resume());
    const f = await startFront(a.port, { upstreamTimeoutMs: 150 });
    const got = await h1Request(f.port, { path: '/slow' });
    expect(got.status).toBe(504);
    expect(answerJson(got.body)).toEqual({ error: 'gateway_timeout', reason: 'upstream_timeout' });
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_timeout']]);
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/slow']);
  });

  it('the upstream timeout counts from the end of the request: a slow upload is not a slow app', async () => {
    const a = await startApp();
    const f = await startFront(a.port, { upstreamTimeoutMs: 150, requestBodyMinRate: 0 });
    const body = Readable.from(
      (async function* () {
        for (let i = 0; i < 4; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          yield Buffer.from(`part${i}`);
        }
      })(),
    );
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: f.port, method: 'POST', path: '/upload', agent: false },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      body.pipe(req);
    });
    expect(got).toBe(201);
    expect(a.seen[0].body.toString()).toBe('part0part1part2part3');
  });

  it('a body that stops coming: 408 request_body_timeout, logged, the app request aborted, the connection closed', async () => {
    const a = await startApp((req) => req.resume());
    const f = await startFront(a.port, { requestBodyTimeoutMs: 200 });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.write('POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nonly ten b');
    const text = (await readToClose(socket)).toString();
    expect(text.startsWith('HTTP/1.1 408 Request Timeout\r\n')).toBe(true);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(text).toContain('"reason":"request_body_timeout"');
    await logLine(f.ctx.logs, { event: 'request_timeout', reason: 'request_body_timeout', remote: '127.0.0.1' });
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/upload']);
  });

  it('a caller that takes no byte of its response for --response-write-timeout is cut', async () => {
    const total = 256 * 1024 * 1024;
    const a = await startApp((req, res) => {
      res.writeHead(200, { 'content-length': String(total) });
      let sent = 0;
      const chunk = Buffer.alloc(1024 * 1024, 1);
      const pump = () => {
        while (sent < total && res.write(chunk)) sent += chunk.length;
        if (sent < total) res.once('drain', pump);
      };
      pump();
    });
    const f = await startFront(a.port, { responseWriteTimeoutMs: 300 });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.pause();
    socket.write('GET /big HTTP/1.1\r\nhost: a\r\n\r\n');
    await logLine(f.ctx.logs, { event: 'request_timeout', reason: 'response_write_timeout' });
    // The caller's connection is gone, and with it the rest of the response.
    const received = await readToClose(socket);
    expect(received.length).toBeLessThan(total);
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/big']);
  });

  it('a caller that leaves mid-response aborts the app request', async () => {
    const a = await startApp((req, res) => {
      res.writeHead(200);
      res.write('first part');
    });
    const f = await startFront(a.port);
    const socket = net.connect(f.port, '127.0.0.1');
    socket.write('GET /stream HTTP/1.1\r\nhost: a\r\n\r\n');
    await new Promise((resolve) => socket.once('data', resolve));
    socket.destroy();
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/stream']);
  });
});
