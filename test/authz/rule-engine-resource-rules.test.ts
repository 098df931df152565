// Resource-level rules (issue 19): a rule's `where` compares the segments its path template bound with the
// credential it judges. A rule whose `where` fails does not match; when an allow rule failed only there, the
// denial is `resource_mismatch`. `policy check` shows what the segments bound.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { policyWarnings } from '../../src/authz/policy-commands.js';
import { createFileAuthorizer, type Decision } from '../../src/authz/policy.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import type { CertificateIdentity } from '../../src/authz/rule-engine.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { runPolicyCheck } from '../helpers/policy-check.js';

type Rule = Record<string, unknown>;

function decide(rules: Rule[], caller: PeerIdentity, method: string, target: string, cert?: CertificateIdentity) {
  const policy = parsePolicy(JSON.stringify({ version: 1, rules }), 'test');
  const decision = createFileAuthorizer(() => policy).decide(caller, method, target, cert);
  if (decision instanceof Promise) throw new Error('a local decision came as a promise');
  return decision;
}

const mtls = (id: string): CertificateIdentity => ({ method: 'mtls', id: parseSpiffeId(id), leafSha256: 'ab' });
const oidc = (claims?: Record<string, unknown>, issuer = 'keycloak'): PeerIdentity => ({
  method: 'oidc',
  issuer,
  subject: typeof claims?.sub === 'string' ? claims.sub : 'someone',
  claims,
});
const jwtSvid = (id: string): PeerIdentity => ({ method: 'jwt-svid', id: parseSpiffeId(id), subject: id, claims: {} });
const k8s = (ns: string, sa: string): PeerIdentity => ({
  method: 'k8s-sa',
  id: parseSpiffeId(`spiffe://cluster.local/ns/${ns}/sa/${sa}`),
  issuer: 'k8s',
  subject: `system:serviceaccount:${ns}:${sa}`,
  claims: { 'kubernetes.io': { namespace: ns } },
});
const key = (name: string): PeerIdentity => ({ method: 'api-key', name });

const allow = (rule: string): Decision => ({ allow: true, rule });
const deny = (reason: string, rule?: string): Decision =>
  (rule === undefined ? { allow: false, reason } : { allow: false, reason, rule }) as Decision;

const OWNERS: Rule = {
  name: 'owners',
  effect: 'allow',
  path: { template: '/sandboxes/{owner}/**' },
  callers: { issuers: ['keycloak'] },
  where: [{ segment: 'owner', equals: 'claims.sub' }],
};
const NAMESPACES: Rule = {
  name: 'namespaces',
  effect: 'allow',
  path: { template: '/namespaces/{ns}/**' },
  callers: { ids: ['spiffe://example.org/ns/*/sa/*'] },
  where: [{ segment: 'ns', equals: 'id.segment[1]' }],
};
/** The same for Kubernetes service accounts: one trust domain per rule (a namespace of each is another's). */
const NAMESPACES_K8S: Rule = {
  ...NAMESPACES,
  name: 'namespaces-k8s',
  callers: { ids: ['spiffe://cluster.local/ns/*/sa/*'] },
};
const KEYS: Rule = {
  name: 'keys',
  effect: 'allow',
  path: { template: '/keys/{name}/**' },
  where: [{ segment: 'name', equals: 'key.name' }],
};
const ROLES: Rule = {
  name: 'role-holders',
  effect: 'allow',
  path: { template: '/projects/{project}/**' },
  callers: { issuers: ['keycloak'], claims: [{ claim: 'realm_access.roles', contains: 'project:write' }] },
  where: [{ segment: 'project', equals: 'claims.project' }],
};
const alice = oidc({ sub: 'alice', project: 'p1', realm_access: { roles: ['project:write'] } });

describe('where: each kind of caller reaches only its own resources', () => {
  const cases: [what: string, rules: Rule[], caller: PeerIdentity, request: [string, string], expected: Decision][] = [
    ['oidc: the owner', [OWNERS], alice, ['GET', '/sandboxes/alice/x'], allow('owners')],
    ['oidc: the owner, the bare template path', [OWNERS], alice, ['DELETE', '/sandboxes/alice'], allow('owners')],
    ['oidc: the owner, an encoded spelling', [OWNERS], alice, ['GET', '/sandboxes/%61lice/x'], allow('owners')],
    ['oidc: another owner', [OWNERS], alice, ['GET', '/sandboxes/bob/x'], deny('resource_mismatch')],
    ['oidc: another letter case', [OWNERS], alice, ['GET', '/sandboxes/Alice/x'], deny('resource_mismatch')],
    ['oidc: a token without claims', [OWNERS], oidc(undefined), ['GET', '/sandboxes/alice'], deny('resource_mismatch')],
    ['oidc: a sub that is a number', [OWNERS], oidc({ sub: 7 }), ['GET', '/sandboxes/7'], allow('owners')],
    ['oidc: not UTF-8', [OWNERS], alice, ['GET', '/sandboxes/%FF/x'], deny('resource_mismatch')],
    ['oidc: no segment to bind', [OWNERS], alice, ['GET', '/sandboxes/'], deny('no_matching_rule')],
    ['oidc: another path', [OWNERS], alice, ['GET', '/other/alice'], deny('no_matching_rule')],
    [
      'oidc: another issuer is no caller of the rule',
      [OWNERS],
      oidc({ sub: 'alice' }, 'github'),
      ['GET', '/sandboxes/bob'],
      deny('no_matching_rule'),
    ],
    [
      'oidc: an encoded "/" is refused before any rule',
      [OWNERS],
      alice,
      ['GET', '/sandboxes/alice%2Fx'],
      deny('path_not_normalized'),
    ],
    [
      'mtls: its namespace',
      [NAMESPACES],
      mtls('spiffe://example.org/ns/prod/sa/web'),
      ['GET', '/namespaces/prod/pods'],
      allow('namespaces'),
    ],
    [
      'mtls: another namespace',
      [NAMESPACES],
      mtls('spiffe://example.org/ns/prod/sa/web'),
      ['GET', '/namespaces/staging/pods'],
      deny('resource_mismatch'),
    ],
    [
      'mtls: a SPIFFE ID the rule does not admit',
      [NAMESPACES],
      mtls('spiffe://example.org/web'),
      ['GET', '/namespaces/web'],
      deny('no_matching_rule'),
    ],
    [
      'jwt-svid: its namespace',
      [NAMESPACES],
      jwtSvid('spiffe://example.org/ns/dev/sa/job'),
      ['GET', '/namespaces/dev'],
      allow('namespaces'),
    ],
    [
      'k8s-sa: its namespace',
      [NAMESPACES_K8S],
      k8s('prod', 'builder'),
      ['PUT', '/namespaces/prod/x'],
      allow('namespaces-k8s'),
    ],
    [
      'k8s-sa: another namespace',
      [NAMESPACES_K8S],
      k8s('prod', 'builder'),
      ['PUT', '/namespaces/kube-system/x'],
      deny('resource_mismatch'),
    ],
    ['api-key: its own name', [KEYS], key('partner-x'), ['GET', '/keys/partner-x/usage'], allow('keys')],
    ['api-key: another name', [KEYS], key('partner-x'), ['GET', '/keys/partner-y/usage'], deny('resource_mismatch')],
    ['oidc on a key rule: no key name', [KEYS], alice, ['GET', '/keys/alice'], deny('resource_mismatch')],
    [
      'mtls on an owner rule: no claims',
      [KEYS],
      mtls('spiffe://example.org/a'),
      ['GET', '/keys/a'],
      deny('resource_mismatch'),
    ],
    // the role is a claim condition, the project a resource condition
    ['roles: role and project', [ROLES], alice, ['POST', '/projects/p1/x'], allow('role-holders')],
    ['roles: role, another project', [ROLES], alice, ['POST', '/projects/p2/x'], deny('resource_mismatch')],
    [
      'roles: no role, its own project',
      [ROLES],
      oidc({ sub: 'bob', project: 'p1', realm_access: { roles: [] } }),
      ['POST', '/projects/p1/x'],
      deny('claim_mismatch'),
    ],
    [
      'roles: no role and another project: the claim is checked first',
      [ROLES],
      oidc({ sub: 'bob', project: 'p1', realm_access: { roles: [] } }),
      ['POST', '/projects/p2/x'],
      deny('claim_mismatch'),
    ],
  ];
  it.each(cases)('%s', (_what, rules, caller, [method, target], expected) => {
    expect(decide(rules, caller, method, target)).toEqual(expected);
  });
});

describe('where in the order of rules', () => {
  it('a rule whose where fails does not match: the next rule decides', () => {
    const everyoneReads: Rule = { name: 'everyone-reads', effect: 'allow', methods: ['GET'] };
    expect(decide([OWNERS, everyoneReads], alice, 'GET', '/sandboxes/bob')).toEqual(allow('everyone-reads'));
    expect(decide([OWNERS, everyoneReads], alice, 'DELETE', '/sandboxes/bob')).toEqual(deny('resource_mismatch'));
  });

  it('a resource miss is named before a claim miss of another rule', () => {
    const roles: Rule = { ...ROLES, name: 'roles', path: { template: '/sandboxes/{project}/**' } };
    const bob = oidc({ sub: 'bob', project: 'p1', realm_access: { roles: [] } });
    expect(decide([roles, OWNERS], bob, 'GET', '/sandboxes/alice')).toEqual(deny('resource_mismatch'));
    expect(decide([OWNERS, roles], bob, 'GET', '/sandboxes/alice')).toEqual(deny('resource_mismatch'));
  });

  it('a deny rule with where denies only when it holds; when it fails the denial is never resource_mismatch', () => {
    const noSelfDelete: Rule = {
      name: 'no-self-delete',
      effect: 'deny',
      methods: ['DELETE'],
      path: { template: '/users/{user}' },
      where: [{ segment: 'user', equals: 'claims.sub' }],
    };
    const admins: Rule = { name: 'admins', effect: 'allow', path: { prefix: '/users' } };
    expect(decide([noSelfDelete, admins], alice, 'DELETE', '/users/alice')).toEqual(
      deny('rule_denied', 'no-self-delete'),
    );
    expect(decide([noSelfDelete, admins], alice, 'DELETE', '/users/bob')).toEqual(allow('admins'));
    expect(decide([noSelfDelete], alice, 'DELETE', '/users/bob')).toEqual(deny('no_matching_rule'));
  });

  it('in: fixed values, and several bindings joined with "/" against a claim that holds "/"', () => {
    const repos: Rule = {
      name: 'repos',
      effect: 'allow',
      path: { template: '/repos/{owner}/{repo}/**' },
      callers: { issuers: ['github'] },
      where: [
        { segment: 'owner', in: ['octo-org', 'example-org'] },
        { segment: 'owner/repo', equals: 'claims.repository' },
      ],
    };
    const job = oidc({ repository: 'octo-org/app' }, 'github');
    expect(decide([repos], job, 'GET', '/repos/octo-org/app/x')).toEqual(allow('repos'));
    expect(decide([repos], job, 'GET', '/repos/octo-org/other/x')).toEqual(deny('resource_mismatch'));
    const elsewhere = oidc({ repository: 'evil-org/app' }, 'github');
    expect(decide([repos], elsewhere, 'GET', '/repos/evil-org/app')).toEqual(deny('resource_mismatch'));
  });

  it('HEAD is judged by a GET rule with where, as any GET rule', () => {
    const reads: Rule = { ...OWNERS, methods: ['GET'] };
    expect(decide([reads], alice, 'HEAD', '/sandboxes/alice')).toEqual(allow('owners'));
    expect(decide([reads], alice, 'HEAD', '/sandboxes/bob')).toEqual(deny('resource_mismatch'));
  });
});

describe('where judges one credential: a token and a certificate are never mixed', () => {
  const router = mtls('spiffe://example.org/ns/prod/sa/router');

  it("a token's subject is compared for a token rule; the certificate's SPIFFE ID for a certificate rule", () => {
    // The token (no SPIFFE ID) fails `namespaces`; the certificate is judged next and admitted.
    expect(decide([NAMESPACES], alice, 'GET', '/namespaces/prod/x', router)).toEqual({
      allow: true,
      rule: 'namespaces',
      admitted: router,
    });
    expect(decide([NAMESPACES], alice, 'GET', '/namespaces/dev/x', router)).toEqual(deny('resource_mismatch'));
    expect(decide([OWNERS], alice, 'GET', '/sandboxes/alice', router)).toEqual(allow('owners'));
  });

  it('no rule adds up a certificate ID and a token claim that no single credential has', () => {
    // The certificate's ID is admitted by `ids`, but it has no `sub`; the token has `sub`, but no ID.
    const mixed: Rule = {
      name: 'mixed',
      effect: 'allow',
      path: { template: '/sandboxes/{owner}/**' },
      callers: { ids: ['spiffe://example.org/ns/prod/sa/router'], issuers: ['keycloak'] },
      where: [{ segment: 'owner', equals: 'claims.sub' }],
    };
    // Each credential is judged alone: the certificate has no issuer, the token no SPIFFE ID.
    expect(decide([mixed], alice, 'GET', '/sandboxes/alice', router)).toEqual(deny('no_matching_rule'));
  });

  it('callers.certificate: the certificate is the condition, where judges the token', () => {
    const onBehalf: Rule = {
      ...OWNERS,
      name: 'on-behalf',
      callers: { issuers: ['keycloak'], certificate: { ids: ['spiffe://example.org/ns/prod/sa/router'] } },
    };
    expect(decide([onBehalf], alice, 'GET', '/sandboxes/alice', router)).toEqual(allow('on-behalf'));
    expect(decide([onBehalf], alice, 'GET', '/sandboxes/bob', router)).toEqual(deny('resource_mismatch'));
    expect(decide([onBehalf], alice, 'GET', '/sandboxes/alice')).toEqual(deny('no_matching_rule'));
  });
});

describe('policy check shows what the segments bound', () => {
  const POLICY = {
    version: 1,
    rules: [
      { ...OWNERS, callers: { issuers: ['keycloak'] } },
      NAMESPACES,
      { name: 'health', effect: 'allow', path: { exact: '/healthz' } },
      {
        name: 'no-legacy',
        effect: 'deny',
        path: { template: '/legacy/{version}/**' },
      },
    ],
  };

  async function check(...args: string[]): Promise<{ code: number; stdout: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'policy-check-'));
    const file = join(dir, 'policy.json');
    await writeFile(file, JSON.stringify(POLICY));
    return runPolicyCheck('--policy-file', file, ...args);
  }

  const user = (sub: string) => ['--issuer', 'keycloak', '--claims', JSON.stringify({ sub })];
  const cases: [what: string, args: string[], code: number, stdout: string][] = [
    ['the owner', [...user('alice'), 'GET', '/sandboxes/alice/x'], 0, 'allow\nrule: owners\nbindings: owner=alice\n'],
    [
      'another owner: the bindings of the rule that missed',
      [...user('alice'), 'GET', '/sandboxes/bob/x'],
      3,
      'deny\nreason: resource_mismatch\nbindings: owner=bob (rule owners)\n',
    ],
    [
      'a decoded value that needs quotes',
      [...user('a b'), 'GET', '/sandboxes/a%20b'],
      0,
      'allow\nrule: owners\nbindings: owner="a b"\n',
    ],
    [
      'a segment that is not UTF-8',
      [...user('alice'), 'GET', '/sandboxes/%FF'],
      3,
      'deny\nreason: resource_mismatch\nbindings: owner=<not UTF-8: %FF> (rule owners)\n',
    ],
    [
      'an mTLS caller',
      ['--id', 'spiffe://example.org/ns/prod/sa/web', 'GET', '/namespaces/prod'],
      0,
      'allow\nrule: namespaces\nbindings: ns=prod\n',
    ],
    [
      'a deny rule with a template',
      ['--id', 'spiffe://example.org/ns/prod/sa/web', 'GET', '/legacy/v1/x'],
      3,
      'deny\nrule: no-legacy\nreason: rule_denied\nbindings: version=v1\n',
    ],
    ['a rule without a template', [...user('alice'), 'GET', '/healthz'], 0, 'allow\nrule: health\n'],
    ['no rule at all', [...user('alice'), 'GET', '/other'], 3, 'deny\nreason: no_matching_rule\n'],
  ];
  it.each(cases)('%s', async (_what, args, code, stdout) => {
    expect(await check(...args)).toEqual({ code, stdout });
  });
});

describe('the policy lint reads a template as its glob', () => {
  it('a deny template that a trailing "/" escapes is warned about, with the fix in template form', () => {
    const policy = parsePolicy(
      JSON.stringify({
        version: 1,
        rules: [
          { name: 'no-user-delete', effect: 'deny', methods: ['DELETE'], path: { template: '/users/{user}' } },
          { name: 'admins', effect: 'allow', path: { prefix: '/users' } },
        ],
      }),
      'test',
    );
    const [warning] = policyWarnings(policy);
    expect(warning).toContain(
      'deny rule "no-user-delete" (path: { template: /users/{user} }) does not match /users/1/',
    );
    expect(warning).toContain('end the template with "/**" (path: { template: /users/{user}/** })');
  });

  it('a deny rule with where never counts as covering another deny rule', () => {
    const policy = parsePolicy(
      JSON.stringify({
        version: 1,
        rules: [
          {
            name: 'no-self-delete',
            effect: 'deny',
            path: { template: '/users/{user}/**' },
            where: [{ segment: 'user', equals: 'claims.sub' }],
          },
          { name: 'no-admin', effect: 'deny', path: { exact: '/users/admin' } },
          { name: 'admins', effect: 'allow', path: { prefix: '/users' } },
        ],
      }),
      'test',
    );
    // It matches /users/admin/ only for the user admin: that spelling still escapes "no-admin" for everyone else.
    const warning = policyWarnings(policy).find((w) => w.includes('deny rule "no-admin"'));
    expect(warning).toContain(
      'does not match /users/admin/, /users/admin.json, /users/Admin, which rule "admins" allows',
    );
  });
});
