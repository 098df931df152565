// forwardH2ToH1 between a real HTTP/2 caller (h2c on loopback) and a real HTTP/1.1 app: the request and its
// body framed for HTTP/1.1, the response carried back (or 502 when HTTP/2 cannot carry it), 502/504/408.
import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { forwardH2ToH1 } from '../../src/proxy/forward-h2.js';
import type { InboundLimits } from '../../src/proxy/limits.js';
import {
  answerJson,
  closeServer,
  closedPort,
  startH2Front,
  forwardContext,
  h2Collect,
  logLine,
  namesOf,
  startRecordingApp,
  type TestContext,
  targetFor,
} from '../helpers/proxy-unit.js';
import { recordingExchange } from '../helpers/exchange-progress.js';

let app: Awaited<ReturnType<typeof startRecordingApp>> | undefined;
let front: http2.Http2Server | undefined;
let client: http2.ClientHttp2Session | undefined;
let ctx: TestContext | undefined;
afterEach(async () => {
  client?.destroy();
  ctx?.close();
  await closeServer(front);
  await closeServer(app?.server);
  app = front = client = ctx = undefined;
});

/** An h2c server forwarding each stream with forwardH2ToH1, as inbound.ts does; and a client session to it. */
async function startFront(appPort: number, overrides: Partial<InboundLimits> = {}) {
  const c = (ctx = forwardContext(`http://127.0.0.1:${appPort}`, overrides));
  const reached: number[] = [];
  const started = await startH2Front((stream, socket, head, reply) =>
    forwardH2ToH1(
      c,
      stream,
      socket,
      targetFor(c, head, stream.endAfterHeaders),
      reply,
      recordingExchange(() => reached.push(1)),
    ),
  );
  front = started.server;
  client = started.session;
  return { ctx: c, session: client, reached };
}

describe('forwardH2ToH1', () => {
  it('a request without a body: the app sees its line, identity first, no body framing', async () => {
    app = await startRecordingApp();
    const f = await startFront(app.port);
    const got = await h2Collect(
      f.session.request(
        { ':method': 'GET', ':path': '/v1/items?q=1', 'x-one': '1', 'x-spiffe-id': 'forged' },
        { endStream: true },
      ),
    );
    expect(got.headers[':status']).toBe(201);
    expect(got.body.toString()).toBe('got GET /v1/items?q=1');
    const seen = app.seen[0];
    expect([seen.method, seen.url]).toEqual(['GET', '/v1/items?q=1']);
    expect(seen.rawHeaders.slice(0, 8)).toEqual([
      'x-auth-method',
      'api-key',
      'x-api-key-name',
      'partner',
      'x-forwarded-for',
      '127.0.0.1',
      'x-forwarded-proto',
      'http',
    ]);
    const names = namesOf(seen.rawHeaders);
    expect(names).toContain('x-one');
    expect(names).toContain('host');
    expect(names).not.toContain('x-spiffe-id');
    expect(names).not.toContain('transfer-encoding');
    expect(names).not.toContain('content-length');
    expect(f.reached).toHaveLength(1);
  });

  it('a body of unknown length is sent chunked, whatever the method, and arrives whole', async () => {
    app = await startRecordingApp();
    const f = await startFront(app.port);
    // Node's client ends a GET's stream at its headers unless told otherwise.
    const stream = f.session.request({ ':method': 'GET', ':path': '/with-body' }, { endStream: false });
    stream.write(Buffer.alloc(100_000, 1));
    stream.end(Buffer.alloc(50_000, 2));
    const got = await h2Collect(stream);
    expect(got.headers[':status']).toBe(201);
    const seen = app.seen[0];
    expect(namesOf(seen.rawHeaders)).toContain('transfer-encoding');
    expect(seen.body.length).toBe(150_000);
    expect(seen.body.subarray(99_999, 100_001)).toEqual(Buffer.from([1, 2]));
  });

  it('a body of known length keeps its content-length', async () => {
    app = await startRecordingApp();
    const f = await startFront(app.port);
    const stream = f.session.request({ ':method': 'POST', ':path': '/upload', 'content-length': '5' });
    stream.end('hello');
    await h2Collect(stream);
    const names = namesOf(app.seen[0].rawHeaders);
    expect(names).toContain('content-length');
    expect(names).not.toContain('transfer-encoding');
    expect(app.seen[0].body.toString()).toBe('hello');
  });

  it('a response HTTP/2 cannot carry (two content-types): 502 bad_response, counted', async () => {
    app = await startRecordingApp((req, res) => {
      res.writeHead(200, [
        ['content-type', 'text/plain'],
        ['content-type', 'text/html'],
      ]);
      res.end('x');
    });
    const f = await startFront(app.port);
    const got = await h2Collect(f.session.request({ ':path': '/' }, { endStream: true }));
    expect(got.headers[':status']).toBe(502);
    expect(answerJson(got.body)).toEqual({ error: 'bad_gateway', reason: 'bad_response' });
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_unreachable']]);
  });

  it('a dead app: 502 upstream_unreachable', async () => {
    const f = await startFront(await closedPort());
    const got = await h2Collect(f.session.request({ ':path': '/' }, { endStream: true }));
    expect(got.headers[':status']).toBe(502);
    expect(answerJson(got.body).reason).toBe('upstream_unreachable');
    expect(f.ctx.metrics.calls).toEqual([['upstreamError', 'upstream_unreachable']]);
  });

  it('no response headers within --upstream-timeout: 504, the app request aborted', async () => {
    app = await startRecordingApp((req) => req.resume());
    const f = await startFront(app.port, { upstreamTimeoutMs: 150 });
    const got = await h2Collect(f.session.request({ ':path': '/slow' }, { endStream: true }));
    expect(got.headers[':status']).toBe(504);
    expect(answerJson(got.body).reason).toBe('upstream_timeout');
    expect(got.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(f.ctx.metrics.count('upstreamError', 'upstream_timeout')).toBe(1);
    const a = app;
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/slow']);
  });

  it('a body that stops coming: 408 request_body_timeout, logged, the stream reset after the answer', async () => {
    app = await startRecordingApp((req) => req.resume());
    const f = await startFront(app.port, { requestBodyTimeoutMs: 200 });
    const stream = f.session.request({ ':method': 'POST', ':path': '/upload' });
    stream.write('the start of a body');
    const got = await h2Collect(stream);
    expect(got.headers[':status']).toBe(408);
    expect(answerJson(got.body)).toEqual({ error: 'request_timeout', reason: 'request_body_timeout' });
    expect(got.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await logLine(f.ctx.logs, { event: 'request_timeout', reason: 'request_body_timeout' });
    const a = app;
    await expect.poll(() => a.aborted, { timeout: 5000, interval: 10 }).toEqual(['/upload']);
  });

  it('a gRPC stream is exempt from the body timeout', async () => {
    app = await startRecordingApp((req, res) => {
      req.once('data', () => res.writeHead(200, { 'content-type': 'application/grpc' }).end());
    });
    const f = await startFront(app.port, { requestBodyTimeoutMs: 100 });
    const stream = f.session.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      'content-type': 'application/grpc',
    });
    // The app answers once the first message arrives, sent well after the body timeout.
    setTimeout(() => stream.write(Buffer.alloc(5)), 300);
    const got = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    expect(got[':status']).toBe(200);
    expect(f.ctx.logs.filter((l) => l.event === 'request_timeout')).toEqual([]);
    stream.close();
  });
});
