// One listener, both HTTP versions by ALPN: HTTP/2 callers (Node's http2 client, curl --http2) and
// HTTP/1.1 callers (Node's https client, curl --http1.1) reach the same app on the same port, with the
// same verified identity; a forged identity header from either never reaches the app.
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import {
  ALLOWED_ID,
  type App,
  curl,
  h2request,
  h2session,
  idHeaders,
  type Seen,
  useHttp2Fixture,
} from '../helpers/http2-fixture.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const fixture = useHttp2Fixture();
let app: App;
let sidecar: TestSidecar;
let allowed: IssuedCertificate;
let certFiles: { cert: string; key: string };
beforeAll(() => {
  ({ app, sidecar, allowed, certFiles } = fixture());
});

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
});
