// Issue 19, resource-level rules, over real TLS on loopback: path templates bind segments and `where` compares
// them with the caller's own credential. OIDC users reach only their own sandboxes, an mTLS workload only its
// namespace's paths (from its SPIFFE ID), a GitHub Actions job only its repository's and workflow's artifacts on
// its main branch, and deleting takes a Keycloak realm role as well. A miss of the resource is 403
// `resource_mismatch` (a missing role stays `claim_mismatch`), audited and counted; the app sees nothing.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { decisions, lastAudit, scrapeMetrics, writePolicy } from '../helpers/authz.js';
import { requestVia, type Response } from '../helpers/client.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, issueSvid, mtlsFileOptions, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const AUDIENCE = 'sandboxes';
const PROD_WEB = 'spiffe://example.org/ns/prod/sa/web';
const STAGING_WEB = 'spiffe://example.org/ns/staging/sa/web';

const POLICY = `version: 1
rules:
  - name: owners-read-their-sandboxes
    effect: allow
    methods: [GET]
    path: { template: '/sandboxes/{owner}/**' }
    callers: { issuers: [keycloak] }
    where:
      - { segment: owner, equals: claims.sub }
  - name: managers-delete-their-sandboxes
    effect: allow
    methods: [DELETE]
    path: { template: '/sandboxes/{owner}/**' }
    callers:
      issuers: [keycloak]
      claims:
        - { claim: realm_access.roles, contains: 'sandbox:manage' }
    where:
      - { segment: owner, equals: claims.sub }
  - name: workloads-use-their-namespace
    effect: allow
    path: { template: '/namespaces/{ns}/**' }
    callers: { auth: [mtls], ids: ['spiffe://example.org/ns/*/sa/*'] }
    where:
      - { segment: ns, equals: 'id.segment[1]' }
      - { segment: ns, in: [prod, staging] }
  - name: main-publishes-its-artifacts
    effect: allow
    methods: [PUT]
    path: { template: '/artifacts/{owner}/{repo}/{workflow}/**' }
    callers:
      issuers: [github]
      claims:
        - { claim: ref, equals: refs/heads/main }
    where:
      - { segment: owner/repo, equals: claims.repository }
      - { segment: workflow, equals: claims.workflow }
  - name: branches-read-their-caches
    effect: allow
    methods: [GET]
    path: { template: '/caches/{owner}/{repo}/{refs}/{kind}/{branch}/files/**' }
    callers: { issuers: [github] }
    where:
      - { segment: owner/repo, equals: claims.repository }
      - { segment: refs/kind/branch, equals: claims.ref }
`;

const ws = useWorkspace();
let keycloak: OidcIssuer;
let github: OidcIssuer;
let prodWeb: IssuedCertificate;
let stagingWeb: IssuedCertificate;
let sidecar: TestSidecar;

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const serving = await writeServingFiles(
    ws.path,
    await issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/sandbox-api' }),
    ca.certPem,
  );
  [prodWeb, stagingWeb] = await Promise.all([issueSvid(ca, { id: PROD_WEB }), issueSvid(ca, { id: STAGING_WEB })]);
  [keycloak, github] = await Promise.all([startOidcIssuer(), startOidcIssuer()]);
  const issuerCa = join(ws.path, 'issuer-ca.pem');
  await writeFile(issuerCa, keycloak.caPem + github.caPem);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    ...mtlsFileOptions(serving),
    'policy-file': await writePolicy(ws.path, 'policy.yaml', POLICY),
    'jwt-audience': [AUDIENCE],
    'jwt-issuer': [`keycloak=${keycloak.url}`, `github=${github.url}`],
    'jwt-ca-file': issuerCa,
    'admin-listen': '127.0.0.1:0',
  });
});
afterAll(async () => {
  await sidecar?.close();
  await keycloak?.close();
  await github?.close();
});

const user = (sub: string, roles: string[] = []) =>
  keycloak.sign({ sub, realm_access: { roles } }, { audience: AUDIENCE });
const job = (repository: string, ref: string, workflow: string) =>
  github.sign(
    { sub: `repo:${repository}:ref:${ref}`, repository, repository_owner: repository.split('/')[0], ref, workflow },
    { audience: AUDIENCE },
  );
const reason = (res: Response) => (JSON.parse(res.body) as { reason?: string }).reason;

async function asToken(token: string, method: string, path: string) {
  const res = await requestVia(sidecar.port, undefined, {
    method,
    path,
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, reason: res.status === 200 ? undefined : reason(res) };
}

async function asWorkload(cert: IssuedCertificate, path: string) {
  const res = await requestVia(sidecar.port, cert, { path });
  return { status: res.status, reason: res.status === 200 ? undefined : reason(res) };
}

const ok = { status: 200, reason: undefined };
const resourceMismatch = { status: 403, reason: 'resource_mismatch' };

describe('OIDC users reach only their own sandboxes', () => {
  it('alice reads /sandboxes/alice/…, not /sandboxes/bob/…; bob the other way round; the app sees only the allowed', async () => {
    const [alice, bob] = await Promise.all([user('alice'), user('bob')]);
    const seen = ws.app.seen.length;
    expect(await asToken(alice, 'GET', '/sandboxes/alice/x')).toEqual(ok);
    expect(await asToken(alice, 'GET', '/sandboxes/bob/x')).toEqual(resourceMismatch);
    expect(await asToken(bob, 'GET', '/sandboxes/bob/x')).toEqual(ok);
    expect(await asToken(bob, 'GET', '/sandboxes/alice/x')).toEqual(resourceMismatch);
    expect(ws.app.seen.length).toBe(seen + 2);
    expect(ws.app.seen.slice(seen).map((r) => r.url)).toEqual(['/sandboxes/alice/x', '/sandboxes/bob/x']);
  });

  it('spellings: an escape of an unreserved letter binds the same owner; an encoded "/" is refused before any rule', async () => {
    const alice = await user('alice');
    expect(await asToken(alice, 'GET', '/sandboxes/%61lice/x')).toEqual(ok);
    expect(await asToken(alice, 'GET', '/sandboxes/Alice/x')).toEqual(resourceMismatch);
    expect(await asToken(alice, 'GET', '/sandboxes/alice%2Fx')).toEqual({ status: 400, reason: 'path_not_normalized' });
    expect(await asToken(alice, 'GET', '/sandboxes/bob/../alice')).toEqual({
      status: 400,
      reason: 'path_not_normalized',
    });
    expect(await asToken(alice, 'GET', '/sandboxes/')).toEqual({ status: 403, reason: 'no_matching_rule' });
  });

  it('the denial is audited with its reason and counted under a bounded label', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    const from = sidecar.logs.length;
    await asToken(await user('alice'), 'GET', '/sandboxes/bob/audited');
    expect(await lastAudit(sidecar.logs, 'GET', '/sandboxes/bob/audited', from)).toMatchObject({
      auth: 'oidc',
      decision: 'deny',
      reason: 'resource_mismatch',
    });
    const after = await scrapeMetrics(sidecar.adminAddress().port);
    expect(decisions(after, 'deny', 'resource_mismatch') - decisions(before, 'deny', 'resource_mismatch')).toBe(1);
  });
});

describe('Keycloak realm roles: deleting takes the role and the ownership', () => {
  it('with sandbox:manage alice deletes her sandbox, not bob’s; without the role 403 claim_mismatch', async () => {
    const manager = await user('alice', ['sandbox:manage']);
    expect(await asToken(manager, 'DELETE', '/sandboxes/alice')).toEqual(ok);
    expect(await asToken(manager, 'DELETE', '/sandboxes/bob')).toEqual(resourceMismatch);
    const plain = await user('alice', ['sandbox:read']);
    expect(await asToken(plain, 'DELETE', '/sandboxes/alice')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await asToken(plain, 'GET', '/sandboxes/alice')).toEqual(ok);
  });
});

describe('mTLS workloads reach only their namespace, named by their SPIFFE ID', () => {
  it('spiffe://example.org/ns/prod/… uses /namespaces/prod/…, not staging; and the other way round', async () => {
    expect(await asWorkload(prodWeb, '/namespaces/prod/pods')).toEqual(ok);
    expect(await asWorkload(prodWeb, '/namespaces/staging/pods')).toEqual(resourceMismatch);
    expect(await asWorkload(stagingWeb, '/namespaces/staging/pods')).toEqual(ok);
    expect(await asWorkload(stagingWeb, '/namespaces/prod/pods')).toEqual(resourceMismatch);
    expect(await asWorkload(prodWeb, '/namespaces/%70rod')).toEqual(ok);
    expect(await lastAudit(sidecar.logs, 'GET', '/namespaces/staging/pods')).toMatchObject({ auth: 'mtls' });
  });
});

describe('GitHub Actions jobs reach only their repository, workflow and branch', () => {
  it('main publishes the artifacts of its repository and workflow; a workflow name with a space is decoded', async () => {
    const deploy = await job('octo-org/app', 'refs/heads/main', 'Deploy prod');
    expect(await asToken(deploy, 'PUT', '/artifacts/octo-org/app/Deploy%20prod/build.tgz')).toEqual(ok);
    expect(await asToken(deploy, 'PUT', '/artifacts/octo-org/app/Nightly/build.tgz')).toEqual(resourceMismatch);
    expect(await asToken(deploy, 'PUT', '/artifacts/octo-org/other/Deploy%20prod/x')).toEqual(resourceMismatch);
    expect(await asToken(deploy, 'PUT', '/artifacts/evil-org/app/Deploy%20prod/x')).toEqual(resourceMismatch);
    const feature = await job('octo-org/app', 'refs/heads/feature', 'Deploy prod');
    expect(await asToken(feature, 'PUT', '/artifacts/octo-org/app/Deploy%20prod/x')).toEqual({
      status: 403,
      reason: 'claim_mismatch',
    });
  });

  it('a branch reads the caches of its own ref: three segments joined against the ref claim', async () => {
    const feature = await job('octo-org/app', 'refs/heads/feature', 'CI');
    expect(await asToken(feature, 'GET', '/caches/octo-org/app/refs/heads/feature/files/deps')).toEqual(ok);
    expect(await asToken(feature, 'GET', '/caches/octo-org/app/refs/heads/main/files/deps')).toEqual(resourceMismatch);
    expect(await asToken(feature, 'GET', '/caches/octo-org/app/refs/tags/feature/files/deps')).toEqual(
      resourceMismatch,
    );
    // A branch name with "/" has more segments than the template binds, and the literal `files` after the
    // last binding keeps `feature` from reaching what an app may read as the caches of `feature/x`.
    const noRule = { status: 403, reason: 'no_matching_rule' };
    expect(await asToken(feature, 'GET', '/caches/octo-org/app/refs/heads/feature/x/files/a')).toEqual(noRule);
    const nested = await job('octo-org/app', 'refs/heads/feature/x', 'CI');
    expect(await asToken(nested, 'GET', '/caches/octo-org/app/refs/heads/feature/x/files/a')).toEqual(noRule);
  });
});
