// Each policy in examples/policies/, used as shipped, in front of a real app: the Router→WorkloadManager
// policy over real mTLS with several SVIDs; sandbox roles with Keycloak-like tokens over JWT-on-TLS;
// namespace auto-approval with Kubernetes service-account tokens; GitHub Actions tokens bound to one
// repository and ref. Every answer is the one the example's comments promise.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { lastAudit } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/policies/${name}`, import.meta.url));

const ws = useWorkspace();
let serving: ServingFiles;
let partnerBundle: string;
let callers: Record<'router' | 'scheduler' | 'partner', IssuedCertificate>;
/** Token issuers: each a real HTTPS OIDC issuer with its own CA. */
let keycloak: OidcIssuer;
let k8s: OidcIssuer;
let github: OidcIssuer;
let issuerCaFile: string;

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const partnerCa = await createDevCa({ trustDomain: 'partner.org' });
  serving = await writeServingFiles(
    ws.path,
    await issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/workload-manager' }),
    ca.certPem,
  );
  partnerBundle = join(ws.path, 'partner.org.pem');
  await writeFile(partnerBundle, partnerCa.certPem);
  const [router, scheduler, partner] = await Promise.all([
    issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/router' }),
    issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/scheduler' }),
    issueSvid(partnerCa, { id: 'spiffe://partner.org/ns/prod/sa/router' }),
  ]);
  callers = { router, scheduler, partner };
  [keycloak, k8s, github] = await Promise.all([startOidcIssuer(), startOidcIssuer(), startOidcIssuer()]);
  issuerCaFile = join(ws.path, 'issuers-ca.pem');
  await writeFile(issuerCaFile, keycloak.caPem + k8s.caPem + github.caPem);
});
afterAll(async () => {
  await Promise.all([keycloak, k8s, github].map((i) => i?.close()));
});

/** JWT mode with the three issuers, under the names the examples use. */
function jwtFlags(policy: string) {
  return {
    upstream: ws.app.url,
    'auth-mode': 'jwt',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`keycloak=${keycloak.url}`, `k8s=${k8s.url}`, `github=${github.url}`],
    'jwt-ca-file': issuerCaFile,
    'policy-file': example(policy),
    watch: false,
  };
}

interface Answer {
  status: number;
  reason?: string;
  headers?: Record<string, string | undefined>;
}

function answer(status: number, text: string): Answer {
  const body = JSON.parse(text) as { reason?: string; headers?: Record<string, string> };
  return status === 200 ? { status, headers: body.headers } : { status, reason: body.reason };
}

describe('router-to-workload-manager.yaml (mTLS)', () => {
  let sidecar: TestSidecar;
  beforeAll(async () => {
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'federated-bundle': [`partner.org=${partnerBundle}`],
      'policy-file': example('router-to-workload-manager.yaml'),
      watch: false,
    });
  });
  afterAll(() => sidecar.close());

  async function call(who: keyof typeof callers, method: string, path: string) {
    const res = await requestVia(sidecar.port, callers[who], { method, path });
    return answer(res.status, res.body);
  }

  it('only the Router uses the API, on every method under /v1', async () => {
    for (const [method, path] of [
      ['POST', '/v1/workloads'],
      ['GET', '/v1/workloads'],
      ['DELETE', '/v1/workloads/w-1'],
      ['GET', '/v1'],
    ]) {
      const from = sidecar.logs.length;
      const res = await call('router', method, path);
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 200 });
      expect(res.headers?.['x-spiffe-id']).toBe('spiffe://example.org/ns/prod/sa/router');
      expect(await lastAudit(sidecar.logs, method, path, from)).toMatchObject({
        auth: 'mtls',
        decision: 'allow',
        rule: 'router-uses-the-api',
      });
    }
    expect(await call('scheduler', 'POST', '/v1/workloads')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call('scheduler', 'DELETE', '/v1/workloads/w-1')).toEqual({ status: 403, reason: 'no_matching_rule' });
    // The same path under another trust domain's (federated, valid) Router is another caller.
    expect(await call('partner', 'POST', '/v1/workloads')).toEqual({ status: 403, reason: 'no_matching_rule' });
  });

  it('/v1 is a prefix on a segment boundary, and paths are in normal form', async () => {
    expect(await call('router', 'GET', '/v1x')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call('router', 'GET', '/v2/workloads')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call('router', 'GET', '/v1/../admin')).toEqual({ status: 400, reason: 'path_not_normalized' });
    expect(await call('router', 'GET', '/v1/%2e%2e/admin')).toEqual({ status: 400, reason: 'path_not_normalized' });
  });

  it('any workload of the trust domain reads health, with GET only; nobody else does', async () => {
    for (const who of ['router', 'scheduler'] as const) {
      expect((await call(who, 'GET', '/healthz')).status).toBe(200);
    }
    expect(await lastAudit(sidecar.logs, 'GET', '/healthz')).toMatchObject({
      decision: 'allow',
      rule: 'anyone-in-the-trust-domain-reads-health',
    });
    expect(await call('scheduler', 'POST', '/healthz')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call('scheduler', 'GET', '/healthz/details')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call('partner', 'GET', '/healthz')).toEqual({ status: 403, reason: 'no_matching_rule' });
  });

  it('GET covers HEAD: a workload may HEAD /healthz, and the app sees the HEAD', async () => {
    const res = await requestVia(sidecar.port, callers.scheduler, { method: 'HEAD', path: '/healthz' });
    expect(res.status).toBe(200);
    expect(ws.app.seen.at(-1)).toMatchObject({ method: 'HEAD', url: '/healthz' });
    expect(await lastAudit(sidecar.logs, 'HEAD', '/healthz')).toMatchObject({
      decision: 'allow',
      rule: 'anyone-in-the-trust-domain-reads-health',
    });
    const seen = ws.app.seen.length;
    expect((await requestVia(sidecar.port, callers.partner, { method: 'HEAD', path: '/healthz' })).status).toBe(403);
    expect(ws.app.seen.length).toBe(seen);
  });
});

describe('sandbox-roles.yaml (Keycloak tokens, JWT over TLS)', () => {
  let sidecar: TestSidecar;
  beforeAll(async () => {
    sidecar = await startTestSidecar({
      ...jwtFlags('sandbox-roles.yaml'),
      'jwt-transport': 'tls',
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
    });
  });
  afterAll(() => sidecar.close());

  const user = (sub: string, ...roles: string[]) => keycloak.sign({ sub, realm_access: { roles } });

  async function call(token: string, method: string, path: string) {
    const res = await requestVia(sidecar.port, undefined, {
      method,
      path,
      headers: { authorization: `Bearer ${token}` },
    });
    return answer(res.status, res.body);
  }

  it('sandbox:invoke runs code (POST /invoke) and nothing else', async () => {
    const invoker = await user('invoker-1', 'offline_access', 'sandbox:invoke');
    const ok = await call(invoker, 'POST', '/invoke');
    expect(ok.status).toBe(200);
    expect(ok.headers?.['x-jwt-issuer']).toBe('keycloak');
    expect(ok.headers?.['x-jwt-subject']).toBe('invoker-1');
    expect(ok.headers?.['x-spiffe-id']).toBeUndefined();
    expect(ok.headers?.authorization).toBeUndefined();
    expect(await lastAudit(sidecar.logs, 'POST', '/invoke')).toMatchObject({
      auth: 'oidc',
      peer: 'keycloak#invoker-1',
      decision: 'allow',
      rule: 'invokers-run-code',
    });
    expect(await call(invoker, 'GET', '/invoke')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(invoker, 'POST', '/invoke/x')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(invoker, 'DELETE', '/sandboxes/s-1')).toEqual({ status: 403, reason: 'claim_mismatch' });
  });

  it('sandbox:manage deletes one sandbox (DELETE /sandboxes/*) and nothing else', async () => {
    const manager = await user('manager-1', 'sandbox:manage');
    expect((await call(manager, 'DELETE', '/sandboxes/s-1')).status).toBe(200);
    expect(await lastAudit(sidecar.logs, 'DELETE', '/sandboxes/s-1')).toMatchObject({
      rule: 'managers-delete-sandboxes',
    });
    expect(await call(manager, 'DELETE', '/sandboxes/s-1/files')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(manager, 'DELETE', '/sandboxes/')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(manager, 'DELETE', '/sandboxes')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(manager, 'POST', '/invoke')).toEqual({ status: 403, reason: 'claim_mismatch' });
    expect(await call(manager, 'DELETE', '/sandboxes/s-1/../s-2')).toEqual({
      status: 400,
      reason: 'path_not_normalized',
    });
  });

  it('admin does everything', async () => {
    const admin = await user('admin-1', 'admin');
    for (const [method, path] of [
      ['DELETE', '/sandboxes/s-1/files'],
      ['POST', '/invoke'],
      ['PUT', '/settings'],
    ]) {
      // POST /invoke and the DELETE were refused to others earlier: this request's line, not theirs.
      const from = sidecar.logs.length;
      expect((await call(admin, method, path)).status).toBe(200);
      expect(await lastAudit(sidecar.logs, method, path, from)).toMatchObject({ rule: 'admins-do-everything' });
    }
  });

  it('roles count only in realm_access.roles, only as exact role names, only from Keycloak', async () => {
    const noRole = await user('u', 'offline_access');
    expect(await call(noRole, 'POST', '/invoke')).toEqual({ status: 403, reason: 'claim_mismatch' });
    const topLevel = await keycloak.sign({ sub: 'u', roles: ['admin'], realm_access: { roles: [] } });
    expect(await call(topLevel, 'POST', '/invoke')).toEqual({ status: 403, reason: 'claim_mismatch' });
    const clientRole = await keycloak.sign({ sub: 'u', resource_access: { sandbox: { roles: ['admin'] } } });
    expect(await call(clientRole, 'PUT', '/settings')).toEqual({ status: 403, reason: 'claim_mismatch' });
    const lookalike = await user('u', 'admins', 'sandbox:invoke:all', 'Admin');
    expect(await call(lookalike, 'PUT', '/settings')).toEqual({ status: 403, reason: 'claim_mismatch' });
    // The same claims from another issuer: no rule names that issuer.
    const foreign = await github.sign({ sub: 'u', realm_access: { roles: ['admin'] } });
    expect(await call(foreign, 'PUT', '/settings')).toEqual({ status: 403, reason: 'no_matching_rule' });
  });

  it('invocations are rate limited per caller (burst 10): 429 with Retry-After; others are unaffected', async () => {
    const busy = await user('busy-invoker', 'sandbox:invoke');
    // All at once: 10 pass on the burst, and the refill (5 a second) cannot serve 25 in the time they take.
    const answers = await Promise.all(
      Array.from({ length: 25 }, () =>
        requestVia(sidecar.port, undefined, {
          method: 'POST',
          path: '/invoke',
          headers: { authorization: `Bearer ${busy}` },
        }),
      ),
    );
    const statuses = answers.map((a) => a.status);
    const limited = answers.find((a) => a.status === 429);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    expect(limited?.headers['retry-after']).toBe('1');
    expect(JSON.parse(limited!.body)).toEqual({ error: 'too_many_requests', reason: 'rate_limited' });
    // Another invoker has its own bucket; an admin's rule has no limit.
    expect((await call(await user('calm-invoker', 'sandbox:invoke'), 'POST', '/invoke')).status).toBe(200);
    expect((await call(await user('admin-2', 'admin'), 'POST', '/invoke')).status).toBe(200);
  });
});

describe('kubernetes-namespace-auto-approval.yaml (service-account tokens)', () => {
  let sidecar: TestSidecar;
  beforeAll(async () => {
    sidecar = await startTestSidecar(jwtFlags('kubernetes-namespace-auto-approval.yaml'));
  });
  afterAll(() => sidecar.close());

  const agent = (ns: string, sa: string) => k8s.sign({ sub: `system:serviceaccount:${ns}:${sa}` });

  async function call(token: string, method = 'GET', path = '/tasks') {
    const res = await fetch(`http://127.0.0.1:${sidecar.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
    });
    return answer(res.status, await res.text());
  }

  it('agents of namespace prod are approved automatically, on any route', async () => {
    for (const [sa, method, path] of [
      ['agent-1', 'GET', '/tasks'],
      ['agent-2', 'POST', '/tasks'],
      ['agent-2', 'DELETE', '/tasks/t-1'],
    ]) {
      const from = sidecar.logs.length;
      const res = await call(await agent('prod', sa), method, path);
      expect(res.status).toBe(200);
      expect(res.headers?.['x-spiffe-id']).toBe(`spiffe://cluster.local/ns/prod/sa/${sa}`);
      expect(res.headers?.['x-jwt-issuer']).toBe('k8s');
      expect(await lastAudit(sidecar.logs, method, path, from)).toMatchObject({
        auth: 'k8s-sa',
        peer: `spiffe://cluster.local/ns/prod/sa/${sa}`,
        decision: 'allow',
        rule: 'prod-agents-auto-approved',
      });
    }
  });

  it('agents of any other namespace are refused, and the audit log names the rule that refused them', async () => {
    for (const ns of ['staging', 'prod-2', 'kube-system']) {
      expect(await call(await agent(ns, 'agent-1'), 'POST', `/tasks/${ns}`)).toEqual({
        status: 403,
        reason: 'rule_denied',
      });
      expect(await lastAudit(sidecar.logs, 'POST', `/tasks/${ns}`)).toMatchObject({
        auth: 'k8s-sa',
        peer: `spiffe://cluster.local/ns/${ns}/sa/agent-1`,
        decision: 'deny',
        rule: 'other-namespaces-need-approval',
        reason: 'rule_denied',
      });
    }
  });

  it('the deny names no path, so no other spelling of a path escapes it, and the app sees nothing', async () => {
    const token = await agent('staging', 'agent-1');
    const seen = ws.app.seen.length;
    for (const [method, path] of [
      ['GET', '/admin'],
      ['GET', '/admin/'],
      ['GET', '/Admin'],
      ['GET', '/admin.json'],
      ['HEAD', '/admin'],
    ]) {
      const from = sidecar.logs.length;
      const res = await fetch(`http://127.0.0.1:${sidecar.port}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
      });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 });
      expect(await lastAudit(sidecar.logs, method, path, from)).toMatchObject({
        rule: 'other-namespaces-need-approval',
      });
    }
    expect(ws.app.seen.length).toBe(seen);
  });

  it('a token of another issuer, even naming a prod service account, is no Kubernetes agent', async () => {
    const token = await keycloak.sign({ sub: 'system:serviceaccount:prod:agent-1' });
    expect(await call(token)).toEqual({ status: 403, reason: 'no_matching_rule' });
  });
});

describe('github-actions-repository.yaml (GitHub Actions OIDC tokens)', () => {
  let sidecar: TestSidecar;
  beforeAll(async () => {
    sidecar = await startTestSidecar(jwtFlags('github-actions-repository.yaml'));
  });
  afterAll(() => sidecar.close());

  /** The claims of a GitHub Actions job token for a repository and ref. */
  const job = (repository: string, ref: unknown, issuer: OidcIssuer = github) =>
    issuer.sign({
      sub: `repo:${repository}:ref:${String(ref)}`,
      repository,
      repository_owner: repository.split('/')[0],
      ref,
      workflow: 'deploy',
    });

  async function call(token: string, method: string, path: string) {
    const res = await fetch(`http://127.0.0.1:${sidecar.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
    });
    return answer(res.status, await res.text());
  }

  it('the repository’s main branch deploys', async () => {
    const res = await call(await job('example-org/agents', 'refs/heads/main'), 'POST', '/deploy');
    expect(res.status).toBe(200);
    expect(res.headers?.['x-jwt-issuer']).toBe('github');
    expect(res.headers?.['x-jwt-subject']).toBe('repo:example-org/agents:ref:refs/heads/main');
    expect(await lastAudit(sidecar.logs, 'POST', '/deploy')).toMatchObject({
      auth: 'oidc',
      decision: 'allow',
      rule: 'main-branch-deploys',
    });
  });

  it('another branch of the repository reads the status but does not deploy', async () => {
    const feature = await job('example-org/agents', 'refs/heads/feature-x');
    expect(await call(feature, 'POST', '/deploy')).toEqual({ status: 403, reason: 'claim_mismatch' });
    const from = sidecar.logs.length;
    expect((await call(feature, 'GET', '/status')).status).toBe(200);
    expect(await lastAudit(sidecar.logs, 'GET', '/status', from)).toMatchObject({ rule: 'repository-reads-status' });
    expect((await call(feature, 'GET', '/status/runs/42')).status).toBe(200);
    expect(await call(feature, 'GET', '/statusx')).toEqual({ status: 403, reason: 'no_matching_rule' });
    expect(await call(feature, 'GET', '/deploy')).toEqual({ status: 403, reason: 'no_matching_rule' });
    // A tag that looks like main is not main.
    expect(await call(await job('example-org/agents', 'refs/tags/main'), 'POST', '/deploy')).toEqual({
      status: 403,
      reason: 'claim_mismatch',
    });
    expect(await call(await job('example-org/agents', ['refs/heads/main']), 'POST', '/deploy')).toEqual({
      status: 403,
      reason: 'claim_mismatch',
    });
  });

  it('other repositories neither deploy nor read, however close their names', async () => {
    for (const repository of ['example-org/other', 'example-org/agents-fork', 'Example-Org/agents', 'evil/agents']) {
      const token = await job(repository, 'refs/heads/main');
      expect({ repository, ...(await call(token, 'POST', '/deploy')) }).toEqual({
        repository,
        status: 403,
        reason: 'claim_mismatch',
      });
      expect({ repository, ...(await call(token, 'GET', '/status')) }).toEqual({
        repository,
        status: 403,
        reason: 'claim_mismatch',
      });
    }
  });

  it('the same claims from another issuer are not a GitHub job', async () => {
    const token = await job('example-org/agents', 'refs/heads/main', keycloak);
    expect(await call(token, 'POST', '/deploy')).toEqual({ status: 403, reason: 'no_matching_rule' });
  });
});
