// forwardToH2c between real HTTP/1.1 and HTTP/2 callers and a real h2c app on loopback: the request as the
// app sees it (te: trailers for gRPC), bodies, trailers and trailers-only answers, 502/504/408.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAnswerH1 } from '../../src/proxy/answers.js';
import { forwardToH2c } from '../../src/proxy/forward-h2c.js';
import type { Reply } from '../../src/proxy/forwarding.js';
import type { InboundLimits } from '../../src/proxy/limits.js';
import {
  answerJson,
  closeServer,
  closedPort,
  startH2Front as startH2FrontWith,
  forwardContext,
  h1Request,
  h2Collect,
  listenOn,
  logLine,
  readToClose,
  type TestContext,
  targetFor,
} from '../helpers/proxy-unit.js';
import { recordingExchange } from '../helpers/exchange-progress.js';

interface SeenStream {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

type Respond = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

let app: http2.Http2Server | undefined;
let front: http.Server | http2.Http2Server | undefined;
let client: http2.ClientHttp2Session | undefined;
let ctx: TestContext | undefined;
afterEach(async () => {
  client?.destroy();
  ctx?.close();
  await closeServer(front);
  await closeServer(app);
  app = front = client = ctx = undefined;
});

const echo: Respond = (stream, headers) => {
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-app': 'h2c' });
    stream.end(`got ${headers[':method']} ${headers[':path']}`);
  });
  stream.resume();
};

/** An h2c app recording each stream (its headers, and its body once ended) and the streams cut under it. */
async function startApp(respond: Respond = echo) {
  const seen: SeenStream[] = [];
  const cancelled: number[] = [];
  app = http2.createServer();
  app.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => seen.push({ headers, body: Buffer.concat(chunks) }));
    stream.on('close', () => {
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) cancelled.push(stream.rstCode);
    });
    respond(stream, headers);
  });
  return { port: await listenOn(app), seen, cancelled };
}

/** An HTTP/1.1 caller's side: forwardToH2c with { res, body }. */
async function startH1Front(appPort: number, overrides: Partial<InboundLimits> = {}) {
  const c = (ctx = forwardContext(`http://127.0.0.1:${appPort}`, overrides, 'h2c'));
  const reached: number[] = [];
  front = http.createServer((req, res) => {
    const reply: Reply = (a, keepAlive = false) => {
      writeAnswerH1(res, a, keepAlive && req.complete);
      req.resume();
    };
    forwardToH2c(
      c,
      { res, body: req },
      req.socket,
      targetFor(c, req, false),
      reply,
      recordingExchange(() => reached.push(1)),
    );
  });
  return { port: await listenOn(front), ctx: c, reached };
}

/** An HTTP/2 caller's side: forwardToH2c with { h2 }; and a client session to it. */
async function startH2Front(appPort: number, overrides: Partial<InboundLimits> = {}) {
  const c = (ctx = forwardContext(`http://127.0.0.1:${appPort}`, overrides, 'h2c'));
  const started = await startH2FrontWith((stream, socket, head, reply) =>
    forwardToH2c(c, { h2: stream }, socket, targetFor(c, head, stream.endAfterHeaders), reply, recordingExchange()),
  );
  front = started.server;
  client = started.session;
  return { ctx: c, session: client };
}

describe('forwardToH2c from an HTTP/1.1 caller', () => {
  it('the app sees the request as HTTP/2: pseudo-headers, identity, the caller fields, the body', async () => {
    const a = await startApp();
    const f = await startH1Front(a.port);
    const got = await h1Request(f.port, {
      method: 'POST',
      path: '/v1/orders?x=1',
      headers: { host: 'orders.internal', 'x-one': '1', 'x-spiffe-id': 'forged', connection: 'keep-alive' },
      body: 'order body',
    });
    expect(got.status).toBe(200);
    expect(got.headers['x-app']).toBe('h2c');
    expect(got.body.toString()).toBe('got POST /v1/orders?x=1');
    const seen = a.seen[0];
    expect(seen.headers).toMatchObject({
      ':method': 'POST',
      ':path': '/v1/orders?x=1',
      ':scheme': 'http',
      ':authority': 'orders.internal',
      'x-api-key-name': 'partner',
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-one': '1',
    });
    expect(seen.headers['x-spiffe-id']).toBeUndefined();
    expect(seen.headers.connection).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
    expect(seen.body.toString()).toBe('order body');
    expect(f.reached).toHaveLength(1);
  });

  it('a dead app: 502 upstream_unreachable, counted', async () => {
    const f = await startH1Front(await closedPort());
    const got = await h1Request(f.port, { path: '/' });
    expect(got.status).toBe(502);
    expect(answerJson(got.body).reason).toBe('upstream_unreachable');
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_unreachable']]);
  });

  it('no response headers within --upstream-timeout: 504, the app stream cancelled', async () => {
    const a = await startApp((stream) => stream.resume());
    const f = await startH1Front(a.port, { upstreamTimeoutMs: 150 });
    const got = await h1Request(f.port, { path: '/slow' });
    expect(got.status).toBe(504);
    expect(answerJson(got.body).reason).toBe('upstream_timeout');
    await expect.poll(() => a.cancelled, { timeout: 5000, interval: 10 }).toEqual([http2.constants.NGHTTP2_CANCEL]);
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_timeout']]);
  });

  it('a body that stops coming: 408 request_body_timeout, logged, the app stream cancelled', async () => {
    const a = await startApp((stream) => stream.resume());
    const f = await startH1Front(a.port, { requestBodyTimeoutMs: 200 });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.write('POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nonly ten b');
    const text = (await readToClose(socket)).toString();
    expect(text.startsWith('HTTP/1.1 408 Request Timeout\r\n')).toBe(true);
    expect(text).toContain('"reason":"request_body_timeout"');
    await logLine(f.ctx.logs, { event: 'request_timeout', reason: 'request_body_timeout' });
    // The app's stream is reset, never finished (with content-length, nghttp2 reports the short body).
    await expect.poll(() => a.cancelled.length, { timeout: 5000, interval: 10 }).toBe(1);
  });
});

describe('a cut-short request is never handed to the app as a whole one', () => {
  it.each([
    ['the caller leaves mid-upload', 60_000],
    ['the body stops coming (408)', 200],
  ])('%s: the app stream is reset, and never ends', async (_, requestBodyTimeoutMs) => {
    let received!: () => void;
    const dataArrived = new Promise<void>((resolve) => (received = resolve));
    const a = await startApp((stream) => stream.once('data', () => received()));
    const f = await startH1Front(a.port, { requestBodyTimeoutMs });
    const socket = net.connect(f.port, '127.0.0.1');
    socket.on('error', () => {});
    // Chunked: no length for nghttp2 to check, so only a reset without END_STREAM keeps it from looking whole.
    socket.write('POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n');
    await dataArrived;
    if (requestBodyTimeoutMs > 1000) socket.destroy();
    await expect.poll(() => a.cancelled.length, { timeout: 5000, interval: 10 }).toBe(1);
    expect(a.seen).toEqual([]);
    socket.destroy();
  });
});

describe('forwardToH2c from an HTTP/2 caller', () => {
  it('gRPC: te: trailers added for the app, the body streamed, the trailers carried back', async () => {
    const a = await startApp((stream) => {
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
        stream.end(Buffer.from([0, 0, 0, 0, 1, 42]));
      });
      stream.resume();
    });
    const f = await startH2Front(a.port);
    const stream = f.session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.end(Buffer.from([0, 0, 0, 0, 1, 7]));
    const got = await h2Collect(stream);
    expect(got.headers[':status']).toBe(200);
    expect([...got.body]).toEqual([0, 0, 0, 0, 1, 42]);
    expect(got.trailers).toMatchObject({ 'grpc-status': '0', 'grpc-message': 'ok' });
    expect(a.seen[0].headers.te).toBe('trailers');
    expect([...a.seen[0].body]).toEqual([0, 0, 0, 0, 1, 7]);
  });

  it('a trailers-only answer stays one HEADERS frame that ends the stream', async () => {
    const a = await startApp((stream) => {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' },
        { endStream: true },
      );
    });
    const f = await startH2Front(a.port);
    const stream = f.session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Get',
      'content-type': 'application/grpc',
    });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    expect(stream.readableEnded || (await h2Collect(stream)).body.length === 0).toBe(true);
    expect(headers).toMatchObject({ ':status': 200, 'grpc-status': '5', 'grpc-message': 'not found' });
  });

  it('an HTTP/2 request without a body reaches the app ended at its headers', async () => {
    const a = await startApp();
    const f = await startH2Front(a.port);
    const got = await h2Collect(f.session.request({ ':path': '/ping' }, { endStream: true }));
    expect(got.headers[':status']).toBe(200);
    expect(got.body.toString()).toBe('got GET /ping');
    expect(a.seen[0].body.length).toBe(0);
  });

  it('a dead app: 502 on the stream', async () => {
    const f = await startH2Front(await closedPort());
    const got = await h2Collect(f.session.request({ ':path': '/' }, { endStream: true }));
    expect(got.headers[':status']).toBe(502);
    expect(answerJson(got.body).reason).toBe('upstream_unreachable');
  });
});
