// Request heads the app could read otherwise than the sidecar did are refused before anything reaches it:
// too many header lines (which would push our identity headers out of a default app's reach), two Host
// fields, a transfer coding the body would keep. The identity headers come first, and where a caller came
// from is what the sidecar saw, never what the caller claimed.
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCaller, openRaw } from '../helpers/client.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;

beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

/** Sends a raw request head (and body) on a fresh mTLS connection; resolves with what came back once closed. */
async function rawExchange(request: string): Promise<string> {
  const raw = await openRaw(s.sidecar.port, s.allowed);
  const closed = new Promise((resolve) => raw.socket.once('close', resolve));
  raw.socket.write(request);
  await closed;
  return raw.received();
}

/** An HTTP/2 connection of the allowed caller. */
function h2Session(): http2.ClientHttp2Session {
  return http2.connect(`https://127.0.0.1:${s.sidecar.port}`, {
    cert: s.allowed.chainPem,
    key: s.allowed.keyPem,
    rejectUnauthorized: false,
  });
}

describe('request heads that could mislead the app', () => {
  it('1,000 empty header lines get 431 and reach nothing', async () => {
    const before = s.app.seen.length;
    const padding = 'x-pad:\r\n'.repeat(1000);
    const answer = await rawExchange(`GET /pushed HTTP/1.1\r\nhost: x\r\n${padding}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).toContain('"reason":"too_many_headers"');
    expect(s.app.seen.length).toBe(before);
    expect(s.sidecar.logs.some((l) => l.event === 'request_refused' && l.reason === 'too_many_headers')).toBe(true);
  });

  it('up to --max-header-count fields pass, with the identity headers first', async () => {
    const padding = Array.from({ length: 98 }, (_, i) => `x-pad-${i}: ${i}\r\n`).join('');
    const answer = await rawExchange(`GET /padded HTTP/1.1\r\nhost: x\r\n${padding}connection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    const seen = s.app.seen.find((r) => r.url === '/padded');
    expect(seen?.rawHeaders.slice(0, 2)).toEqual(['x-spiffe-id', ALLOWED_ID]);
    expect(seen?.rawHeaders.slice(2, 4)).toEqual(['x-auth-method', 'mtls']);
    expect(seen?.rawHeaders[4]).toBe('x-forwarded-client-cert');
  });

  it('two Host fields get 400', async () => {
    const before = s.app.seen.length;
    const answer = await rawExchange('GET /hosts HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"reason":"duplicate_host"');
    expect(s.app.seen.length).toBe(before);
  });

  it('a Host that is no host, or one an absolute-form target contradicts, gets 400', async () => {
    const before = s.app.seen.length;
    const bad = await rawExchange('GET /h HTTP/1.1\r\nhost: a b/../c\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(bad).toContain('"reason":"bad_host"');
    const mismatch = await rawExchange('GET http://evil.example/abs HTTP/1.1\r\nhost: good.example\r\n\r\n');
    expect(mismatch).toMatch(/^HTTP\/1\.1 400 /);
    expect(mismatch).toContain('"reason":"authority_mismatch"');
    expect(s.app.seen.length).toBe(before);
    // The same target with its own Host passes.
    const agreed = await rawExchange(
      'GET http://good.example/abs HTTP/1.1\r\nhost: Good.Example\r\nconnection: close\r\n\r\n',
    );
    expect(agreed).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('an HTTP/1.0 caller that asked to keep its connection is told it is kept with our own answers too', async () => {
    const caller = await openCaller(s.sidecar.port, s.denied);
    caller.socket.write('GET /first HTTP/1.0\r\nconnection: keep-alive\r\n\r\n');
    await expect.poll(caller.received).toMatch(/^HTTP\/1\.1 403 [^]*\r\n\r\n\{[^]*\}$/);
    expect(caller.received()).toMatch(/\r\nconnection: keep-alive\r\n/);
    // Kept indeed: a second request on it is answered, and, not asking to keep it, closes it.
    caller.socket.write('GET /second HTTP/1.0\r\n\r\n');
    await caller.closed;
    const answers = caller.received().split(/(?=HTTP\/1\.1 )/);
    expect(answers).toHaveLength(2);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 403 [^]*\r\nconnection: close\r\n/);
  });

  it("an HTTP/1.0 request without Host reaches the app (which reads HTTP/1.1) with the app's own authority", async () => {
    const answer = await rawExchange('GET /no-host HTTP/1.0\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    const seen = s.app.seen.find((r) => r.url === '/no-host');
    expect(seen?.headers.host).toBe(new URL(s.app.url).host);
    // One with a Host keeps it.
    expect(await rawExchange('GET /with-host HTTP/1.0\r\nhost: orders.example\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    expect(s.app.seen.find((r) => r.url === '/with-host')?.headers.host).toBe('orders.example');
  });

  it('Transfer-Encoding: gzip, chunked gets 501: the app would read compressed bytes as the body', async () => {
    const before = s.app.seen.length;
    const answer = await rawExchange(
      'POST /coded HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 501 /);
    expect(answer).toContain('"reason":"unsupported_transfer_coding"');
    expect(s.app.seen.length).toBe(before);
  });

  it('a plain chunked body still passes', async () => {
    const answer = await rawExchange(
      'POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(s.app.seen.find((r) => r.url === '/chunked')?.bodyLength).toBe(3);
  });

  it("the caller's forwarding headers are replaced by what the sidecar saw", async () => {
    const answer = await rawExchange(
      'GET /origin HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.7\r\nforwarded: for=6.6.6.6\r\nx-real-ip: 6.6.6.6\r\nx-forwarded-proto: http\r\nx-forwarded-host: evil\r\nconnection: close\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    const seen = s.app.seen.find((r) => r.url === '/origin');
    const names = (seen?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-forwarded-for')).toEqual(['x-forwarded-for']);
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-proto']).toBe('https');
    expect(names).not.toContain('forwarded');
    expect(names).not.toContain('x-real-ip');
    expect(names).not.toContain('x-forwarded-host');
  });

  it('a method override never reaches the app: it would run another method than the one rules judged', async () => {
    const answer = await rawExchange(
      'POST /sandboxes/1 HTTP/1.1\r\nhost: x\r\nX-HTTP-Method-Override: DELETE\r\nx_http_method: DELETE\r\n' +
        'x-method-override: DELETE\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    const seen = s.app.seen.find((r) => r.url === '/sandboxes/1');
    expect(seen?.method).toBe('POST');
    const names = (seen?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => /method/.test(n))).toEqual(['x-auth-method']);
  });

  it('over HTTP/2, more header fields than allowed get 431 on the stream', async () => {
    const before = s.app.seen.length;
    const session = h2Session();
    try {
      const fields = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`x-pad-${i}`, String(i)]));
      const stream = session.request({ ':path': '/h2-pushed', ...fields });
      const status = await new Promise<number>((resolve, reject) => {
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
      });
      expect(status).toBe(431);
      expect(s.app.seen.length).toBe(before);
    } finally {
      session.destroy();
    }
  });

  it('over HTTP/2, a :path outside visible ASCII gets 400, as HTTP/1.1 refuses its request target', async () => {
    const before = s.app.seen.length;
    const session = h2Session();
    try {
      // A C1 control (NEL) and a latin1 letter (the app would read UTF-8): raw bytes HTTP/2 carries (nghttp2 refuses
      // controls below 0x80 itself).
      for (const path of ['/a\u0085b', '/jos\u00e9']) {
        const stream = session.request({ ':path': path });
        let body = '';
        stream.on('data', (d: Buffer) => (body += d.toString()));
        const status = await new Promise<number>((resolve, reject) => {
          stream.on('response', (h) => resolve(Number(h[':status'])));
          stream.on('error', reject);
        });
        await new Promise((resolve) => stream.once('close', resolve));
        expect(status, JSON.stringify(path)).toBe(400);
        // Ours, not the app's parser's (a Node app refuses these too, but only once they have reached it).
        expect(body, JSON.stringify(path)).toContain('"reason":"bad_request_target"');
      }
      expect(s.app.seen.length).toBe(before);
      // A visible-ASCII path on the same connection is served.
      const ok = session.request({ ':path': '/h2-ascii' });
      ok.resume();
      expect(await new Promise<number>((resolve) => ok.on('response', (h) => resolve(Number(h[':status']))))).toBe(200);
    } finally {
      session.destroy();
    }
  });
});
