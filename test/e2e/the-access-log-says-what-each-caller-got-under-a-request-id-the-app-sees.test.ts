// The access line, over real mTLS on loopback with certificates made here: one `authz` line per request,
// written when the exchange is over, with what the caller got (status, body bytes each way, durations) and
// how it ended; its request id is the `x-request-id` the app receives, always ours (never the caller's, nor
// the trace-id of its W3C traceparent: that is logged as trace_id, and the traceparent reaches the app unchanged). HTTP/1.1, HTTP/2 and WebSocket; 200, 403,
// 429, 502 and a caller that leaves mid-response. Every wait is for an event or a log line, bounded.
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type * as http2 from 'node:http2';
import { createServer as createH2cServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { waitForLog, writePolicy } from '../helpers/authz.js';
import { openRaw, requestVia } from '../helpers/client.js';
import { h2request, h2session } from '../helpers/http2-fixture.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { closedPort } from '../helpers/tcp-echo-app.js';

const SERVER_ID = 'spiffe://example.org/ns/shop/sa/orders';
const CLIENT_ID = 'spiffe://example.org/ns/shop/sa/frontend';
const STRANGER_ID = 'spiffe://example.org/ns/shop/sa/stranger';
const HELLO = 'hello world\n';
const FIRST_CHUNK = 'first-chunk-of-a-response-that-never-ends\n';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const REQUEST_ID = /^[0-9a-f]{32}$/;

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

/**
 * The app: records what it receives; /hello answers 12 bytes, /upload counts the body, /stream never ends,
 * /hang never answers.
 */
function startApp() {
  const seen: Seen[] = [];
  const streamsClosed: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    let length = 0;
    req.on('data', (c: Buffer) => (length += c.length));
    req.on('end', () => {
      // Never answered: the sidecar's --upstream-timeout decides.
      if (req.url === '/hang') return;
      if (req.url === '/stream') {
        res.on('close', () => streamsClosed.push(req.url ?? ''));
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(FIRST_CHUNK);
        return;
      }
      const body = req.url?.startsWith('/upload') ? `got ${length}` : HELLO;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on('upgrade', (req, socket, head) => {
    seen.push({ url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  return { server, seen, streamsClosed };
}

const app = startApp();
let appUrl: string;
let serving: ServingFiles;
let client: IssuedCertificate;
let stranger: IssuedCertificate;
let sidecar: TestSidecar;
let removeTemp: () => Promise<void>;

beforeAll(async () => {
  await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
  appUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const temp = await tempDir();
  removeTemp = temp.remove;
  serving = await writeServingFiles(temp.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  [client, stranger] = await Promise.all([issueSvid(ca, { id: CLIENT_ID }), issueSvid(ca, { id: STRANGER_ID })]);
  const policy = await writePolicy(temp.path, 'policy.json', {
    version: 1,
    rules: [
      {
        name: 'once-a-minute',
        effect: 'allow',
        path: { exact: '/limited' },
        callers: { ids: [CLIENT_ID] },
        rate_limit: { requests: 1, per: '1m' },
      },
      { name: 'frontend-calls', effect: 'allow', path: { prefix: '/' }, callers: { ids: [CLIENT_ID] } },
    ],
  });
  sidecar = await startTestSidecar({
    upstream: appUrl,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': policy,
  });
});

afterAll(async () => {
  await sidecar?.close();
  app.server.closeAllConnections();
  await new Promise((resolve) => app.server.close(resolve));
  await removeTemp?.();
});

/** The app's record of the request that carried this id. */
function seenWithId(id: unknown): Seen | undefined {
  return app.seen.find((r) => r.headers['x-request-id'] === id);
}

describe('the access line over HTTP/1.1', () => {
  it('an allowed request: one line at its end with status, bytes, durations and the id the app received', async () => {
    const from = sidecar.logs.length;
    const res = await requestVia(sidecar.port, client, { method: 'POST', path: '/upload?secret=1', body: 'abcdef' });
    expect(res.status).toBe(200);
    expect(res.body).toBe('got 6');
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/upload' }, from);
    expect(line).toMatchObject({
      level: 'info',
      peer: CLIENT_ID,
      auth: 'mtls',
      method: 'POST',
      decision: 'allow',
      rule: 'frontend-calls',
      protocol: 'http/1.1',
      status: 200,
      bytes_in: 6,
      bytes_out: 5,
      remote: '127.0.0.1',
    });
    expect(line).not.toHaveProperty('outcome');
    expect(line).not.toHaveProperty('reason');
    expect(line.request_id).toMatch(REQUEST_ID);
    expect(line.upstream_ms).toEqual(expect.any(Number));
    expect(line.duration_ms as number).toBeGreaterThanOrEqual(line.upstream_ms as number);
    expect(line.upstream_ms as number).toBeGreaterThan(0);
    // The app received the same id, set by the sidecar.
    expect(seenWithId(line.request_id)?.url).toBe('/upload?secret=1');
    // One line for the request, and the query string (it may carry secrets) in none.
    expect(sidecar.logs.slice(from).filter((l) => l.event === 'authz')).toHaveLength(1);
    expect(JSON.stringify(sidecar.logs)).not.toContain('secret=1');
  });

  it("the caller's own x-request-id, in any spelling, is removed: a caller could forge correlation", async () => {
    const from = sidecar.logs.length;
    const res = await requestVia(sidecar.port, client, {
      path: '/forged-id',
      headers: ['x-request-id', 'forged-1', 'X_Request_Id', 'forged-2', 'host', 'sidecar.test'],
    });
    expect(res.status).toBe(200);
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/forged-id' }, from);
    const seen = seenWithId(line.request_id);
    const names = (seen?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-request-id')).toEqual(['x-request-id']);
    expect(JSON.stringify(seen?.rawHeaders)).not.toContain('forged');
    // --log-level debug names the fields removed (never their values).
    const stripped = await waitForLog(
      sidecar.logs,
      { event: 'caller_headers_stripped', request_id: line.request_id },
      from,
    );
    expect(stripped).toMatchObject({ level: 'debug', names: ['x-request-id', 'x_request_id'] });
    expect(JSON.stringify(stripped)).not.toContain('forged');
  });

  it('a valid W3C traceparent: logged as trace_id and passed on unchanged; the request id stays ours, one per request', async () => {
    const from = sidecar.logs.length;
    const ids: unknown[] = [];
    for (const path of ['/traced', '/traced-again']) {
      const res = await requestVia(sidecar.port, client, {
        path,
        headers: { traceparent: TRACEPARENT, tracestate: 'vendor=opaque', 'x-request-id': 'forged' },
      });
      expect(res.status).toBe(200);
      const line = await waitForLog(sidecar.logs, { event: 'authz', path }, from);
      expect(line.trace_id).toBe(TRACE_ID);
      expect(line.request_id).toMatch(REQUEST_ID);
      expect(line.request_id).not.toBe(TRACE_ID);
      const seen = seenWithId(line.request_id as string);
      expect(seen?.url).toBe(path);
      expect(seen?.headers.traceparent).toBe(TRACEPARENT);
      expect(seen?.headers.tracestate).toBe('vendor=opaque');
      ids.push(line.request_id);
    }
    // Two requests of one trace: two ids (an app may use them to tell requests apart).
    expect(new Set(ids).size).toBe(2);
  });

  it.each([
    ['upper-case hex', TRACEPARENT.toUpperCase()],
    ['an all-zero trace-id', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`],
    ['another version', `01-${TRACE_ID}-00f067aa0ba902b7-01`],
  ])('an invalid traceparent (%s) is removed with its tracestate, and a fresh id made', async (_what, value) => {
    const from = sidecar.logs.length;
    const path = `/untraced-${from}`;
    const res = await requestVia(sidecar.port, client, {
      path,
      headers: { traceparent: value, tracestate: 'vendor=opaque' },
    });
    expect(res.status).toBe(200);
    const line = await waitForLog(sidecar.logs, { event: 'authz', path }, from);
    expect(line.request_id).toMatch(REQUEST_ID);
    expect(line.request_id).not.toBe(TRACE_ID);
    const seen = seenWithId(line.request_id);
    expect(seen?.url).toBe(path);
    expect(seen?.headers.traceparent).toBeUndefined();
    expect(seen?.headers.tracestate).toBeUndefined();
  });

  it('a caller the rules refuse: 403 in the line, our answer counted as bytes_out, the app untouched', async () => {
    const from = sidecar.logs.length;
    const before = app.seen.length;
    const res = await requestVia(sidecar.port, stranger, { path: '/orders' });
    expect(res.status).toBe(403);
    expect(app.seen.length).toBe(before);
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/orders' }, from);
    expect(line).toMatchObject({
      peer: STRANGER_ID,
      decision: 'deny',
      reason: 'no_matching_rule',
      status: 403,
      bytes_in: 0,
      bytes_out: Buffer.byteLength(res.body),
    });
    expect(line).not.toHaveProperty('upstream_ms');
    expect(line).not.toHaveProperty('outcome');
    expect(line.request_id).toMatch(REQUEST_ID);
  });

  it('a rate-limited request: 429 and its rule in the line', async () => {
    expect((await requestVia(sidecar.port, client, { path: '/limited' })).status).toBe(200);
    const from = sidecar.logs.length;
    const res = await requestVia(sidecar.port, client, { path: '/limited' });
    expect(res.status).toBe(429);
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/limited' }, from);
    expect(line).toMatchObject({
      decision: 'deny',
      rule: 'once-a-minute',
      reason: 'rate_limited',
      status: 429,
      bytes_out: Buffer.byteLength(res.body),
    });
  });

  it('a caller that leaves mid-response: outcome caller_reset, with the bytes it was sent', async () => {
    const from = sidecar.logs.length;
    const { socket, received } = await openRaw(sidecar.port, client);
    socket.write('GET /stream HTTP/1.1\r\nhost: x\r\n\r\n');
    await expect.poll(received, { timeout: 5000 }).toContain(FIRST_CHUNK);
    socket.destroy();
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/stream' }, from);
    expect(line).toMatchObject({ status: 200, outcome: 'caller_reset', bytes_out: FIRST_CHUNK.length });
    expect(line.upstream_ms).toEqual(expect.any(Number));
    // And the app's response was cut with it.
    await expect.poll(() => app.streamsClosed.length, { timeout: 5000 }).toBeGreaterThan(0);
  });

  it('debug: each connection after the handshake, and the app connection opened then reused', async () => {
    const from = sidecar.logs.length;
    const { socket, received } = await openRaw(sidecar.port, client);
    socket.write('GET /first HTTP/1.1\r\nhost: x\r\n\r\n');
    await expect.poll(() => received().match(/HTTP\/1\.1 200/g)?.length ?? 0).toBe(1);
    socket.write('GET /second HTTP/1.1\r\nhost: x\r\n\r\n');
    await expect.poll(() => received().match(/HTTP\/1\.1 200/g)?.length ?? 0).toBe(2);
    socket.destroy();
    const accepted = await waitForLog(sidecar.logs, { event: 'connection_accepted', peer: CLIENT_ID }, from);
    // A raw TLS client offers no ALPN: none is named.
    expect(accepted).toMatchObject({ level: 'debug', remote: '127.0.0.1', tls_version: 'TLSv1.3', resumed: false });
    expect(accepted).not.toHaveProperty('alpn');
    expect(accepted.cipher).toEqual(expect.any(String));
    const second = await waitForLog(sidecar.logs, { event: 'authz', path: '/second' }, from);
    const app2 = await waitForLog(sidecar.logs, { event: 'app_connection', request_id: second.request_id }, from);
    // The first request's app connection went back to the pool and carried the second.
    expect(app2).toMatchObject({ level: 'debug', reused: true });
  });
});

describe('the access line over HTTP/2', () => {
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    session = await h2session(sidecar.port, client);
  });
  afterAll(() => session?.close());

  it('an allowed request: protocol h2, status, bytes both ways', async () => {
    const from = sidecar.logs.length;
    const res = await h2request(session, { ':method': 'POST', ':path': '/upload' }, 'twelve bytes');
    expect(res.status).toBe(200);
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/upload' }, from);
    expect(line).toMatchObject({ protocol: 'h2', status: 200, bytes_in: 12, bytes_out: 6, decision: 'allow' });
    expect(seenWithId(line.request_id)).toBeDefined();
    // debug: the connection, with the protocol ALPN chose.
    expect(await waitForLog(sidecar.logs, { event: 'connection_accepted', alpn: 'h2' })).toMatchObject({
      peer: CLIENT_ID,
      tls_version: 'TLSv1.3',
    });
  });

  it('a refused request: 403 on its stream, in the line', async () => {
    const other = await h2session(sidecar.port, stranger);
    try {
      const from = sidecar.logs.length;
      const res = await h2request(other, { ':path': '/h2-denied' });
      expect(res.status).toBe(403);
      const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/h2-denied' }, from);
      expect(line).toMatchObject({ protocol: 'h2', status: 403, decision: 'deny', bytes_out: res.body.length });
    } finally {
      other.close();
    }
  });

  it('a stream the caller resets mid-response: outcome caller_reset', async () => {
    const from = sidecar.logs.length;
    const stream = session.request({ ':path': '/stream' });
    stream.on('error', () => {});
    await once(stream, 'data');
    stream.close(0x8); // CANCEL
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/stream' }, from);
    expect(line).toMatchObject({ protocol: 'h2', status: 200, outcome: 'caller_reset' });
    expect(line.bytes_out as number).toBeGreaterThanOrEqual(FIRST_CHUNK.length);
  });
});

describe('the access line of a WebSocket tunnel', () => {
  it('one line when the tunnel closes: 101, the bytes each way through it, the id the app received', async () => {
    const from = sidecar.logs.length;
    const { socket, received } = await openRaw(sidecar.port, client);
    socket.write('GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n');
    await expect.poll(received).toContain('101 Switching Protocols');
    socket.write('ping-1');
    await expect.poll(received).toContain('ping-1');
    socket.write('ping-22');
    await expect.poll(received).toContain('ping-22');
    // No line while the tunnel is open: the exchange is not over.
    expect(sidecar.logs.slice(from).some((l) => l.event === 'authz' && l.path === '/ws')).toBe(false);
    socket.end();
    const line = await waitForLog(sidecar.logs, { event: 'authz', path: '/ws' }, from);
    expect(line).toMatchObject({ protocol: 'websocket', status: 101, bytes_in: 13, bytes_out: 13, decision: 'allow' });
    expect(line).not.toHaveProperty('outcome');
    expect(seenWithId(line.request_id)?.url).toBe('/ws');
  });
});

describe('an h2c app (gRPC style: a body, then trailers)', () => {
  let h2c: http2.Http2Server;
  let front: TestSidecar;
  const seenIds: unknown[] = [];
  beforeAll(async () => {
    h2c = createH2cServer();
    h2c.on('stream', (stream, headers) => {
      seenIds.push(headers['x-request-id']);
      stream.on('error', () => {});
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.alloc(9));
      });
    });
    await new Promise<void>((resolve) => h2c.listen(0, '127.0.0.1', resolve));
    front = await startTestSidecar({
      upstream: `http://127.0.0.1:${(h2c.address() as AddressInfo).port}`,
      'upstream-protocol': 'h2c',
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      allow: [CLIENT_ID],
    });
  });
  afterAll(async () => {
    await front?.close();
    await new Promise((resolve) => h2c?.close(resolve));
  });

  it('a call that ends with trailers ended normally: no outcome, the bytes both ways, the id the app saw', async () => {
    const session = await h2session(front.port, client);
    try {
      const res = await h2request(
        session,
        { ':method': 'POST', ':path': '/shop.Orders/Get', 'content-type': 'application/grpc' },
        Buffer.alloc(7),
      );
      expect(res.status).toBe(200);
      expect(res.trailers?.['grpc-status']).toBe('0');
    } finally {
      session.close();
    }
    const line = await waitForLog(front.logs, { event: 'authz', path: '/shop.Orders/Get' });
    expect(line).toMatchObject({ protocol: 'h2', status: 200, bytes_in: 7, bytes_out: 9 });
    expect(line).not.toHaveProperty('outcome');
    expect(seenIds).toContain(line.request_id);
    expect(await waitForLog(front.logs, { event: 'app_connection', request_id: line.request_id })).toMatchObject({
      protocol: 'h2c',
      reused: false,
    });
  });
});

describe('an app that does not answer within --upstream-timeout', () => {
  let slow: TestSidecar;
  beforeAll(async () => {
    slow = await startTestSidecar({
      upstream: appUrl,
      'upstream-timeout': '300ms',
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      allow: [CLIENT_ID],
    });
  });
  afterAll(() => slow?.close());

  it('504, outcome upstream_timeout', async () => {
    const res = await requestVia(slow.port, client, { path: '/hang' });
    expect(res.status).toBe(504);
    const line = await waitForLog(slow.logs, { event: 'authz', path: '/hang' });
    expect(line).toMatchObject({ status: 504, outcome: 'upstream_timeout', bytes_out: Buffer.byteLength(res.body) });
    expect(line).not.toHaveProperty('upstream_ms');
  });
});

describe('an app that is down', () => {
  let down: TestSidecar;
  beforeAll(async () => {
    down = await startTestSidecar({
      upstream: `http://127.0.0.1:${await closedPort()}`,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      allow: [CLIENT_ID],
    });
  });
  afterAll(() => down?.close());

  it('502, outcome upstream_error, no upstream time', async () => {
    const res = await requestVia(down.port, client, { path: '/nowhere' });
    expect(res.status).toBe(502);
    const line = await waitForLog(down.logs, { event: 'authz', path: '/nowhere' });
    expect(line).toMatchObject({ decision: 'allow', status: 502, outcome: 'upstream_error' });
    expect(line).not.toHaveProperty('upstream_ms');
  });

  it('over HTTP/2 too', async () => {
    const session = await h2session(down.port, client);
    try {
      expect((await h2request(session, { ':path': '/nowhere-h2' })).status).toBe(502);
    } finally {
      session.close();
    }
    const line = await waitForLog(down.logs, { event: 'authz', path: '/nowhere-h2' });
    expect(line).toMatchObject({ protocol: 'h2', status: 502, outcome: 'upstream_error' });
  });
});
