// gRPC over HTTP/2 requires `te: trailers` on every request, and servers such as grpc-java refuse a call
// without it. The caller's `te` is a hop-by-hop field we drop; towards an h2c app the sidecar restates it
// for gRPC requests, from HTTP/2 and HTTP/1.1 callers alike, and only for them.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestVia } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

let app: http2.Http2Server;
let s: Scenario;
/** The `te` field of each request the app saw, by path. */
const teOf = new Map<string, string | undefined>();

beforeAll(async () => {
  app = http2.createServer();
  app.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    teOf.set(String(headers[':path']), headers.te as string | undefined);
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end();
    });
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  s = await startScenario({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    'upstream-protocol': 'h2c',
  });
});
afterAll(async () => {
  await s.close();
  await new Promise((resolve) => app.close(resolve));
});

describe('gRPC requests reach an h2c app with te: trailers', () => {
  it('from an HTTP/2 caller', async () => {
    const session = http2.connect(`https://127.0.0.1:${s.sidecar.port}`, {
      cert: s.allowed.chainPem,
      key: s.allowed.keyPem,
      rejectUnauthorized: false,
    });
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/pkg.Service/Call',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.end();
      stream.resume();
      await new Promise((resolve, reject) => stream.on('close', resolve).on('error', reject));
      expect(teOf.get('/pkg.Service/Call')).toBe('trailers');
    } finally {
      session.destroy();
    }
  });

  it('from an HTTP/1.1 caller, and not for a request that is not gRPC', async () => {
    const grpc = await requestVia(s.sidecar.port, s.allowed, {
      method: 'POST',
      path: '/pkg.Service/H1',
      headers: { 'content-type': 'application/grpc+proto' },
      body: '',
    });
    expect(grpc.status).toBe(200);
    expect(teOf.get('/pkg.Service/H1')).toBe('trailers');
    const plain = await requestVia(s.sidecar.port, s.allowed, { method: 'POST', path: '/plain', body: '' });
    expect(plain.status).toBe(200);
    expect(teOf.has('/plain')).toBe(true);
    expect(teOf.get('/plain')).toBeUndefined();
  });
});
