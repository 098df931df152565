// The policy file is validated as a whole: every mistake is ERR_POLICY_INVALID naming the file and the
// place (`rules[1].path.glob`), and an unknown key anywhere is an error, never ignored.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { SidecarError } from '../../src/errors.js';

const LABEL = '--policy-file /etc/sidecar/policy.yaml';
const EXAMPLES = new URL('../../examples/policies/', import.meta.url);

const ok = (extra: Record<string, unknown> = {}) => ({ name: 'ok', effect: 'allow', ...extra });
const doc = (...rules: unknown[]) => ({ version: 1, rules });

function refusal(text: string): SidecarError {
  try {
    parsePolicy(text, LABEL);
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error('the policy was accepted');
}

/** [what is wrong, the document (object as JSON, or YAML text), where the message must point] */
const invalid: [string, unknown, string][] = [
  // unknown keys, at every level
  ['unknown top-level key', { ...doc(ok()), default: 'allow' }, 'top level: unknown key "default"'],
  ['unknown rule key', doc(ok({ paths: { exact: '/a' } })), 'rules[0]: unknown key "paths"'],
  ['unknown rule key in a later rule', doc(ok(), ok({ name: 'b', Effect: 'deny' })), 'rules[1]: unknown key "Effect"'],
  ['unknown callers key', doc(ok({ callers: { issuer: ['x'] } })), 'rules[0].callers: unknown key "issuer"'],
  [
    'unknown claim operator',
    doc(ok({ callers: { claims: [{ claim: 'sub', matches: 'a.*' }] } })),
    'rules[0].callers.claims[0]: unknown key "matches"',
  ],
  [
    'unknown rate_limit key',
    doc(ok({ rate_limit: { requests: 1, per: '1s', burts: 2 } })),
    'rules[0].rate_limit: unknown key "burts"',
  ],
  ['unknown path kind', doc(ok({ path: { regex: '^/a' } })), 'rules[0].path: unknown key "regex"'],
  // the document
  ['not a mapping: a list', [ok()], 'top level: expected a mapping'],
  ['not a mapping: a string', 'just text', 'top level: expected a mapping'],
  ['empty file', '', 'top level: expected a mapping'],
  ['missing version', { rules: [ok()] }, 'version: expected 1'],
  ['version 2', { version: 2, rules: [ok()] }, 'version: expected 1'],
  ['version as a string', { version: '1', rules: [ok()] }, 'version: expected 1'],
  ['missing rules', { version: 1 }, 'rules: expected a non-empty list'],
  ['empty rules', { version: 1, rules: [] }, 'rules: expected a non-empty list'],
  ['rules as a mapping', { version: 1, rules: { a: ok() } }, 'rules: expected a non-empty list'],
  ['a rule that is not a mapping', doc('allow'), 'rules[0]: expected a mapping'],
  // name
  ['missing name', doc({ effect: 'allow' }), 'rules[0].name'],
  ['name with a space', doc(ok({ name: 'my rule' })), 'rules[0].name'],
  ['name starting with a dash', doc(ok({ name: '-a' })), 'rules[0].name'],
  ['name of 64 characters', doc(ok({ name: 'a'.repeat(64) })), 'rules[0].name'],
  ['name as a number', doc(ok({ name: 7 })), 'rules[0].name'],
  ['duplicate names', doc(ok({ name: 'a' }), ok({ name: 'a' })), 'rules[1].name: "a" is used by an earlier rule'],
  ['description not text', doc(ok({ description: ['x'] })), 'rules[0].description'],
  // effect
  ['missing effect', doc({ name: 'a' }), 'rules[0].effect: expected allow or deny'],
  ['effect permit', doc(ok({ effect: 'permit' })), 'rules[0].effect: expected allow or deny'],
  ['effect in capitals', doc(ok({ effect: 'Allow' })), 'rules[0].effect: expected allow or deny'],
  ['effect as a boolean', doc(ok({ effect: true })), 'rules[0].effect: expected allow or deny'],
  // methods
  ['empty methods', doc(ok({ methods: [] })), 'rules[0].methods: expected a non-empty list'],
  ['methods as a string', doc(ok({ methods: 'GET' })), 'rules[0].methods: expected a non-empty list'],
  ['lower-case method', doc(ok({ methods: ['get'] })), 'rules[0].methods[0]: expected an upper-case HTTP method'],
  ['method not a string', doc(ok({ methods: ['GET', 5] })), 'rules[0].methods[1]: expected a non-empty string'],
  ['method with a wildcard', doc(ok({ methods: ['*'] })), 'rules[0].methods[0]'],
  // path
  ['path as a string', doc(ok({ path: '/a' })), 'rules[0].path: expected exactly one of'],
  ['empty path', doc(ok({ path: {} })), 'rules[0].path: expected exactly one of'],
  ['two path kinds', doc(ok({ path: { exact: '/a', prefix: '/b' } })), 'rules[0].path: expected exactly one of'],
  ['exact path not a string', doc(ok({ path: { exact: 5 } })), 'rules[0].path.exact: expected a path string'],
  ['bad glob in the second rule', doc(ok(), ok({ name: 'b', path: { glob: '/a*' } })), 'rules[1].path.glob'],
  ['glob with ** in the middle', doc(ok({ path: { glob: '/**/a' } })), 'rules[0].path.glob'],
  ['prefix ending in a slash', doc(ok({ path: { prefix: '/api/' } })), 'rules[0].path.prefix'],
  ['prefix with a wildcard', doc(ok({ path: { prefix: '/api/*' } })), 'rules[0].path.prefix'],
  ['exact with a wildcard', doc(ok({ path: { exact: '/a/*' } })), 'rules[0].path.exact'],
  ['path with a dot segment', doc(ok({ path: { exact: '/a/../b' } })), 'rules[0].path.exact'],
  ['path without a leading slash', doc(ok({ path: { prefix: 'api' } })), 'rules[0].path.prefix'],
  ['path with a query', doc(ok({ path: { exact: '/a?x=1' } })), 'rules[0].path.exact'],
  ['path with an encoded slash', doc(ok({ path: { exact: '/a%2Fb' } })), 'rules[0].path.exact'],
  // callers
  ['callers as a list', doc(ok({ callers: ['spiffe://example.org'] })), 'rules[0].callers: expected a mapping'],
  ['empty callers', doc(ok({ callers: {} })), 'rules[0].callers: is empty'],
  ['empty ids', doc(ok({ callers: { ids: [] } })), 'rules[0].callers.ids: expected a non-empty list'],
  ['ids not a SPIFFE ID', doc(ok({ callers: { ids: ['example.org/a'] } })), 'rules[0].callers.ids: invalid allow rule'],
  [
    'ids with a partial wildcard',
    doc(ok({ callers: { ids: ['spiffe://example.org/ns/prod*'] } })),
    'rules[0].callers.ids: invalid allow rule',
  ],
  [
    'ids with ** in the middle',
    doc(ok({ callers: { ids: ['spiffe://example.org/**/sa/x'] } })),
    'rules[0].callers.ids: invalid allow rule',
  ],
  ['ids entry empty', doc(ok({ callers: { ids: [''] } })), 'rules[0].callers.ids[0]: expected a non-empty string'],
  ['issuers entry empty', doc(ok({ callers: { issuers: [''] } })), 'rules[0].callers.issuers[0]'],
  ['issuers as a string', doc(ok({ callers: { issuers: 'keycloak' } })), 'rules[0].callers.issuers'],
  ['api_keys as a string', doc(ok({ callers: { api_keys: 'partner' } })), 'rules[0].callers.api_keys'],
  ['unknown auth method', doc(ok({ callers: { auth: ['mtls', 'password'] } })), 'rules[0].callers.auth[1]'],
  // claims
  ['empty claims', doc(ok({ callers: { claims: [] } })), 'rules[0].callers.claims: expected a non-empty list'],
  ['claims as a mapping', doc(ok({ callers: { claims: { sub: 'a' } } })), 'rules[0].callers.claims'],
  ['claim condition not a mapping', doc(ok({ callers: { claims: ['sub'] } })), 'rules[0].callers.claims[0]'],
  [
    'claim name missing',
    doc(ok({ callers: { claims: [{ equals: 'a' }] } })),
    'rules[0].callers.claims[0].claim: expected a claim name',
  ],
  ['claim name empty', doc(ok({ callers: { claims: [{ claim: '', equals: 'a' }] } })), 'claims[0].claim'],
  ['claim path with ..', doc(ok({ callers: { claims: [{ claim: 'a..b', equals: 'a' }] } })), 'claims[0].claim'],
  ['claim path ending in .', doc(ok({ callers: { claims: [{ claim: 'a.', equals: 'a' }] } })), 'claims[0].claim'],
  ['claim name with a space', doc(ok({ callers: { claims: [{ claim: 'a b', equals: 'a' }] } })), 'claims[0].claim'],
  ['no operator', doc(ok({ callers: { claims: [{ claim: 'sub' }] } })), 'claims[0]: give exactly one of'],
  [
    'two operators',
    doc(ok({ callers: { claims: [{ claim: 'sub', equals: 'a', in: ['a'] }] } })),
    'claims[0]: give exactly one of',
  ],
  ['in an empty list', doc(ok({ callers: { claims: [{ claim: 'sub', in: [] }] } })), 'rules[0].callers.claims[0].in'],
  ['in a string', doc(ok({ callers: { claims: [{ claim: 'sub', in: 'a' }] } })), 'claims[0].in'],
  ['in with an object', doc(ok({ callers: { claims: [{ claim: 'sub', in: ['a', { b: 1 }] }] } })), 'claims[0].in'],
  ['in with null', doc(ok({ callers: { claims: [{ claim: 'sub', in: [null] }] } })), 'claims[0].in'],
  ['equals null', doc(ok({ callers: { claims: [{ claim: 'sub', equals: null }] } })), 'claims[0].equals'],
  ['equals a list', doc(ok({ callers: { claims: [{ claim: 'sub', equals: ['a'] }] } })), 'claims[0].equals'],
  ['contains an object', doc(ok({ callers: { claims: [{ claim: 'r', contains: { a: 1 } }] } })), 'claims[0].contains'],
  [
    'equals infinity (YAML .inf)',
    'version: 1\nrules:\n  - name: a\n    effect: allow\n    callers:\n      claims:\n        - { claim: n, equals: .inf }\n',
    'rules[0].callers.claims[0].equals',
  ],
  // rate limits
  [
    'rate_limit on a deny rule',
    doc(ok({ effect: 'deny', rate_limit: { requests: 1, per: '1s' } })),
    'rules[0].rate_limit: only an allow rule can be rate limited',
  ],
  ['rate_limit as a number', doc(ok({ rate_limit: 10 })), 'rules[0].rate_limit: expected { requests'],
  ['zero requests', doc(ok({ rate_limit: { requests: 0, per: '1s' } })), 'rules[0].rate_limit.requests'],
  ['fractional requests', doc(ok({ rate_limit: { requests: 1.5, per: '1s' } })), 'rules[0].rate_limit.requests'],
  ['requests as a string', doc(ok({ rate_limit: { requests: '10', per: '1s' } })), 'rules[0].rate_limit.requests'],
  ['too many requests', doc(ok({ rate_limit: { requests: 1_000_001, per: '1s' } })), 'rules[0].rate_limit.requests'],
  ['missing requests', doc(ok({ rate_limit: { per: '1s' } })), 'rules[0].rate_limit.requests'],
  ['missing per', doc(ok({ rate_limit: { requests: 1 } })), 'rules[0].rate_limit.per: expected a duration'],
  ['per as a number', doc(ok({ rate_limit: { requests: 1, per: 1000 } })), 'rules[0].rate_limit.per'],
  ['per in words', doc(ok({ rate_limit: { requests: 1, per: '1 second' } })), 'rules[0].rate_limit.per'],
  ['per of zero', doc(ok({ rate_limit: { requests: 1, per: '0s' } })), 'rules[0].rate_limit.per'],
  ['per with an unknown unit', doc(ok({ rate_limit: { requests: 1, per: '1w' } })), 'rules[0].rate_limit.per'],
  ['zero burst', doc(ok({ rate_limit: { requests: 1, per: '1s', burst: 0 } })), 'rules[0].rate_limit.burst'],
  ['negative burst', doc(ok({ rate_limit: { requests: 1, per: '1s', burst: -1 } })), 'rules[0].rate_limit.burst'],
];

describe('a policy file with a mistake is refused, naming the place', () => {
  it.each(invalid)('%s', (_what, input, place) => {
    const err = refusal(typeof input === 'string' ? input : JSON.stringify(input));
    expect(err.code).toBe('ERR_POLICY_INVALID');
    expect(err.message.startsWith(`${LABEL}: `)).toBe(true);
    expect(err.message).toContain(place);
  });
});

describe('YAML pitfalls are refused', () => {
  const yamlCases: [string, string, RegExp][] = [
    ['a duplicate top-level key', 'version: 1\nversion: 1\nrules: [{ name: a, effect: allow }]\n', /unique/i],
    [
      'a duplicate key inside a rule (the second effect would silently win)',
      'version: 1\nrules:\n  - name: a\n    effect: deny\n    effect: allow\n',
      /unique/i,
    ],
    ['a duplicate key in JSON', '{"version": 1, "version": 1, "rules": [{"name": "a", "effect": "allow"}]}', /unique/i],
    ['an alias', 'version: 1\nrules:\n  - &r { name: a, effect: allow }\n  - *r\n', /alias/i],
    ['two documents', 'version: 1\nrules: [{ name: a, effect: allow }]\n---\nversion: 1\n', /document/i],
    ['broken syntax', 'version: 1\nrules: [{ name: a, effect: allow }\n', /./],
    ['a tab-indented block', 'version: 1\nrules:\n\t- name: a\n', /./],
  ];
  it.each(yamlCases)('%s', (_what, text, why) => {
    const err = refusal(text);
    expect(err.code).toBe('ERR_POLICY_INVALID');
    expect(err.message).toContain(`${LABEL}: not valid YAML or JSON (`);
    expect(err.message).toMatch(why);
  });

  it('a merge key is an unknown key, not a merge', () => {
    const text = 'version: 1\nrules:\n  - { <<: { effect: allow }, name: a, effect: deny }\n';
    const err = refusal(text);
    expect(err.code).toBe('ERR_POLICY_INVALID');
    expect(err.message).toContain('rules[0]: unknown key "<<"');
  });
});

describe('valid policies compile', () => {
  it('JSON is accepted as well as YAML, with the same result', () => {
    const object = doc(
      { name: 'a', effect: 'deny', methods: ['DELETE'], path: { glob: '/sandboxes/*' } },
      {
        name: 'b',
        effect: 'allow',
        callers: { ids: ['spiffe://example.org/**'] },
        rate_limit: { requests: 3, per: '1m' },
      },
    );
    const yaml = [
      '# comments are fine',
      'version: 1',
      'rules:',
      '  - name: a',
      '    effect: deny',
      '    methods: [DELETE]',
      '    path: { glob: /sandboxes/* }',
      '  - name: b',
      '    effect: allow',
      '    callers: { ids: ["spiffe://example.org/**"] }',
      '    rate_limit: { requests: 3, per: 1m }',
    ].join('\n');
    for (const text of [JSON.stringify(object), JSON.stringify(object, null, 2), yaml]) {
      const { rules } = parsePolicy(text, LABEL);
      expect(rules.map((r) => [r.name, r.effect])).toEqual([
        ['a', 'deny'],
        ['b', 'allow'],
      ]);
      expect([...(rules[0].methods ?? [])]).toEqual(['DELETE']);
      expect(rules[0].path?.('/sandboxes/s1')).toBe(true);
      expect(rules[1].limiter?.limit).toEqual({ requests: 3, perMs: 60_000, burst: 3 });
    }
  });

  it('a rule with only a name and an effect matches everything; burst defaults to requests', () => {
    const { rules } = parsePolicy(
      JSON.stringify(doc(ok({ rate_limit: { requests: 5, per: '1h30m', burst: 8 }, description: 'why' }))),
      LABEL,
    );
    expect(rules[0].methods).toBeUndefined();
    expect(rules[0].path).toBeUndefined();
    expect(rules[0].callers).toBeUndefined();
    expect(rules[0].limiter?.limit).toEqual({ requests: 5, perMs: 5_400_000, burst: 8 });
  });

  it('names may use letters, digits, ".", "_", ":" and "-", up to 63 characters', () => {
    for (const name of ['a', 'A1', 'sandbox:manage', 'a.b_c-d', '9', 'a'.repeat(63)]) {
      expect(parsePolicy(JSON.stringify(doc(ok({ name }))), LABEL).rules[0].name).toBe(name);
    }
  });

  // The list is exact on purpose: each example has end-to-end tests
  // (test/e2e/the-shipped-policy-examples-decide-as-documented.test.ts); a new one must get them too.
  it('every shipped example compiles', () => {
    const files = readdirSync(EXAMPLES).filter((f) => /\.ya?ml$/.test(f));
    expect(files.sort()).toEqual([
      'github-actions-repository.yaml',
      'kubernetes-namespace-auto-approval.yaml',
      'router-to-workload-manager.yaml',
      'sandbox-roles.yaml',
    ]);
    for (const file of files) {
      const { rules } = parsePolicy(readFileSync(new URL(file, EXAMPLES), 'utf8'), file);
      expect(rules.length).toBeGreaterThan(0);
    }
  });
});
