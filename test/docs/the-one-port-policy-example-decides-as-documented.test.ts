// The README's "One port, every caller" policy, as written: it parses, and it decides what its comments say for
// each seed-style caller (an agent's certificate, a worker's JWT-SVID, a Kubernetes worker, a GitHub Actions job,
// a script's API key, a user through the Router), including the certificate-and-token conjunction.
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { createFileAuthorizer, type CertificateIdentity } from '../../src/authz/policy.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { claimHeaderFields } from '../../src/proxy/claim-headers.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { readme } from '../helpers/readme.js';

const section = readme.slice(readme.indexOf('## One port, every caller'));
const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
const policy = parsePolicy(yaml, 'README One port policy');
const authorizer = createFileAuthorizer(() => policy);

const cert = (id: string): CertificateIdentity => ({ method: 'mtls', id: parseSpiffeId(id), leafSha256: 'ab' });
const oidc = (issuer: string, claims: Record<string, unknown>): PeerIdentity => ({
  method: 'oidc',
  issuer,
  subject: String(claims.sub ?? 'someone'),
  claims,
});
const decide = (caller: PeerIdentity, method: string, path: string, certificate?: CertificateIdentity) =>
  authorizer.decide(caller, method, path, certificate);

describe("the README's one-port policy decides as documented", () => {
  it('parses, with its claim mappings (one of them a quoted dotted key)', () => {
    expect(policy.rules.map((r) => r.name)).toEqual([
      'agents',
      'workers',
      'k8s-workers',
      'ci-deploys',
      'reports',
      'users-through-the-router',
    ]);
    expect(policy.claimHeaders?.map((m) => [m.path, m.header])).toEqual([
      [['realm_access', 'roles'], 'x-roles'],
      [['kubernetes.io', 'namespace'], 'x-k8s-namespace'],
    ]);
    expect(claimHeaderFields({ realm_access: { roles: ['user', 'sandbox:read'] } }, policy.claimHeaders ?? [])).toEqual(
      ['x-roles', 'user, sandbox:read'],
    );
  });

  it('each caller reaches its own routes only', () => {
    const agent = cert('spiffe://example.org/agent/a-1');
    expect(decide(agent, 'GET', '/agents/a-1')).toMatchObject({ allow: true, rule: 'agents' });
    expect(decide(agent, 'GET', '/jobs/1')).toMatchObject({ allow: false });
    const worker: PeerIdentity = {
      method: 'jwt-svid',
      id: parseSpiffeId('spiffe://example.org/worker'),
      subject: 'spiffe://example.org/worker',
      claims: {},
    };
    expect(decide(worker, 'GET', '/jobs/1')).toMatchObject({ allow: true, rule: 'workers' });
    // The same SPIFFE ID by certificate is not a JWT-SVID: the rule names its method.
    expect(decide(cert('spiffe://example.org/worker'), 'GET', '/jobs/1')).toMatchObject({ allow: false });
    const k8s = (ns: string): PeerIdentity => ({
      method: 'k8s-sa',
      id: parseSpiffeId(`spiffe://cluster.local/ns/${ns}/sa/w`),
      issuer: 'k8s',
      subject: `system:serviceaccount:${ns}:w`,
      claims: { 'kubernetes.io': { namespace: ns } },
    });
    expect(decide(k8s('prod'), 'POST', '/tasks/t')).toMatchObject({ allow: true, rule: 'k8s-workers' });
    expect(decide(k8s('staging'), 'POST', '/tasks/t')).toMatchObject({ allow: false });
    const job = (ref: string) =>
      oidc('github', { sub: 'repo:example/sandbox-api', repository: 'example/sandbox-api', ref });
    expect(decide(job('refs/heads/main'), 'POST', '/deploys/d')).toMatchObject({ allow: true, rule: 'ci-deploys' });
    expect(decide(job('refs/heads/feature'), 'POST', '/deploys/d')).toMatchObject({ reason: 'claim_mismatch' });
    const script: PeerIdentity = { method: 'api-key', name: 'ci-script' };
    expect(decide(script, 'GET', '/reports/daily')).toMatchObject({ allow: true, rule: 'reports' });
    expect(decide(script, 'GET', '/agents/a-1')).toMatchObject({ allow: false });
  });

  it("a user's token passes only over the Router's certificate, and never adds to another caller's rights", () => {
    const ann = oidc('keycloak', { sub: 'ann', realm_access: { roles: ['user'] } });
    const router = cert('spiffe://example.org/router');
    expect(decide(ann, 'GET', '/me/x', router)).toMatchObject({ allow: true, rule: 'users-through-the-router' });
    expect(decide(ann, 'GET', '/me/x')).toMatchObject({ allow: false });
    expect(decide(router, 'GET', '/me/x')).toMatchObject({ allow: false });
    const agent = cert('spiffe://example.org/agent/a-1');
    expect(decide(ann, 'GET', '/me/x', agent)).toMatchObject({ allow: false });
    // Over an agent's certificate, the token is judged alone and the certificate alone: /agents/ by the
    // certificate (the decision names it), /reports/ by neither.
    expect(decide(ann, 'GET', '/agents/a-1', agent)).toEqual({ allow: true, rule: 'agents', admitted: agent });
    expect(decide(ann, 'GET', '/reports/x', agent)).toMatchObject({ allow: false, reason: 'no_matching_rule' });
  });
});
