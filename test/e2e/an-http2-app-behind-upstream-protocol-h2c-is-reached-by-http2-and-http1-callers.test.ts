// --upstream-protocol h2c: an HTTP/2 app (prior knowledge) behind the same kind of port is reached by
// HTTP/2 and HTTP/1.1 callers alike, with streamed bodies, the app's trailers and the verified identity.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import {
  ALLOWED_ID,
  type App,
  curl,
  h2request,
  h2session,
  type Http2Fixture,
  idHeaders,
  MB,
  type Seen,
  sha256,
  startH2cApp,
  useHttp2Fixture,
} from '../helpers/http2-fixture.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const fixture = useHttp2Fixture();
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let certFiles: { cert: string; key: string };
let sidecarFor: Http2Fixture['sidecarFor'];
let onCleanup: Http2Fixture['onCleanup'];
beforeAll(() => {
  ({ allowed, denied, certFiles, sidecarFor, onCleanup } = fixture());
});

describe('an http2 app behind --upstream-protocol h2c is reached by http2 and http1 callers', () => {
  let h2cApp: App;
  let viaH2c: TestSidecar;
  beforeAll(async () => {
    h2cApp = await startH2cApp();
    onCleanup(() => h2cApp.close());
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
