// Issue 18's one port: an mTLS listener that also takes bearer tokens (--jwt-audience) and API keys. Five kinds
// of callers over real TLS on loopback, each with real credentials: an agent's certificate, a worker's
// JWT-SVID, a Keycloak-style OIDC token, a Kubernetes service-account token verified by TokenReview alone
// (a local API server with a CA of its own; no JWKS anywhere) and an API key. Each reaches only its routes,
// the app learns how each was admitted (x-auth-method) and the claims the policy maps, and a certificate
// plus a token are judged rule by rule: no mix of credentials gets what no single rule gives.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { apiKey, lastAudit, scrapeMetrics, sample, writePolicy } from '../helpers/authz.js';
import { expectRejected, requestVia, type Response } from '../helpers/client.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, issueSvid, mtlsFileOptions, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { type JwtSvidKeys, jwtSvidKeys } from '../helpers/jwt-svid-keys.js';
import { useWorkspace } from '../helpers/workspace.js';

const AUDIENCE = 'sandboxes';
const K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AGENT_ID = 'spiffe://example.org/agent/a-1';
const ROUTER_ID = 'spiffe://example.org/router';
const WORKER_ID = 'spiffe://example.org/worker';

const POLICY = {
  version: 1,
  claim_headers: { 'realm_access.roles': 'x-roles', '"kubernetes.io".namespace': 'x-k8s-namespace' },
  rules: [
    {
      name: 'agents',
      path: { prefix: '/agents' },
      effect: 'allow',
      callers: { auth: ['mtls'], ids: ['spiffe://example.org/agent/*'] },
    },
    { name: 'workers', path: { prefix: '/jobs' }, effect: 'allow', callers: { auth: ['jwt-svid'], ids: [WORKER_ID] } },
    {
      name: 'users',
      path: { prefix: '/me' },
      effect: 'allow',
      callers: { auth: ['oidc'], issuers: ['keycloak'], claims: [{ claim: 'realm_access.roles', contains: 'user' }] },
    },
    {
      name: 'k8s-workers',
      path: { prefix: '/tasks' },
      effect: 'allow',
      callers: {
        auth: ['k8s-sa'],
        ids: ['spiffe://cluster.local/ns/prod/sa/*'],
        claims: [{ claim: '"kubernetes.io".namespace', equals: 'prod' }],
      },
    },
    {
      name: 'scripts',
      path: { prefix: '/reports' },
      effect: 'allow',
      callers: { auth: ['api-key'], api_keys: ['ci-script'] },
    },
    {
      name: 'router-for-users',
      path: { prefix: '/on-behalf' },
      effect: 'allow',
      callers: { auth: ['oidc'], issuers: ['keycloak'], certificate: { ids: [ROUTER_ID] } },
    },
  ],
};

const ws = useWorkspace();
let ca: CertificateAuthority;
let serving: ServingFiles;
let agent: IssuedCertificate;
let router: IssuedCertificate;
let keycloak: OidcIssuer;
let kube: KubeApi;
let svidKeys: JwtSvidKeys;
let sidecar: TestSidecar;
const script = apiKey('ci-script');

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  serving = await writeServingFiles(
    ws.path,
    await issueSvid(ca, { id: 'spiffe://example.org/sandbox-api' }),
    ca.certPem,
  );
  agent = await issueSvid(ca, { id: AGENT_ID });
  router = await issueSvid(ca, { id: ROUTER_ID });
  keycloak = await startOidcIssuer();
  kube = await startKubeApi();
  svidKeys = await jwtSvidKeys(ws.path);

  const keysFile = join(ws.path, 'api-keys.txt');
  await writeFile(keysFile, `${script.line}\n`);
  const issuerCa = join(ws.path, 'issuer-ca.pem');
  await writeFile(issuerCa, keycloak.caPem);
  const apiCa = join(ws.path, 'kube-api-ca.pem');
  await writeFile(apiCa, kube.caPem);
  const callerToken = join(ws.path, 'sidecar-token');
  await writeFile(callerToken, kube.callerToken);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    ...mtlsFileOptions(serving),
    'policy-file': await writePolicy(ws.path, 'policy.json', POLICY),
    'api-keys-file': keysFile,
    'jwt-audience': [AUDIENCE],
    'jwt-bundle-file': [`example.org=${svidKeys.file}`],
    'jwt-issuer': [`keycloak=${keycloak.url}`, `k8s=${K8S_ISSUER}`],
    'jwt-ca-file': issuerCa,
    'k8s-token-review': true,
    'k8s-token-review-only': true,
    'k8s-api-server': kube.url,
    'k8s-api-ca-file': apiCa,
    'k8s-token-file': callerToken,
    'admin-listen': '127.0.0.1:0',
  });
});
afterAll(async () => {
  await sidecar?.close();
  await keycloak?.close();
  await kube?.close();
});

const jwtSvid = (sub: string) => svidKeys.sign(sub, AUDIENCE);

const user = (roles: string[]) => keycloak.sign({ sub: 'ann', realm_access: { roles } }, { audience: AUDIENCE });

/** A service-account token as the API server signs it: its key is never shown to us (TokenReview alone). */
async function serviceAccountToken(ns: string, sa: string) {
  const { privateKey } = await generateKeyPair('RS256');
  const token = await new SignJWT({ 'kubernetes.io': { namespace: ns, serviceaccount: { name: sa } } })
    .setProtectedHeader({ alg: 'RS256', kid: 'api-server-key' })
    .setIssuer(K8S_ISSUER)
    .setSubject(`system:serviceaccount:${ns}:${sa}`)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(privateKey);
  kube.live.set(token, `system:serviceaccount:${ns}:${sa}`);
  return token;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const seen = (res: Response) => (JSON.parse(res.body) as { headers: Record<string, string | undefined> }).headers;
const reason = (res: Response) => (JSON.parse(res.body) as { reason: string }).reason;

describe('one port admits every kind of caller, each to its own routes', () => {
  it('an agent certificate: /agents/ only; the app sees x-auth-method mtls', async () => {
    const res = await requestVia(sidecar.port, agent, { path: '/agents/a-1' });
    expect(res.status).toBe(200);
    expect(seen(res)).toMatchObject({ 'x-auth-method': 'mtls', 'x-spiffe-id': AGENT_ID });
    expect(await lastAudit(sidecar.logs, 'GET', '/agents/a-1')).toMatchObject({ auth: 'mtls', rule: 'agents' });
    const other = await requestVia(sidecar.port, agent, { path: '/me/profile' });
    expect([other.status, reason(other)]).toEqual([403, 'no_matching_rule']);
  });

  it('a JWT-SVID without a certificate: /jobs/ only; x-auth-method jwt-svid', async () => {
    const res = await requestVia(sidecar.port, undefined, {
      path: '/jobs/1',
      headers: bearer(await jwtSvid(WORKER_ID)),
    });
    expect(res.status).toBe(200);
    expect(seen(res)).toMatchObject({ 'x-auth-method': 'jwt-svid', 'x-spiffe-id': WORKER_ID });
    expect(seen(res).authorization).toBeUndefined();
    const other = await requestVia(sidecar.port, undefined, {
      path: '/agents/x',
      headers: bearer(await jwtSvid(WORKER_ID)),
    });
    expect(other.status).toBe(403);
  });

  it('an OIDC user: /me/ with the role, the roles mapped to x-roles; without the role 403 claim_mismatch', async () => {
    const res = await requestVia(sidecar.port, undefined, {
      path: '/me/profile',
      headers: { ...bearer(await user(['user', 'sandbox:read'])), 'x-roles': 'admin', 'x-auth-method': 'mtls' },
    });
    expect(res.status).toBe(200);
    expect(seen(res)).toMatchObject({
      'x-auth-method': 'oidc',
      'x-roles': 'user, sandbox:read',
      'x-jwt-subject': 'ann',
    });
    const noRole = await requestVia(sidecar.port, undefined, {
      path: '/me/profile',
      headers: bearer(await user(['guest'])),
    });
    expect([noRole.status, reason(noRole)]).toEqual([403, 'claim_mismatch']);
    const other = await requestVia(sidecar.port, undefined, {
      path: '/reports/x',
      headers: bearer(await user(['user'])),
    });
    expect(other.status).toBe(403);
  });

  it('a service-account token verified by TokenReview alone: /tasks/ for prod; a dotted claim key in rule and mapping', async () => {
    const before = kube.reviews;
    const res = await requestVia(sidecar.port, undefined, {
      path: '/tasks/t-1',
      headers: bearer(await serviceAccountToken('prod', 'worker')),
    });
    expect(res.status).toBe(200);
    expect(seen(res)).toMatchObject({
      'x-auth-method': 'k8s-sa',
      'x-spiffe-id': 'spiffe://cluster.local/ns/prod/sa/worker',
      'x-k8s-namespace': 'prod',
    });
    expect(kube.reviews).toBe(before + 1);
    const staging = await requestVia(sidecar.port, undefined, {
      path: '/tasks/t-1',
      headers: bearer(await serviceAccountToken('staging', 'worker')),
    });
    expect(staging.status).toBe(403);
    // Not live at the API server (a deleted pod's token): 401, whatever its signature.
    const forged = await serviceAccountToken('prod', 'worker');
    kube.live.delete(forged);
    const dead = await requestVia(sidecar.port, undefined, { path: '/tasks/t-1', headers: bearer(forged) });
    expect([dead.status, reason(dead)]).toEqual([401, 'ERR_JWT_TOKEN_REVIEW']);
  });

  it('an API key: /reports/ only; x-auth-method api-key', async () => {
    const res = await requestVia(sidecar.port, undefined, {
      path: '/reports/daily',
      headers: { 'x-api-key': script.key },
    });
    expect(res.status).toBe(200);
    expect(seen(res)).toMatchObject({ 'x-auth-method': 'api-key', 'x-api-key-name': 'ci-script' });
    const other = await requestVia(sidecar.port, undefined, {
      path: '/tasks/t-1',
      headers: { 'x-api-key': script.key },
    });
    expect(other.status).toBe(403);
  });

  it('no credential at all: 401; a bad certificate: refused at the handshake', async () => {
    const none = await requestVia(sidecar.port, undefined, { path: '/agents/a-1' });
    expect([none.status, reason(none)]).toEqual([401, 'ERR_JWT_MISSING']);
    const stranger = await issueSvid(await createDevCa({ trustDomain: 'example.org' }), { id: AGENT_ID });
    await expectRejected(sidecar.port, stranger, { path: '/agents/a-1' });
  });
});

describe('a certificate and a token together are judged rule by rule', () => {
  it("the router's certificate with a user's token: /on-behalf/ admits the user, XFCC names the router", async () => {
    const res = await requestVia(sidecar.port, router, {
      path: '/on-behalf/ann',
      headers: bearer(await user(['user'])),
    });
    expect(res.status).toBe(200);
    const headers = seen(res);
    expect(headers).toMatchObject({ 'x-auth-method': 'oidc', 'x-jwt-subject': 'ann' });
    expect(headers['x-spiffe-id']).toBeUndefined();
    expect(headers['x-forwarded-client-cert']).toContain(`URI=${ROUTER_ID}`);
    expect(await lastAudit(sidecar.logs, 'GET', '/on-behalf/ann')).toMatchObject({
      auth: 'oidc',
      rule: 'router-for-users',
    });
  });

  it('either half alone, or the token over another certificate, is refused', async () => {
    const alone = await requestVia(sidecar.port, router, { path: '/on-behalf/ann' });
    expect(alone.status).toBe(403);
    const tokenOnly = await requestVia(sidecar.port, undefined, {
      path: '/on-behalf/ann',
      headers: bearer(await user(['user'])),
    });
    expect(tokenOnly.status).toBe(403);
    const otherCert = await requestVia(sidecar.port, agent, {
      path: '/on-behalf/ann',
      headers: bearer(await user(['user'])),
    });
    expect(otherCert.status).toBe(403);
  });

  it('each credential reaches its own routes, and the two together reach nothing more', async () => {
    const token = await user(['user']);
    const byCertificate = await requestVia(sidecar.port, agent, { path: '/agents/a-1', headers: bearer(token) });
    expect(byCertificate.status).toBe(200);
    expect(seen(byCertificate)['x-auth-method']).toBe('mtls');
    const byToken = await requestVia(sidecar.port, agent, { path: '/me/x', headers: bearer(token) });
    expect(byToken.status).toBe(200);
    expect(seen(byToken)['x-auth-method']).toBe('oidc');
    for (const path of ['/reports/x', '/tasks/x', '/jobs/x', '/on-behalf/ann']) {
      expect((await requestVia(sidecar.port, agent, { path, headers: bearer(token) })).status).toBe(403);
    }
  });

  it('a token that fails over a good certificate is refused, never ignored', async () => {
    const expiredish = `${(await user(['user'])).slice(0, -4)}AAAA`;
    const res = await requestVia(sidecar.port, agent, { path: '/agents/a-1', headers: bearer(expiredish) });
    expect([res.status, reason(res)]).toEqual([401, 'ERR_JWT_SIGNATURE']);
  });

  it('the metrics count each method apart', async () => {
    const scrape = await scrapeMetrics((sidecar.adminAddress() as { port: number }).port);
    for (const auth of ['mtls', 'jwt-svid', 'oidc', 'k8s-sa', 'api-key']) {
      expect(sample(scrape, 'spiffe_sidecar_requests_total', { status_class: '2xx', auth })).toBeGreaterThan(0);
      expect(
        sample(scrape, 'spiffe_sidecar_authz_decisions_total', { decision: 'allow', reason: 'rule_matched', auth }),
      ).toBeGreaterThan(0);
    }
  });
});
