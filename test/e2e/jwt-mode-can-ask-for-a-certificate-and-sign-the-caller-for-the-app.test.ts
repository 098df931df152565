// JWT mode with --jwt-transport mtls: TLS with our SVID that also asks for the caller's certificate (verified
// when sent; a bad one is refused at the handshake), and --identity-assertion: the app receives a short-lived
// JWT of the admitted caller that it verifies with jose against the admin listener's JWKS, as an app would.
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { expectRejected, requestVia, type Response } from '../helpers/client.js';
import { createDevCa, issueSvid, mtlsFileOptions, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { type JwtSvidKeys, jwtSvidKeys } from '../helpers/jwt-svid-keys.js';
import { useWorkspace } from '../helpers/workspace.js';

const SELF = 'spiffe://example.org/orders';
const ROUTER = 'spiffe://example.org/router';
const ws = useWorkspace();
let ca: CertificateAuthority;
let serving: ServingFiles;
let router: IssuedCertificate;
let keys: JwtSvidKeys;
let sidecar: TestSidecar;

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  serving = await writeServingFiles(ws.path, await issueSvid(ca, { id: SELF }), ca.certPem);
  router = await issueSvid(ca, { id: ROUTER });
  keys = await jwtSvidKeys(ws.path);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'auth-mode': 'jwt',
    'jwt-transport': 'mtls',
    'jwt-audience': ['orders'],
    'jwt-bundle-file': [`example.org=${keys.file}`],
    ...mtlsFileOptions(serving),
    allow: ['spiffe://example.org/worker', ROUTER],
    'identity-assertion': true,
    'admin-listen': '127.0.0.1:0',
  });
});
afterAll(() => sidecar?.close());

const workerToken = () => keys.sign('spiffe://example.org/worker', 'orders');
const seen = (res: Response) => (JSON.parse(res.body) as { headers: Record<string, string | undefined> }).headers;

async function verifyAssertion(jwt: string | undefined) {
  const { port } = sidecar.adminAddress();
  const jwks = createRemoteJWKSet(new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`));
  const { payload } = await jwtVerify(jwt ?? '', jwks, { algorithms: ['ES256'], issuer: SELF, audience: SELF });
  return payload;
}

describe('JWT mode asks for a certificate and signs the admitted caller for the app', () => {
  it('a token without a certificate: admitted; the assertion verifies against the admin JWKS', async () => {
    const res = await requestVia(sidecar.port, undefined, {
      path: '/x',
      headers: { authorization: `Bearer ${await workerToken()}`, 'x-identity-assertion': 'forged' },
    });
    expect(res.status).toBe(200);
    const payload = await verifyAssertion(seen(res)['x-identity-assertion']);
    expect(payload).toMatchObject({
      sub: 'spiffe://example.org/worker',
      auth_method: 'jwt-svid',
      spiffe_id: 'spiffe://example.org/worker',
      rule: 'spiffe://example.org/worker',
    });
  });

  it('a certificate alone is asked for and verified: the router is admitted by it, the assertion says mtls', async () => {
    const res = await requestVia(sidecar.port, router, { path: '/x' });
    expect(res.status).toBe(200);
    expect(seen(res)['x-auth-method']).toBe('mtls');
    expect(await verifyAssertion(seen(res)['x-identity-assertion'])).toMatchObject({
      sub: ROUTER,
      auth_method: 'mtls',
    });
  });

  it('a token over the certificate: the token is the caller, the certificate is named in the assertion', async () => {
    const res = await requestVia(sidecar.port, router, {
      path: '/x',
      headers: { authorization: `Bearer ${await workerToken()}` },
    });
    expect(res.status).toBe(200);
    expect(await verifyAssertion(seen(res)['x-identity-assertion'])).toMatchObject({
      auth_method: 'jwt-svid',
      certificate_spiffe_id: ROUTER,
    });
  });

  it("a certificate of another trust domain's CA is refused at the handshake", async () => {
    const stranger = await issueSvid(await createDevCa({ trustDomain: 'other.org' }), { id: 'spiffe://other.org/x' });
    await expectRejected(sidecar.port, stranger, {
      path: '/x',
      headers: { authorization: `Bearer ${await workerToken()}` },
    });
  });

  it('an assertion altered by anyone is refused by the app', async () => {
    const res = await requestVia(sidecar.port, router, { path: '/x' });
    const jwt = seen(res)['x-identity-assertion'] as string;
    const [h, p, sig] = jwt.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const altered = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'spiffe://example.org/admin' })).toString('base64url')}.${sig}`;
    await expect(verifyAssertion(altered)).rejects.toThrow(/signature/);
  });
});
