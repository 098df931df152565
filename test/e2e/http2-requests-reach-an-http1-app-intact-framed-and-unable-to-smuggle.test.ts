// HTTP/2 requests translated for an HTTP/1.1 app: bodies of known and unknown length arrive intact and
// framed (never read by the app as a second request), cookie crumbs become one header, and many
// concurrent streams on one connection each carry the verified identity.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import {
  ALLOWED_ID,
  type App,
  h2request,
  h2session,
  idHeaders,
  MB,
  type Seen,
  sha256,
  useHttp2Fixture,
} from '../helpers/http2-fixture.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const fixture = useHttp2Fixture();
let app: App;
let sidecar: TestSidecar;
let allowed: IssuedCertificate;
beforeAll(() => {
  ({ app, sidecar, allowed } = fixture());
});

describe('http2 requests reach an http1 app intact, framed and unable to smuggle', () => {
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
});
