// The policy file's claim paths (quoted names that hold dots, in rules and in `claim_headers:`), its
// `claim_headers:` mapping and `callers.certificate`: what compiles, and every mistake refused with
// ERR_POLICY_INVALID naming the place and how to write it.
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { evaluateRules } from '../../src/authz/rule-engine.js';
import { claimHeaderFields } from '../../src/proxy/claim-headers.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { policyRefusal } from '../helpers/authz.js';

const LABEL = '--policy-file /etc/sidecar/policy.yaml';

const refusal = (text: string) => policyRefusal(text, LABEL);

const oidc = (claims: Record<string, unknown>): PeerIdentity => ({
  method: 'oidc',
  issuer: 'keycloak',
  subject: 'someone',
  claims,
});

function decide(text: string, caller: PeerIdentity) {
  const decision = evaluateRules(parsePolicy(text, LABEL).rules, caller, { method: 'GET', path: '/' }, 0);
  if (decision instanceof Promise) throw new Error('a local decision came as a promise');
  return decision;
}

describe('claim paths in rules', () => {
  const namespaceRule = [
    'version: 1',
    'rules:',
    '  - name: prod',
    '    effect: allow',
    '    callers:',
    '      claims:',
    `        - { claim: '"kubernetes.io".namespace', equals: prod }`,
  ].join('\n');

  it('a quoted name with a dot is one claim: "kubernetes.io".namespace equals prod', () => {
    expect(decide(namespaceRule, oidc({ 'kubernetes.io': { namespace: 'prod' } }))).toEqual({
      allow: true,
      rule: 'prod',
    });
    expect(decide(namespaceRule, oidc({ 'kubernetes.io': { namespace: 'dev' } }))).toEqual({
      allow: false,
      reason: 'claim_mismatch',
    });
    // the same words nested are another claim
    expect(decide(namespaceRule, oidc({ kubernetes: { io: { namespace: 'prod' } } }))).toMatchObject({ allow: false });
  });

  it('the condition keeps the text as written and its parsed keys', () => {
    const { rules } = parsePolicy(namespaceRule, LABEL);
    expect(rules[0].callers?.claims).toEqual([
      { claim: '"kubernetes.io".namespace', path: ['kubernetes.io', 'namespace'], equals: 'prod' },
    ]);
    const json = JSON.stringify({
      version: 1,
      rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim: 'realm_access.roles', contains: 'a' }] } }],
    });
    expect(parsePolicy(json, LABEL).rules[0].callers?.claims).toEqual([
      { claim: 'realm_access.roles', path: ['realm_access', 'roles'], contains: 'a' },
    ]);
  });

  it('__proto__ is a name like any other and never reaches Object.prototype', () => {
    const text = JSON.stringify({
      version: 1,
      rules: [
        {
          name: 'r',
          effect: 'allow',
          callers: { claims: [{ claim: '__proto__.constructor.name', equals: 'Object' }] },
        },
      ],
    });
    expect(decide(text, oidc({ sub: 'a' }))).toEqual({ allow: false, reason: 'claim_mismatch' });
  });

  const bad: [what: string, claim: unknown, message: string][] = [
    ['a number', 7, 'claims[0].claim: expected a claim name or a dotted path such as realm_access.roles'],
    ['empty', '', 'claims[0].claim: is empty; write claim names separated by dots'],
    [
      'an unclosed quote',
      '"kubernetes.io.namespace',
      'claims[0].claim: has a quote at character 1 that is never closed',
    ],
    ['text after a quoted name', '"kubernetes.io"namespace', 'claims[0].claim: needs a dot after the quoted name'],
    ['a quote inside a name', 'kubernetes"io', 'claims[0].claim: has a quote inside a name'],
    ['a backslash in quotes', '"a\\b"', 'claims[0].claim: has a backslash at character 3 in a quoted name'],
    ['17 names', Array(17).fill('a').join('.'), 'claims[0].claim: has more than 16 names'],
    ['257 characters', 'a'.repeat(257), 'claims[0].claim: is longer than 256 characters'],
  ];
  it.each(bad)('refuses a claim path: %s', (_what, claim, message) => {
    const text = JSON.stringify({
      version: 1,
      rules: [{ name: 'r', effect: 'allow', callers: { claims: [{ claim, equals: 'x' }] } }],
    });
    const err = refusal(text);
    expect(err.message).toContain(`${LABEL}: rules[0].callers.${message}`);
  });
});

describe('claim_headers', () => {
  const policy = (claimHeaders: string) =>
    ['version: 1', claimHeaders, 'rules:', '  - { name: all, effect: allow }'].join('\n');

  it('compiles in the order written; a policy without it has none', () => {
    const { claimHeaders } = parsePolicy(
      policy(
        [
          'claim_headers:',
          '  realm_access.roles: X-Roles',
          `  '"kubernetes.io".namespace': x-k8s-namespace`,
          '  sub: x-subject',
        ].join('\n'),
      ),
      LABEL,
    );
    expect(claimHeaders).toEqual([
      { text: 'realm_access.roles', path: ['realm_access', 'roles'], header: 'x-roles' },
      { text: '"kubernetes.io".namespace', path: ['kubernetes.io', 'namespace'], header: 'x-k8s-namespace' },
      { text: 'sub', path: ['sub'], header: 'x-subject' },
    ]);
    expect(parsePolicy(policy(''), LABEL).claimHeaders).toBeUndefined();
  });

  it('JSON works the same, and the mappings drive the request headers', () => {
    const text = JSON.stringify({
      version: 1,
      claim_headers: { 'realm_access.roles': 'x-roles', '"kubernetes.io".namespace': 'x-ns' },
      rules: [{ name: 'all', effect: 'allow' }],
    });
    const { claimHeaders } = parsePolicy(text, LABEL);
    const claims = { realm_access: { roles: ['admin', 'a,b'] }, 'kubernetes.io': { namespace: 'prod' } };
    expect(claimHeaderFields(claims, claimHeaders ?? [])).toEqual(['x-roles', 'admin, "a,b"', 'x-ns', 'prod']);
  });

  it('a __proto__ key is an ordinary entry, looked up as an own claim only', () => {
    const { claimHeaders } = parsePolicy(policy('claim_headers:\n  __proto__: x-proto'), LABEL);
    expect(claimHeaders).toEqual([{ text: '__proto__', path: ['__proto__'], header: 'x-proto' }]);
    expect(claimHeaderFields({ sub: 'a' }, claimHeaders ?? [])).toEqual([]);
  });

  const invalid: [what: string, yaml: string, message: string][] = [
    ['a list', 'claim_headers: [sub]', 'claim_headers: expected a mapping from claim path to header name'],
    ['a string', 'claim_headers: sub=x-sub', 'claim_headers: expected a mapping from claim path to header name'],
    ['empty', 'claim_headers: {}', 'claim_headers: is empty; leave claim_headers out'],
    ['a header that is not text', 'claim_headers: { sub: [x-sub] }', 'claim_headers: sub: expected a header name'],
    ['a header left out', 'claim_headers: { sub: }', 'claim_headers: sub: expected a header name'],
    [
      'a bad claim path',
      'claim_headers: { a..b: x-a }',
      'claim_headers: a..b: the claim has an empty name at character 3',
    ],
    [
      'an unclosed quote',
      `claim_headers: { '"kubernetes.io.namespace': x-ns }`,
      'claim_headers: "kubernetes.io.namespace: the claim has a quote at character 1 that is never closed',
    ],
    ['a header with a space', `claim_headers: { sub: 'x sub' }`, 'claim_headers: sub: "x sub" is not a header name'],
    ['a pseudo-header', `claim_headers: { sub: ':path' }`, 'claim_headers: sub: :path is a pseudo-header'],
    ['host', 'claim_headers: { sub: Host }', 'claim_headers: sub: header host frames or routes the request'],
    [
      'authorization',
      'claim_headers: { sub: authorization }',
      'claim_headers: sub: header authorization carries a credential',
    ],
    [
      'a proxy- header',
      'claim_headers: { sub: proxy-authorization }',
      'claim_headers: sub: header proxy-authorization',
    ],
    [
      'two claims to one header',
      'claim_headers: { sub: x-who, azp: X-Who }',
      'claim_headers: azp: header x-who already carries claim sub; map each header once',
    ],
  ];
  it.each(invalid)('refuses %s, naming the entry and its line', (_what, yaml, message) => {
    const err = refusal(policy(yaml));
    expect(err.message).toContain(`${LABEL}: ${message}`);
    expect(err.message).toMatch(/\(line 2, column \d+\)$/);
  });

  it('a duplicate key is refused by the YAML reader', () => {
    expect(refusal(policy('claim_headers:\n  sub: x-a\n  sub: x-b')).message).toMatch(/unique/i);
  });
});

describe('callers.certificate', () => {
  const rule = (callers: unknown) => JSON.stringify({ version: 1, rules: [{ name: 'r', effect: 'allow', callers }] });

  it('compiles ids in --allow syntax into a matcher', () => {
    const { rules } = parsePolicy(
      rule({
        certificate: { ids: ['spiffe://example.org/ns/prod/sa/gateway', 'spiffe://other.org/**'] },
        issuers: ['k'],
      }),
      LABEL,
    );
    const certificate = rules[0].callers?.certificate;
    expect(certificate?.(parseSpiffeId('spiffe://example.org/ns/prod/sa/gateway'))).toBe(
      'spiffe://example.org/ns/prod/sa/gateway',
    );
    expect(certificate?.(parseSpiffeId('spiffe://other.org/a/b'))).toBe('spiffe://other.org/**');
    expect(certificate?.(parseSpiffeId('spiffe://example.org/ns/dev/sa/gateway'))).toBeUndefined();
    expect(rules[0].callers?.ids).toBeUndefined();
    expect([...(rules[0].callers?.issuers ?? [])]).toEqual(['k']);
  });

  it('compiles from YAML, beside ids', () => {
    const text = [
      'version: 1',
      'rules:',
      '  - name: r',
      '    effect: allow',
      '    callers:',
      '      ids: [spiffe://example.org/user/*]',
      '      certificate:',
      '        ids: [spiffe://example.org/ns/prod/sa/gateway]',
    ].join('\n');
    const callers = parsePolicy(text, LABEL).rules[0].callers;
    expect(callers?.ids?.(parseSpiffeId('spiffe://example.org/user/a'))).toBe('spiffe://example.org/user/*');
    expect(callers?.certificate?.(parseSpiffeId('spiffe://example.org/user/a'))).toBeUndefined();
  });

  const invalid: [what: string, certificate: unknown, message: string][] = [
    ['a list', ['spiffe://example.org/a'], 'rules[0].callers.certificate: expected { ids: [SPIFFE ID rules] }'],
    ['a string', 'spiffe://example.org/a', 'rules[0].callers.certificate: expected { ids: [SPIFFE ID rules] }'],
    ['empty', {}, 'rules[0].callers.certificate: expected { ids: [SPIFFE ID rules] }'],
    [
      'an unknown key',
      { ids: ['spiffe://example.org/a'], issuers: ['k'] },
      'rules[0].callers.certificate: unknown key "issuers"; expected one of ids',
    ],
    ['empty ids', { ids: [] }, 'rules[0].callers.certificate.ids: expected a non-empty list'],
    [
      'ids as a string',
      { ids: 'spiffe://example.org/a' },
      'rules[0].callers.certificate.ids: expected a non-empty list',
    ],
    ['an empty id', { ids: [''] }, 'rules[0].callers.certificate.ids[0]: expected a non-empty string'],
    ['not a SPIFFE ID', { ids: ['example.org/a'] }, 'rules[0].callers.certificate.ids: invalid allow rule'],
    [
      'a partial wildcard',
      { ids: ['spiffe://example.org/ns/prod*'] },
      'rules[0].callers.certificate.ids: invalid allow rule',
    ],
  ];
  it.each(invalid)('refuses %s', (_what, certificate, message) => {
    expect(refusal(rule({ certificate })).message).toContain(`${LABEL}: ${message}`);
  });

  it('an unknown callers key names certificate among the expected ones', () => {
    expect(refusal(rule({ certificates: { ids: ['spiffe://example.org'] } })).message).toContain(
      'unknown key "certificates"; expected one of ids, certificate, issuers, api_keys, auth, claims',
    );
  });
});
