// Tests for allow rules: exact IDs, whole trust domains, `*` (one segment) and trailing `**` (one or more),
// matched on exact bytes and segment boundaries (VERIFIER-RULES.md A18, A20, A21).
import { describe, expect, it } from 'vitest';
import { SidecarError } from '../../src/errors.js';
import { parseSpiffeId, type SpiffeId } from '../../src/spiffe/id.js';
import { compileAllowRules, createAuthorizer } from '../../src/spiffe/match.js';

interface MatchCase {
  name: string;
  rules: string[];
  id: string;
  /** The text of the rule expected to match, or undefined for no match. */
  expected: string | undefined;
}

const matchCases: MatchCase[] = [
  // exact IDs
  { name: 'exact ID matches itself', rules: ['spiffe://td/a/b'], id: 'spiffe://td/a/b', expected: 'spiffe://td/a/b' },
  { name: 'exact ID: other path', rules: ['spiffe://td/a/b'], id: 'spiffe://td/a/c', expected: undefined },
  { name: 'exact ID: is not a prefix', rules: ['spiffe://td/a'], id: 'spiffe://td/a/b', expected: undefined },
  { name: 'exact ID: longer id is not a prefix', rules: ['spiffe://td/a/b'], id: 'spiffe://td/a', expected: undefined },
  { name: 'exact ID: string prefix', rules: ['spiffe://td/ab'], id: 'spiffe://td/abc', expected: undefined },
  { name: 'exact ID: path is case-sensitive', rules: ['spiffe://td/Api'], id: 'spiffe://td/api', expected: undefined },
  { name: 'exact ID: other trust domain', rules: ['spiffe://td/a'], id: 'spiffe://td2/a', expected: undefined },
  { name: 'exact ID: root ID is not a path ID', rules: ['spiffe://td/a'], id: 'spiffe://td', expected: undefined },
  {
    name: 'exact ID: dotted segment is literal',
    rules: ['spiffe://td/...'],
    id: 'spiffe://td/...',
    expected: 'spiffe://td/...',
  },
  // whole trust domain, both spellings
  { name: 'trust domain rule: path ID', rules: ['spiffe://td'], id: 'spiffe://td/a', expected: 'spiffe://td' },
  { name: 'trust domain rule: deep ID', rules: ['spiffe://td'], id: 'spiffe://td/a/b/c', expected: 'spiffe://td' },
  { name: 'trust domain rule: root ID', rules: ['spiffe://td'], id: 'spiffe://td', expected: 'spiffe://td' },
  { name: 'trust domain rule: other TD', rules: ['spiffe://td'], id: 'spiffe://other/a', expected: undefined },
  {
    name: 'trust domain /** rule: path ID',
    rules: ['spiffe://td/**'],
    id: 'spiffe://td/a',
    expected: 'spiffe://td/**',
  },
  {
    name: 'trust domain /** rule: deep ID',
    rules: ['spiffe://td/**'],
    id: 'spiffe://td/a/b/c',
    expected: 'spiffe://td/**',
  },
  { name: 'trust domain /** rule: other TD', rules: ['spiffe://td/**'], id: 'spiffe://other/a', expected: undefined },
  // A21: trust domain equality, never suffix/prefix
  {
    name: 'A21 TD rule vs evil-example.org',
    rules: ['spiffe://example.org'],
    id: 'spiffe://evil-example.org/x',
    expected: undefined,
  },
  {
    name: 'A21 TD rule vs example.org.evil',
    rules: ['spiffe://example.org'],
    id: 'spiffe://example.org.evil/x',
    expected: undefined,
  },
  {
    name: 'A21 TD rule vs sub.example.org',
    rules: ['spiffe://example.org'],
    id: 'spiffe://sub.example.org/x',
    expected: undefined,
  },
  {
    name: 'A21 TD /** rule vs evil-example.org',
    rules: ['spiffe://example.org/**'],
    id: 'spiffe://evil-example.org/x',
    expected: undefined,
  },
  {
    name: 'A21 TD /** rule vs example.org.evil',
    rules: ['spiffe://example.org/**'],
    id: 'spiffe://example.org.evil/x',
    expected: undefined,
  },
  {
    name: 'A21 pattern rule vs example.org.evil',
    rules: ['spiffe://example.org/ns/*'],
    id: 'spiffe://example.org.evil/ns/x',
    expected: undefined,
  },
  {
    name: 'A21 exact rule vs example.org.evil',
    rules: ['spiffe://example.org/x'],
    id: 'spiffe://example.org.evil/x',
    expected: undefined,
  },
  {
    name: 'A21 TD rule matches its own TD',
    rules: ['spiffe://example.org'],
    id: 'spiffe://example.org/x',
    expected: 'spiffe://example.org',
  },
  // `*`: exactly one segment
  {
    name: '* matches one segment',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/ns/x/sa/api',
    expected: 'spiffe://td/ns/*/sa/api',
  },
  {
    name: '* matches a dotted segment literally',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/ns/.../sa/api',
    expected: 'spiffe://td/ns/*/sa/api',
  },
  { name: '* not zero segments', rules: ['spiffe://td/ns/*/sa/api'], id: 'spiffe://td/ns/sa/api', expected: undefined },
  {
    name: '* not two segments',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/ns/x/y/sa/api',
    expected: undefined,
  },
  {
    name: '* other literal segment',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/ns/x/sa/web',
    expected: undefined,
  },
  {
    name: '* literal segments are case-sensitive',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/NS/x/sa/api',
    expected: undefined,
  },
  {
    name: '* literal segments are exact, not prefixes',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td/ns/x/sa/api-admin',
    expected: undefined,
  },
  {
    name: '* other trust domain',
    rules: ['spiffe://td/ns/*/sa/api'],
    id: 'spiffe://td2/ns/x/sa/api',
    expected: undefined,
  },
  { name: 'trailing * one segment', rules: ['spiffe://td/ns/*'], id: 'spiffe://td/ns/x', expected: 'spiffe://td/ns/*' },
  { name: 'trailing * not zero segments', rules: ['spiffe://td/ns/*'], id: 'spiffe://td/ns', expected: undefined },
  { name: 'trailing * not two segments', rules: ['spiffe://td/ns/*'], id: 'spiffe://td/ns/x/y', expected: undefined },
  { name: 'sole * one segment', rules: ['spiffe://td/*'], id: 'spiffe://td/x', expected: 'spiffe://td/*' },
  { name: 'sole * not the root ID', rules: ['spiffe://td/*'], id: 'spiffe://td', expected: undefined },
  { name: 'sole * not two segments', rules: ['spiffe://td/*'], id: 'spiffe://td/x/y', expected: undefined },
  {
    name: 'two * segments',
    rules: ['spiffe://td/*/sa/*'],
    id: 'spiffe://td/prod/sa/api',
    expected: 'spiffe://td/*/sa/*',
  },
  // trailing `**`: one or more
  { name: '** one segment', rules: ['spiffe://td/ns/**'], id: 'spiffe://td/ns/x', expected: 'spiffe://td/ns/**' },
  { name: '** many segments', rules: ['spiffe://td/ns/**'], id: 'spiffe://td/ns/x/y/z', expected: 'spiffe://td/ns/**' },
  { name: '** not zero segments', rules: ['spiffe://td/ns/**'], id: 'spiffe://td/ns', expected: undefined },
  { name: '** not a sibling', rules: ['spiffe://td/ns/**'], id: 'spiffe://td/other/x', expected: undefined },
  { name: '** not the root ID', rules: ['spiffe://td/ns/**'], id: 'spiffe://td', expected: undefined },
  { name: '** other trust domain', rules: ['spiffe://td/ns/**'], id: 'spiffe://td2/ns/x', expected: undefined },
  {
    name: '* then **',
    rules: ['spiffe://td/ns/*/sa/**'],
    id: 'spiffe://td/ns/prod/sa/api/v1',
    expected: 'spiffe://td/ns/*/sa/**',
  },
  {
    name: '* then ** needs one segment after sa',
    rules: ['spiffe://td/ns/*/sa/**'],
    id: 'spiffe://td/ns/prod/sa',
    expected: undefined,
  },
  // A20: segment boundary
  {
    name: 'A20 ** vs app-admin',
    rules: ['spiffe://td/ns/app/**'],
    id: 'spiffe://td/ns/app-admin',
    expected: undefined,
  },
  {
    name: 'A20 ** vs app-admin/x',
    rules: ['spiffe://td/ns/app/**'],
    id: 'spiffe://td/ns/app-admin/x',
    expected: undefined,
  },
  {
    name: 'A20 ** vs app/x',
    rules: ['spiffe://td/ns/app/**'],
    id: 'spiffe://td/ns/app/x',
    expected: 'spiffe://td/ns/app/**',
  },
  { name: 'A20 ** vs app itself', rules: ['spiffe://td/ns/app/**'], id: 'spiffe://td/ns/app', expected: undefined },
  { name: 'A20 ** vs ap', rules: ['spiffe://td/ns/app/**'], id: 'spiffe://td/ns/ap/x', expected: undefined },
  // several rules
  {
    name: 'second rule matches',
    rules: ['spiffe://td/a', 'spiffe://td/b/*', 'spiffe://other'],
    id: 'spiffe://td/b/c',
    expected: 'spiffe://td/b/*',
  },
  {
    name: 'third rule matches',
    rules: ['spiffe://td/a', 'spiffe://td/b/*', 'spiffe://other'],
    id: 'spiffe://other/z',
    expected: 'spiffe://other',
  },
  {
    name: 'no rule matches',
    rules: ['spiffe://td/a', 'spiffe://td/b/*', 'spiffe://other'],
    id: 'spiffe://td/b',
    expected: undefined,
  },
  // empty list
  { name: 'empty list denies a path ID', rules: [], id: 'spiffe://td/a', expected: undefined },
  { name: 'empty list denies a root ID', rules: [], id: 'spiffe://td', expected: undefined },
];

describe('compileAllowRules / createAuthorizer: matching table', () => {
  it.each(matchCases)('$name: $id vs $rules', ({ rules, id, expected }) => {
    const matcher = compileAllowRules(rules);
    expect(matcher(parseSpiffeId(id))).toBe(expected);
    const authorize = createAuthorizer(rules);
    expect(authorize(id)).toBe(expected !== undefined);
    expect(authorize(parseSpiffeId(id))).toBe(expected !== undefined);
  });
});

describe('trust domain rule spellings are equivalent', () => {
  const ids = [
    'spiffe://td',
    'spiffe://td/a',
    'spiffe://td/a/b',
    'spiffe://td2/a',
    'spiffe://tdx/a',
    'spiffe://xtd/a',
    'spiffe://t/d',
  ];
  it.each(ids)('%s', (id) => {
    expect(createAuthorizer(['spiffe://td'])(id)).toBe(createAuthorizer(['spiffe://td/**'])(id));
  });
});

describe('A18: exact bytes, never normalized', () => {
  it('an input with a dot segment does not match the normalized rule and does not throw', () => {
    const authorize = createAuthorizer(['spiffe://td/b']);
    expect(() => authorize('spiffe://td/a/../b')).not.toThrow();
    expect(authorize('spiffe://td/a/../b')).toBe(false);
    expect(authorize('spiffe://td/b')).toBe(true);
  });

  it('an input with a dot segment is not matched by wildcard or trust domain rules either', () => {
    for (const rules of [['spiffe://td'], ['spiffe://td/**'], ['spiffe://td/a/**'], ['spiffe://td/*/*/*']]) {
      expect(createAuthorizer(rules)('spiffe://td/a/../b')).toBe(false);
      expect(createAuthorizer(rules)('spiffe://td/a/./b')).toBe(false);
    }
  });

  it('does not normalize scheme or trust-domain case', () => {
    const authorize = createAuthorizer(['spiffe://td/a']);
    expect(authorize('SPIFFE://td/a')).toBe(false);
    expect(authorize('spiffe://TD/a')).toBe(false);
  });

  it('does not strip trailing slashes, queries, fragments or whitespace', () => {
    const authorize = createAuthorizer(['spiffe://td']);
    for (const id of ['spiffe://td/a/', 'spiffe://td/a?x=1', 'spiffe://td/a#f', 'spiffe://td/a\t', ' spiffe://td/a']) {
      expect(authorize(id)).toBe(false);
    }
  });
});

describe('createAuthorizer: invalid input is denied, never thrown', () => {
  const authorize = createAuthorizer(['spiffe://td', 'spiffe://td/**', 'spiffe://td/*']);
  it.each([
    '',
    'td',
    'spiffe://',
    'spiffe://td/',
    'spiffe://td//a',
    'spiffe://td/%41',
    'spiffe://td:443/a',
    'spiffe://user@td/a',
    'spiffe://tdé/a',
    `spiffe://td/${'a'.repeat(2048)}`,
  ])('%j → false', (id) => {
    expect(authorize(id)).toBe(false);
  });

  it('re-validates a hand-made SpiffeId object', () => {
    const fake: SpiffeId = { trustDomain: 'td', path: '/a/../b', toString: () => 'spiffe://td/a/../b' };
    expect(authorize(fake)).toBe(false);
    const lying: SpiffeId = { trustDomain: 'td', path: '/a', toString: () => 'spiffe://evil/a' };
    expect(createAuthorizer(['spiffe://td'])(lying)).toBe(false);
  });

  it('empty rule list denies everything', () => {
    const denyAll = createAuthorizer([]);
    for (const id of ['spiffe://td', 'spiffe://td/a', 'spiffe://example.org/ns/prod/sa/api']) {
      expect(denyAll(id)).toBe(false);
    }
  });
});

describe('invalid rules throw ERR_INVALID_ALLOW_RULE', () => {
  it.each([
    ['', 'cannot be empty'],
    ['spiffe://td/ns/app-*', 'partial wildcard'],
    ['spiffe://td/ns/*app', 'partial wildcard'],
    ['spiffe://td/ns/***', 'partial wildcard'],
    ['spiffe://td/**/x', '"**" is only allowed as the last segment'],
    ['spiffe://td/a/**/**', '"**" is only allowed as the last segment'],
    ['spiffe://TD/x', 'trust domain characters'],
    ['spiffe://TD/*', 'trust domain characters'],
    ['spiffe://td/', 'trailing slash'],
    ['spiffe://td/*/', 'trailing slash'],
    ['spiffe://td//*', 'empty segments'],
    ['spiffe://td/../*', 'dot segments'],
    ['spiffe://td/a$/*', 'path segment characters'],
    ['*', 'wildcard'],
    ['**', 'wildcard'],
    ['spiffe://*/x', 'trust domain characters'],
    ['spiffe://*', 'wildcard'],
    ['spiffe://td*/x', 'trust domain characters'],
    ['http://td/x', 'scheme is missing or invalid'],
    ['http://td/*', 'wildcard'],
    ['Spiffe://td/x', 'scheme is missing or invalid'],
    ['spiffe://td/x?q', 'path segment characters'],
    ['spiffe://td/*?q', 'partial wildcard'],
    [' spiffe://td/x', 'scheme is missing or invalid'],
  ])('%j', (rule, fragment) => {
    let thrown: unknown;
    try {
      compileAllowRules([rule]);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SidecarError);
    const err = thrown as SidecarError;
    expect(err.code).toBe('ERR_INVALID_ALLOW_RULE');
    expect(err.message).toContain(fragment);
    expect(err.message).toContain(JSON.stringify(rule));
    expect(() => createAuthorizer([rule])).toThrow(SidecarError);
  });

  it('one bad rule rejects the whole list', () => {
    let thrown: unknown;
    try {
      createAuthorizer(['spiffe://td/a', 'spiffe://td/**/x', 'spiffe://td/b']);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SidecarError);
    expect((thrown as SidecarError).code).toBe('ERR_INVALID_ALLOW_RULE');
  });

  it.each([
    'spiffe://td',
    'spiffe://td/**',
    'spiffe://td/a',
    'spiffe://td/*',
    'spiffe://td/a/*/b',
    'spiffe://td/a/**',
    'spiffe://td/*/**',
    'spiffe://10.0.0.1/x',
  ])('valid rule %s compiles', (rule) => {
    expect(typeof compileAllowRules([rule])).toBe('function');
  });
});

describe('compileAllowRules returns the matching rule text', () => {
  const matcher = compileAllowRules([
    'spiffe://a.example/web',
    'spiffe://b.example',
    'spiffe://c.example/**',
    'spiffe://d.example/ns/*/sa/api',
    'spiffe://e.example/ns/prod/**',
  ]);
  it.each([
    ['spiffe://a.example/web', 'spiffe://a.example/web'],
    ['spiffe://b.example/x/y', 'spiffe://b.example'],
    ['spiffe://c.example/x', 'spiffe://c.example/**'],
    ['spiffe://d.example/ns/dev/sa/api', 'spiffe://d.example/ns/*/sa/api'],
    ['spiffe://e.example/ns/prod/api/v2', 'spiffe://e.example/ns/prod/**'],
    ['spiffe://a.example/api', undefined],
    ['spiffe://e.example/ns/dev/api', undefined],
  ])('%s → %s', (id, expected) => {
    expect(matcher(parseSpiffeId(id))).toBe(expected);
  });
});

describe('the reported rule is the first matching one in list order', () => {
  it.each([
    [['spiffe://td/**', 'spiffe://td/a'], 'spiffe://td/a', 'spiffe://td/**'],
    [['spiffe://td/a', 'spiffe://td/**'], 'spiffe://td/a', 'spiffe://td/a'],
    [['spiffe://td/*', 'spiffe://td'], 'spiffe://td/a', 'spiffe://td/*'],
    [['spiffe://td', 'spiffe://td/**'], 'spiffe://td/a', 'spiffe://td'],
    [['spiffe://td/x/**', 'spiffe://td/*/y', 'spiffe://td/x/y'], 'spiffe://td/x/y', 'spiffe://td/x/**'],
    [['spiffe://other', 'spiffe://td/*/y', 'spiffe://td/x/**'], 'spiffe://td/x/y', 'spiffe://td/*/y'],
  ])('%j on %s reports %s', (rules, id, expected) => {
    expect(compileAllowRules(rules)(parseSpiffeId(id))).toBe(expected);
  });
});

describe('rule length', () => {
  it('refuses a rule longer than a SPIFFE ID may be, wildcards included', () => {
    const long = `spiffe://td/${'a'.repeat(2040)}/**`;
    expect(long.length).toBeGreaterThan(2048);
    expect(() => compileAllowRules([long])).toThrow(SidecarError);
  });
});
