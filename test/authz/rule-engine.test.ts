// The rule engine, table-driven: rules in order, first match wins, default deny; a rule matches on the
// method, the path (normal form) and the caller (ids with --allow syntax, issuers, API key names, how
// the caller authenticated, claims). Denials carry a bounded reason and the rule behind them.
import { describe, expect, it } from 'vitest';
import type { KeyRoute, PeerIdentity } from '../../src/authn/identity.js';
import { parseRoute } from '../../src/authn/api-keys.js';
import { createFileAuthorizer, createFlagAuthorizer, type Decision } from '../../src/authz/policy.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { evaluateRules } from '../../src/authz/rule-engine.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';

/** Local buckets decide at once: a promise here would make every rate-limited request wait. */
function atOnce(decision: Decision | Promise<Decision>): Decision {
  if (decision instanceof Promise) throw new Error('a local decision came as a promise');
  return decision;
}

type Rule = Record<string, unknown>;

function compile(...rules: Rule[]) {
  return parsePolicy(JSON.stringify({ version: 1, rules }), 'test').rules;
}

const mtls = (id: string): PeerIdentity => ({ method: 'mtls', id: parseSpiffeId(id), leafSha256: 'ab' });
const jwt = (id: string, issuer?: string, claims: Record<string, unknown> = {}): PeerIdentity => ({
  method: issuer ? 'k8s-sa' : 'jwt-svid',
  id: parseSpiffeId(id),
  issuer,
  subject: id,
  claims,
});
const oidc = (issuer: string, claims: Record<string, unknown> = {}): PeerIdentity => ({
  method: 'oidc',
  issuer,
  subject: typeof claims.sub === 'string' ? claims.sub : 'someone',
  claims,
});
const key = (name: string, ...routes: string[]): PeerIdentity => ({
  method: 'api-key',
  name,
  ...(routes.length > 0 ? { routes: routes.map((r) => parseRoute(r) as KeyRoute) } : {}),
});

const ROUTER = 'spiffe://example.org/ns/prod/sa/router';
const allowAll = (name = 'all'): Rule => ({ name, effect: 'allow' });

interface Case {
  name: string;
  rules: Rule[];
  caller: PeerIdentity;
  request: [method: string, path: string];
  expected: Decision;
}

const allow = (rule: string): Decision => ({ allow: true, rule });
const deny = (reason: string, rule?: string): Decision =>
  (rule === undefined ? { allow: false, reason } : { allow: false, reason, rule }) as Decision;

const cases: Case[] = [
  // order and default
  {
    name: 'no rule matches: default deny',
    rules: [{ name: 'a', effect: 'allow', path: { exact: '/a' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/b'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'a rule without conditions matches anything',
    rules: [allowAll()],
    caller: key('k'),
    request: ['PATCH', '/x/y'],
    expected: allow('all'),
  },
  {
    name: 'first match wins: deny before allow',
    rules: [{ name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } }, allowAll()],
    caller: mtls(ROUTER),
    request: ['GET', '/admin/users'],
    expected: deny('rule_denied', 'no-admin'),
  },
  {
    name: 'first match wins: the deny does not apply elsewhere',
    rules: [{ name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } }, allowAll()],
    caller: mtls(ROUTER),
    request: ['GET', '/users'],
    expected: allow('all'),
  },
  {
    name: 'first match wins: allow before deny',
    rules: [allowAll(), { name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/admin'],
    expected: allow('all'),
  },
  {
    name: 'the first of two matching allows is reported',
    rules: [allowAll('one'), allowAll('two')],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: allow('one'),
  },
  // methods
  {
    name: 'method listed',
    rules: [{ name: 'r', effect: 'allow', methods: ['GET', 'HEAD'] }],
    caller: mtls(ROUTER),
    request: ['HEAD', '/'],
    expected: allow('r'),
  },
  {
    name: 'method not listed',
    rules: [{ name: 'r', effect: 'allow', methods: ['GET'] }],
    caller: mtls(ROUTER),
    request: ['POST', '/'],
    expected: deny('no_matching_rule'),
  },
  // A rule for GET covers HEAD (servers run the GET handler for HEAD), for allow and deny alike.
  {
    name: 'GET covers HEAD: an allow of GET admits HEAD',
    rules: [{ name: 'r', effect: 'allow', methods: ['GET'] }],
    caller: mtls(ROUTER),
    request: ['HEAD', '/'],
    expected: allow('r'),
  },
  {
    name: 'GET covers HEAD: an allow of GET still refuses POST',
    rules: [{ name: 'r', effect: 'allow', methods: ['GET'] }],
    caller: mtls(ROUTER),
    request: ['POST', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'GET covers HEAD: a deny of GET /admin denies HEAD /admin',
    rules: [{ name: 'no-admin', effect: 'deny', methods: ['GET'], path: { exact: '/admin' } }, allowAll()],
    caller: mtls(ROUTER),
    request: ['HEAD', '/admin'],
    expected: deny('rule_denied', 'no-admin'),
  },
  {
    name: 'GET covers HEAD: a deny of GET /admin still lets POST /admin through to later rules',
    rules: [{ name: 'no-admin', effect: 'deny', methods: ['GET'], path: { exact: '/admin' } }, allowAll()],
    caller: mtls(ROUTER),
    request: ['POST', '/admin'],
    expected: allow('all'),
  },
  {
    name: 'HEAD does not cover GET',
    rules: [{ name: 'r', effect: 'allow', methods: ['HEAD'] }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'method on a deny rule',
    rules: [{ name: 'no-delete', effect: 'deny', methods: ['DELETE'] }, allowAll()],
    caller: mtls(ROUTER),
    request: ['DELETE', '/x'],
    expected: deny('rule_denied', 'no-delete'),
  },
  // paths
  {
    name: 'exact path',
    rules: [{ name: 'r', effect: 'allow', path: { exact: '/healthz' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/healthz'],
    expected: allow('r'),
  },
  {
    name: 'exact path is not a prefix',
    rules: [{ name: 'r', effect: 'allow', path: { exact: '/healthz' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/healthz/x'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'prefix on a segment boundary',
    rules: [{ name: 'r', effect: 'allow', path: { prefix: '/api' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/api/v1'],
    expected: allow('r'),
  },
  {
    name: 'prefix /api does not match /apix',
    rules: [{ name: 'r', effect: 'allow', path: { prefix: '/api' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/apix'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'prefix /api matches /api itself',
    rules: [{ name: 'r', effect: 'allow', path: { prefix: '/api' } }],
    caller: mtls(ROUTER),
    request: ['GET', '/api'],
    expected: allow('r'),
  },
  {
    name: 'glob * is one segment',
    rules: [{ name: 'r', effect: 'allow', path: { glob: '/sandboxes/*' } }],
    caller: mtls(ROUTER),
    request: ['DELETE', '/sandboxes/s1'],
    expected: allow('r'),
  },
  {
    name: 'glob * is not two segments',
    rules: [{ name: 'r', effect: 'allow', path: { glob: '/sandboxes/*' } }],
    caller: mtls(ROUTER),
    request: ['DELETE', '/sandboxes/s1/files'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'glob ** is any depth',
    rules: [{ name: 'r', effect: 'allow', path: { glob: '/sandboxes/**' } }],
    caller: mtls(ROUTER),
    request: ['DELETE', '/sandboxes/s1/files/f'],
    expected: allow('r'),
  },
  // ids, with --allow syntax
  {
    name: 'ids: exact',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: [ROUTER] } }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: exact, other ID',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: [ROUTER] } }],
    caller: mtls('spiffe://example.org/ns/prod/sa/routerx'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'ids: trust domain',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org'] } }],
    caller: mtls('spiffe://example.org/a/b'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: trust domain is exact',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org'] } }],
    caller: mtls('spiffe://evil-example.org/a'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'ids: * is one segment',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org/ns/*/sa/router'] } }],
    caller: mtls('spiffe://example.org/ns/dev/sa/router'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: * is not two segments',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org/ns/*'] } }],
    caller: mtls('spiffe://example.org/ns/dev/sa/router'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'ids: trailing **',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org/ns/prod/**'] } }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: one of several',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://partner.org/x', ROUTER] } }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: a JWT caller with a SPIFFE ID',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: [ROUTER] } }],
    caller: jwt(ROUTER),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'ids: an OIDC caller has no SPIFFE ID',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org'] } }],
    caller: oidc('keycloak'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'ids: an API key caller has no SPIFFE ID',
    rules: [{ name: 'r', effect: 'allow', callers: { ids: ['spiffe://example.org'] } }],
    caller: key('spiffe://example.org/x'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  // issuers
  {
    name: 'issuers: an OIDC token of that issuer',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['keycloak'] } }],
    caller: oidc('keycloak'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'issuers: another issuer',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['keycloak'] } }],
    caller: oidc('github'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'issuers: a Kubernetes token (jwt with issuer)',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['k8s'] } }],
    caller: jwt('spiffe://cluster.local/ns/a/sa/b', 'k8s'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'issuers: a JWT-SVID has no issuer name',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['k8s'] } }],
    caller: jwt(ROUTER),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'issuers: an mTLS caller has no issuer',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['keycloak'] } }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'issuers: an API key named like the issuer',
    rules: [{ name: 'r', effect: 'allow', callers: { issuers: ['keycloak'] } }],
    caller: key('keycloak'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  // api_keys
  {
    name: 'api_keys: that name',
    rules: [{ name: 'r', effect: 'allow', callers: { api_keys: ['partner-x'] } }],
    caller: key('partner-x'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'api_keys: another name',
    rules: [{ name: 'r', effect: 'allow', callers: { api_keys: ['partner-x'] } }],
    caller: key('partner-y'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'api_keys: an OIDC subject of that name',
    rules: [{ name: 'r', effect: 'allow', callers: { api_keys: ['partner-x'] } }],
    caller: oidc('keycloak', { sub: 'partner-x' }),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  // auth
  {
    name: 'auth: api_key',
    rules: [{ name: 'r', effect: 'allow', callers: { auth: ['api_key'] } }],
    caller: key('k'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'auth: mtls only, a JWT-SVID of the same ID',
    rules: [{ name: 'r', effect: 'allow', callers: { auth: ['mtls'], ids: [ROUTER] } }],
    caller: jwt(ROUTER),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'auth: jwt is not oidc',
    rules: [{ name: 'r', effect: 'allow', callers: { auth: ['jwt'] } }],
    caller: oidc('keycloak'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'auth: oidc',
    rules: [{ name: 'r', effect: 'allow', callers: { auth: ['oidc'] } }],
    caller: oidc('keycloak'),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'all caller conditions must hold',
    rules: [
      { name: 'r', effect: 'allow', callers: { ids: ['spiffe://cluster.local'], issuers: ['k8s'], auth: ['jwt'] } },
    ],
    caller: jwt('spiffe://cluster.local/ns/a/sa/b', 'other'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  // claims
  {
    name: 'claims: contains a role in a nested array',
    rules: [
      {
        name: 'r',
        effect: 'allow',
        callers: { issuers: ['keycloak'], claims: [{ claim: 'realm_access.roles', contains: 'admin' }] },
      },
    ],
    caller: oidc('keycloak', { realm_access: { roles: ['user', 'admin'] } }),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'claims: a missing role is claim_mismatch',
    rules: [
      {
        name: 'r',
        effect: 'allow',
        callers: { issuers: ['keycloak'], claims: [{ claim: 'realm_access.roles', contains: 'admin' }] },
      },
    ],
    caller: oidc('keycloak', { realm_access: { roles: ['user'] } }),
    request: ['GET', '/'],
    expected: deny('claim_mismatch'),
  },
  {
    name: 'claims: every condition must hold',
    rules: [
      {
        name: 'r',
        effect: 'allow',
        callers: {
          claims: [
            { claim: 'repository', equals: 'org/a' },
            { claim: 'ref', equals: 'refs/heads/main' },
          ],
        },
      },
    ],
    caller: oidc('github', { repository: 'org/a', ref: 'refs/heads/dev' }),
    request: ['POST', '/deploy'],
    expected: deny('claim_mismatch'),
  },
  {
    name: 'claims: equals is strict ("1" is not 1)',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'level', equals: 1 }] } }],
    caller: oidc('keycloak', { level: '1' }),
    request: ['GET', '/'],
    expected: deny('claim_mismatch'),
  },
  {
    name: 'claims: in',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'tenant', in: ['a', 'b'] }] } }],
    caller: oidc('keycloak', { tenant: 'b' }),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'claims: a scope string contains',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'scope', contains: 'orders:write' }] } }],
    caller: oidc('keycloak', { scope: 'openid orders:write' }),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'claims: __proto__ resolves to nothing',
    rules: [
      { name: 'r', effect: 'allow', callers: { claims: [{ claim: '__proto__.constructor.name', equals: 'Object' }] } },
    ],
    caller: oidc('keycloak', { sub: 'a' }),
    request: ['GET', '/'],
    expected: deny('claim_mismatch'),
  },
  {
    name: 'claims: constructor resolves to nothing',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'constructor.name', equals: 'Object' }] } }],
    caller: oidc('keycloak', { sub: 'a' }),
    request: ['GET', '/'],
    expected: deny('claim_mismatch'),
  },
  {
    name: 'claims: a JWT-SVID caller has claims too',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'tier', equals: 'gold' }] } }],
    caller: jwt(ROUTER, undefined, { tier: 'gold' }),
    request: ['GET', '/'],
    expected: allow('r'),
  },
  {
    name: 'claims: an mTLS caller has no claims: no match, not claim_mismatch',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'sub', equals: 'x' }] } }],
    caller: mtls(ROUTER),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'claims: an API key caller has no claims',
    rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'sub', equals: 'k' }] } }],
    caller: key('k'),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'claims: another issuer is no match, not a claim mismatch',
    rules: [
      { name: 'r', effect: 'allow', callers: { issuers: ['keycloak'], claims: [{ claim: 'sub', equals: 'x' }] } },
    ],
    caller: oidc('github', { sub: 'y' }),
    request: ['GET', '/'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'claims: a rule for another path is no claim mismatch',
    rules: [
      { name: 'r', effect: 'allow', path: { exact: '/deploy' }, callers: { claims: [{ claim: 'sub', equals: 'x' }] } },
    ],
    caller: oidc('keycloak', { sub: 'y' }),
    request: ['GET', '/status'],
    expected: deny('no_matching_rule'),
  },
  {
    name: 'claims: a failed claim does not stop later rules from allowing',
    rules: [
      { name: 'admins', effect: 'allow', callers: { claims: [{ claim: 'role', equals: 'admin' }] } },
      { name: 'readers', effect: 'allow', methods: ['GET'] },
    ],
    caller: oidc('keycloak', { role: 'user' }),
    request: ['GET', '/'],
    expected: allow('readers'),
  },
  {
    name: 'claims: a later deny rule wins over an earlier claim mismatch',
    rules: [
      { name: 'admins', effect: 'allow', callers: { claims: [{ claim: 'role', equals: 'admin' }] } },
      { name: 'nobody-else', effect: 'deny' },
    ],
    caller: oidc('keycloak', { role: 'user' }),
    request: ['GET', '/'],
    expected: deny('rule_denied', 'nobody-else'),
  },
  {
    name: 'claims: a deny rule that does not apply is not a "claim mismatch"',
    rules: [
      { name: 'banned', effect: 'deny', callers: { claims: [{ claim: 'banned', equals: true }] } },
      { name: 'deploy', effect: 'allow', path: { exact: '/deploy' } },
    ],
    caller: oidc('keycloak', { banned: false }),
    request: ['GET', '/other'],
    expected: deny('no_matching_rule'),
  },
];

describe('rules in order, first match wins, default deny', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const rules = compile(...c.rules);
    expect(evaluateRules(rules, c.caller, { method: c.request[0], path: c.request[1] }, 0)).toEqual(c.expected);
  });
});

describe('rate limits, per rule and per caller', () => {
  it('a rate-limited allow says rate_limited, names the rule and the seconds to wait', () => {
    const rules = compile({ name: 'slow', effect: 'allow', rate_limit: { requests: 1, per: '10s', burst: 2 } });
    const caller = mtls(ROUTER);
    const at = (now: number) => evaluateRules(rules, caller, { method: 'GET', path: '/' }, now);
    expect(at(0)).toEqual(allow('slow'));
    expect(at(0)).toEqual(allow('slow'));
    expect(at(0)).toEqual({ allow: false, reason: 'rate_limited', rule: 'slow', retryAfterSeconds: 10 });
    expect(at(2500)).toEqual({ allow: false, reason: 'rate_limited', rule: 'slow', retryAfterSeconds: 8 });
    expect(at(10_000)).toEqual(allow('slow'));
  });

  it('retryAfterSeconds is at least 1, even when the next token is milliseconds away', () => {
    const rules = compile({ name: 'fast', effect: 'allow', rate_limit: { requests: 100, per: '1s', burst: 1 } });
    const caller = key('script');
    expect(atOnce(evaluateRules(rules, caller, { method: 'GET', path: '/' }, 0)).allow).toBe(true);
    expect(evaluateRules(rules, caller, { method: 'GET', path: '/' }, 0)).toMatchObject({ retryAfterSeconds: 1 });
  });

  it('each caller has its own bucket: API key, SPIFFE ID, issuer and subject', () => {
    const rules = compile({ name: 'r', effect: 'allow', rate_limit: { requests: 1, per: '1m' } });
    const callers = [
      key('a'),
      key('b'),
      mtls(ROUTER),
      mtls(`${ROUTER}-2`),
      oidc('keycloak', { sub: 'alice' }),
      oidc('keycloak', { sub: 'bob' }),
      oidc('github', { sub: 'alice' }),
    ];
    for (const caller of callers)
      expect(atOnce(evaluateRules(rules, caller, { method: 'GET', path: '/' }, 0)).allow).toBe(true);
    for (const caller of callers) {
      expect(evaluateRules(rules, caller, { method: 'GET', path: '/' }, 1)).toMatchObject({ reason: 'rate_limited' });
    }
  });

  it('only requests the rule matches are counted; a rate-limited caller does not fall through to later rules', () => {
    const rules = compile(
      { name: 'invoke', effect: 'allow', methods: ['POST'], rate_limit: { requests: 1, per: '1m' } },
      { name: 'everything', effect: 'allow' },
    );
    const caller = key('a');
    const req = (method: string) => evaluateRules(rules, caller, { method, path: '/invoke' }, 0);
    for (let i = 0; i < 5; i++) expect(req('GET')).toEqual(allow('everything'));
    expect(req('POST')).toEqual(allow('invoke'));
    expect(req('POST')).toMatchObject({ allow: false, reason: 'rate_limited', rule: 'invoke' });
  });

  it('each rule has its own limiter', () => {
    const rules = compile(
      { name: 'a', effect: 'allow', path: { exact: '/a' }, rate_limit: { requests: 1, per: '1m' } },
      { name: 'b', effect: 'allow', path: { exact: '/b' }, rate_limit: { requests: 1, per: '1m' } },
    );
    const caller = key('k');
    expect(atOnce(evaluateRules(rules, caller, { method: 'GET', path: '/a' }, 0)).allow).toBe(true);
    expect(atOnce(evaluateRules(rules, caller, { method: 'GET', path: '/b' }, 0)).allow).toBe(true);
    expect(atOnce(evaluateRules(rules, caller, { method: 'GET', path: '/a' }, 0)).allow).toBe(false);
  });
});

describe('the file authorizer sees the request target in normal form', () => {
  const policy = {
    rules: compile(
      { name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } },
      { name: 'health', effect: 'allow', path: { exact: '/healthz' } },
      { name: 'reports', effect: 'allow', path: { prefix: '/reports' }, callers: { api_keys: ['limited', 'free'] } },
    ),
  };
  const authorizer = createFileAuthorizer(() => policy);

  const cases: [target: string, caller: PeerIdentity, expected: Decision][] = [
    ['/admin', mtls(ROUTER), deny('rule_denied', 'no-admin')],
    ['/admin/', mtls(ROUTER), deny('rule_denied', 'no-admin')],
    ['/admin/users?x=1', mtls(ROUTER), deny('rule_denied', 'no-admin')],
    // encodings of the same path are the same path
    ['/%61dmin', mtls(ROUTER), deny('rule_denied', 'no-admin')],
    ['/%61%64%6D%69%6E/users', mtls(ROUTER), deny('rule_denied', 'no-admin')],
    ['/%68ealthz', mtls(ROUTER), allow('health')],
    ['/healthz?probe=1', mtls(ROUTER), allow('health')],
    // what has no normal form never reaches a rule
    ['/healthz/../admin', mtls(ROUTER), deny('path_not_normalized')],
    ['/healthz/%2e%2e/admin', mtls(ROUTER), deny('path_not_normalized')],
    ['/healthz%2F..%2Fadmin', mtls(ROUTER), deny('path_not_normalized')],
    ['//admin', mtls(ROUTER), deny('path_not_normalized')],
    ['/admin\\x', mtls(ROUTER), deny('path_not_normalized')],
    ['http://localhost/healthz', mtls(ROUTER), deny('path_not_normalized')],
    ['*', mtls(ROUTER), deny('path_not_normalized')],
    // an API key's own route limits apply before the rules
    ['/reports/daily', key('free'), allow('reports')],
    ['/reports/daily', key('limited', 'GET:/reports/daily'), allow('reports')],
    ['/reports/monthly', key('limited', 'GET:/reports/daily'), deny('key_route_denied')],
    ['/reports/monthly', key('limited', 'GET:/reports/daily', '*:/reports/*'), allow('reports')],
    ['/healthz', key('limited', 'GET:/reports/**'), deny('key_route_denied')],
    ['/reports/x/../../admin', key('limited', 'GET:/reports/**'), deny('path_not_normalized')],
  ];
  it.each(cases)('GET %s as %o', (target, caller, expected) => {
    expect(authorizer.decide(caller, 'GET', target)).toEqual(expected);
  });

  it('a key route names its method', () => {
    expect(authorizer.decide(key('limited', 'GET:/reports/**'), 'POST', '/reports/x')).toEqual(
      deny('key_route_denied'),
    );
    expect(authorizer.decide(key('limited', '*:/reports/**'), 'POST', '/reports/x')).toEqual(allow('reports'));
  });

  it('a key route for GET covers HEAD, and only HEAD', () => {
    expect(authorizer.decide(key('limited', 'GET:/reports/**'), 'HEAD', '/reports/x')).toEqual(allow('reports'));
    expect(authorizer.decide(key('limited', 'HEAD:/reports/**'), 'GET', '/reports/x')).toEqual(
      deny('key_route_denied'),
    );
    expect(authorizer.decide(key('limited', 'GET:/reports/**'), 'HEAD', '/healthz')).toEqual(deny('key_route_denied'));
  });

  it('a deny of GET is a deny of HEAD through the file authorizer', () => {
    const headPolicy = {
      rules: compile(
        { name: 'no-admin-reads', effect: 'deny', methods: ['GET'], path: { prefix: '/admin' } },
        allowAll(),
      ),
    };
    const head = createFileAuthorizer(() => headPolicy);
    expect(head.decide(mtls(ROUTER), 'HEAD', '/admin')).toEqual(deny('rule_denied', 'no-admin-reads'));
    expect(head.decide(mtls(ROUTER), 'HEAD', '/%61dmin/x?y')).toEqual(deny('rule_denied', 'no-admin-reads'));
    expect(head.decide(mtls(ROUTER), 'HEAD', '/other')).toEqual(allow('all'));
  });

  it('decides per request, and follows the policy in force', () => {
    let current = policy;
    const swapping = createFileAuthorizer(() => current);
    expect(swapping.perRequest).toBe(true);
    expect(swapping.decide(mtls(ROUTER), 'GET', '/other')).toEqual(deny('no_matching_rule'));
    current = { rules: compile(allowAll('now-open')) };
    expect(swapping.decide(mtls(ROUTER), 'GET', '/other')).toEqual(allow('now-open'));
  });
});

describe('the allow flags: who, on any path', () => {
  it('--allow rules, --allow-issuer, default deny', () => {
    const authorizer = createFlagAuthorizer({
      allow: ['spiffe://example.org/ns/prod/**'],
      allowAny: false,
      allowIssuers: ['keycloak'],
    });
    expect(authorizer.perRequest).toBe(false);
    expect(authorizer.decide(mtls(ROUTER), 'DELETE', '/anything')).toEqual(allow('spiffe://example.org/ns/prod/**'));
    expect(authorizer.decide(mtls('spiffe://example.org/ns/dev/x'), 'GET', '/')).toEqual(deny('no_matching_rule'));
    expect(authorizer.decide(oidc('keycloak'), 'GET', '/')).toEqual(allow('--allow-issuer keycloak'));
    expect(authorizer.decide(oidc('github'), 'GET', '/')).toEqual(deny('no_matching_rule'));
    expect(authorizer.decide(key('k'), 'GET', '/')).toEqual(deny('no_matching_rule'));
  });

  it('--allow-any admits every caller, within an API key’s own routes', () => {
    const authorizer = createFlagAuthorizer({ allow: [], allowAny: true });
    expect(authorizer.decide(key('k'), 'GET', '/x')).toEqual(allow('--allow-any'));
    expect(authorizer.decide(key('k', 'GET:/status'), 'GET', '/status')).toEqual(allow('--allow-any'));
    expect(authorizer.decide(key('k', 'GET:/status'), 'GET', '/other')).toEqual(deny('key_route_denied'));
    expect(authorizer.decide(key('k', 'GET:/status'), 'GET', '/status/../other')).toEqual(deny('key_route_denied'));
  });
});
