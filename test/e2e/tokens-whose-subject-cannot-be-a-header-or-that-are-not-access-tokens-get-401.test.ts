// Issue 15, findings 1 and 2. An OIDC token whose `sub` cannot travel in an HTTP header (non-ASCII, a
// control character, absurdly long) is refused with 401 ERR_JWT_SUBJECT_UNSAFE before anything is
// forwarded: it used to make Node refuse the upstream header and drop the connection (over HTTP/2 with
// every other stream on it). And a token whose `typ` says it is not an access token (a logout token, a
// security event) is refused with 401 ERR_JWT_HEADER (RFC 8725 §3.11, RFC 9068 §2.1).
import * as http2 from 'node:http2';
import { request } from 'node:https';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { type ScriptableIssuer, startScriptableIssuer } from '../helpers/scriptable-oidc-issuer.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let issuer: ScriptableIssuer;
let sidecar: TestSidecar;

beforeAll(async () => {
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const files = await writeServingFiles(
    dir.path,
    await issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/server' }),
    ca.certPem,
  );
  app = await startEchoApp();
  issuer = await startScriptableIssuer();
  const issuerCa = join(dir.path, 'issuer-ca.pem');
  await writeFile(issuerCa, issuer.caPem);
  sidecar = await startTestSidecar({
    upstream: app.url,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'auth-mode': 'jwt',
    'jwt-transport': 'tls',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`ci=${issuer.url}`],
    'jwt-ca-file': issuerCa,
    allow: ['spiffe://example.org/ns/prod/sa/client'],
    'allow-issuer': ['ci'],
  });
});
afterAll(async () => {
  await sidecar?.close();
  await issuer?.close();
  await app?.close();
  await dir?.remove();
});

/** HTTP/1.1 over TLS, a fresh connection: status and body, or the error that ended the exchange. */
function get1(path: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: sidecar.port,
        path,
        rejectUnauthorized: false,
        agent: false,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** One HTTP/2 stream on `session`: status and body, or the error that ended it. */
function get2(
  session: http2.ClientHttp2Session,
  path: string,
  token: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, authorization: `Bearer ${token}` });
    let status = 0;
    let body = '';
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.on('data', (d: Buffer) => {
      body += d.toString();
    });
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
    stream.end();
  });
}

const reasonOf = (body: string) => (JSON.parse(body) as { reason: string }).reason;
const appSaw = (path: string) => app.seen.some((r) => r.url === path);

const UNSAFE_SUBJECTS: [string, string][] = [
  ['latin-1', 'Zoë'],
  ['non-latin-1', '佐藤'],
  ['newline', 'a\nb'],
  ['carriage return', 'a\r\nx-spiffe-id: spiffe://example.org/admin'],
  ['NUL', 'a\u0000b'],
  ['DEL', 'a\u007fb'],
  ['space', 'a b'],
  ['too long', 'a'.repeat(1025)],
];

describe('an OIDC subject that cannot be carried in an HTTP header', () => {
  it.each(UNSAFE_SUBJECTS)('HTTP/1.1, %s: 401 ERR_JWT_SUBJECT_UNSAFE, and the app sees nothing', async (name, sub) => {
    const path = `/h1-unsafe-${name.replaceAll(' ', '-')}`;
    const res = await get1(path, await issuer.sign({ sub }));
    expect(res.status).toBe(401);
    expect(reasonOf(res.body)).toBe('ERR_JWT_SUBJECT_UNSAFE');
    expect(appSaw(path)).toBe(false);
    expect(sidecar.logs.some((l) => l.event === 'peer_rejected' && l.reason === 'ERR_JWT_SUBJECT_UNSAFE')).toBe(true);
  });

  it('a subject of 1024 visible ASCII characters, the longest allowed, reaches the app', async () => {
    const sub = `${'~'.repeat(1000)}${'!'.repeat(24)}`;
    const res = await get1('/h1-longest', await issuer.sign({ sub }));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-jwt-subject']).toBe(sub);
  });

  it('HTTP/2: each refused stream gets its 401 and the next stream on the same connection its 200', async () => {
    const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, { rejectUnauthorized: false });
    const closed = new Promise<void>((resolve) => session.on('close', resolve));
    session.on('error', () => {});
    try {
      for (const [name, sub] of UNSAFE_SUBJECTS) {
        const path = `/h2-unsafe-${name.replaceAll(' ', '-')}`;
        const refused = await get2(session, path, await issuer.sign({ sub }));
        expect(refused.status, name).toBe(401);
        expect(reasonOf(refused.body), name).toBe('ERR_JWT_SUBJECT_UNSAFE');
        expect(appSaw(path), name).toBe(false);
        const after = await get2(session, `/h2-after-${name.replaceAll(' ', '-')}`, await issuer.sign({ sub: 'ok' }));
        expect(after.status, name).toBe(200);
      }
      expect(session.closed || session.destroyed).toBe(false);
    } finally {
      session.close();
      await closed;
    }
  });
});

describe('the token type (typ) of an OIDC token', () => {
  it.each([[undefined], ['JWT'], ['jwt'], ['at+jwt'], ['AT+JWT'], ['application/at+jwt'], ['application/jwt']])(
    'typ %s is an access token: admitted',
    async (typ) => {
      const path = `/typ-ok-${String(typ).replace('/', '-')}`;
      const res = await get1(path, await issuer.sign({ sub: 'pipeline' }, typ === undefined ? {} : { typ }));
      expect(res.status).toBe(200);
      expect(appSaw(path)).toBe(true);
    },
  );

  it.each([
    ['logout+jwt'],
    ['application/logout+jwt'],
    ['secevent+jwt'],
    ['id_token+jwt'],
    ['dpop+jwt'],
    ['JOSE'],
    [''],
  ])('typ %j is not an access token: 401 ERR_JWT_HEADER, and the app sees nothing', async (typ) => {
    const path = `/typ-refused-${typ.replace('/', '-') || 'empty'}`;
    const res = await get1(path, await issuer.sign({ sub: 'pipeline' }, { typ }));
    expect(res.status).toBe(401);
    expect(reasonOf(res.body)).toBe('ERR_JWT_HEADER');
    expect(appSaw(path)).toBe(false);
  });
});
