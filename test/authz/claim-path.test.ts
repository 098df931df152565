// Claim paths: dotted names, double-quoted names that may hold dots, every malformed path refused with a
// message that says how to write it, and a lookup that never leaves the token's own properties.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { claimAt } from '../../src/authz/claim-condition.js';
import { formatClaimPath, parseClaimPath } from '../../src/authz/claim-path.js';

describe('parseClaimPath accepts', () => {
  const cases: [text: string, path: string[]][] = [
    ['sub', ['sub']],
    ['realm_access.roles', ['realm_access', 'roles']],
    ['resource_access.sandbox.roles', ['resource_access', 'sandbox', 'roles']],
    ['"kubernetes.io".namespace', ['kubernetes.io', 'namespace']],
    ['"kubernetes.io"', ['kubernetes.io']],
    ['a."b.c".d', ['a', 'b.c', 'd']],
    ['"a"."b"', ['a', 'b']],
    ['"my claim"', ['my claim']],
    ['"a=b"', ['a=b']],
    ['https://example.org/claims', ['https://example', 'org/claims']],
    ['"https://example.org/claims".roles', ['https://example.org/claims', 'roles']],
    ['a=b', ['a=b']],
    ['rôle.名前', ['rôle', '名前']],
    ['"ünïcode name"', ['ünïcode name']],
    ["x'y", ["x'y"]],
    // ordinary names: the lookup follows own properties only (see below)
    ['__proto__', ['__proto__']],
    ['constructor.prototype', ['constructor', 'prototype']],
    [Array.from({ length: 16 }, (_, i) => `k${i}`).join('.'), Array.from({ length: 16 }, (_, i) => `k${i}`)],
    ['a'.repeat(256), ['a'.repeat(256)]],
  ];
  it.each(cases)('%s', (text, path) => {
    expect(parseClaimPath(text)).toEqual(path);
  });
});

describe('parseClaimPath refuses, saying how to write it', () => {
  const cases: [what: string, text: string, message: string][] = [
    ['empty', '', 'is empty'],
    ['a lone dot', '.', 'starts with a dot'],
    ['a leading dot', '.a', 'starts with a dot'],
    ['a trailing dot', 'a.', 'ends with a dot'],
    ['a trailing dot after a quoted name', '"a".', 'ends with a dot'],
    ['two dots', 'a..b', 'has an empty name at character 3'],
    ['a space', 'a b', 'has whitespace at character 2'],
    ['a tab', 'a\tb', 'has whitespace at character 2'],
    ['a newline', 'a.b\n', 'has whitespace at character 4'],
    ['a no-break space', 'a\u00a0b', 'has whitespace at character 2'],
    ['a NUL', 'a\0', 'has a control or invisible character at character 2'],
    ['DEL', 'a\x7f', 'has a control or invisible character at character 2'],
    ['a zero-width space', 'ad\u200bmin', 'has a control or invisible character at character 3'],
    ['a right-to-left override', '\u202eabc', 'has a control or invisible character at character 1'],
    ['a lone surrogate', 'a\ud800', 'has a control or invisible character at character 2'],
    [
      'a quote inside a bare name',
      'kubernetes"io',
      'has a quote inside a name (a quote may only open a name) at character 11',
    ],
    ['an unclosed quote', '"kubernetes.io.namespace', 'has a quote at character 1 that is never closed'],
    ['an unclosed second quote', 'a."b', 'has a quote at character 3 that is never closed'],
    ['an empty quoted name', '"".a', 'has an empty quoted name at character 1'],
    ['text after a quoted name', '"kubernetes.io"namespace', 'needs a dot after the quoted name at character 16'],
    ['a backslash in quotes', '"a\\"b"', 'has a backslash at character 3 in a quoted name'],
    ['a newline in quotes', '"a\nb"', 'has a control or invisible character at character 3 in a quoted name'],
    ['a NUL in quotes', '"a\0"', 'has a control or invisible character at character 3 in a quoted name'],
    ['17 names', Array.from({ length: 17 }, () => 'k').join('.'), 'has more than 16 names'],
    ['257 characters', 'a'.repeat(257), 'is longer than 256 characters'],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const result = parseClaimPath(text);
    expect(typeof result).toBe('string');
    expect(result).toContain(message);
    if (!(result as string).includes('quoted name holds')) expect(result).toContain('"kubernetes.io".namespace');
  });

  it('never throws and never returns an empty path, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        const result = parseClaimPath(text);
        if (typeof result === 'string') return;
        expect(result.length).toBeGreaterThan(0);
        expect(result.length).toBeLessThanOrEqual(16);
        for (const name of result) expect(name).not.toBe('');
      }),
      { numRuns: 1000 },
    );
  });
});

describe('formatClaimPath', () => {
  const cases: [path: string[], text: string][] = [
    [['realm_access', 'roles'], 'realm_access.roles'],
    [['kubernetes.io', 'namespace'], '"kubernetes.io".namespace'],
    [['my claim'], '"my claim"'],
    [['a"b'], '"a\\"b"'],
    [['a\nb'], '"a\\nb"'],
    [[''], '""'],
  ];
  it.each(cases)('%j → %s', (path, text) => {
    expect(formatClaimPath(path)).toBe(text);
  });

  it('writes what parseClaimPath reads back, for any path that can be written', () => {
    const name = fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 12 })
      .filter((s) => !/["\\\p{Cc}\p{Cf}\p{Cs}]/u.test(s));
    fc.assert(
      fc.property(fc.array(name, { minLength: 1, maxLength: 16 }), (path) => {
        const text = formatClaimPath(path);
        fc.pre(text.length <= 256);
        expect(parseClaimPath(text)).toEqual(path);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('a parsed path looks up own properties only', () => {
  const claims: Record<string, unknown> = {
    'kubernetes.io': { namespace: 'prod' },
    kubernetes: { io: { namespace: 'other' } },
    obj: {},
  };
  const at = (text: string) => claimAt(claims, parseClaimPath(text) as string[]);

  it('a quoted name with a dot is one key; unquoted, the dots nest', () => {
    expect(at('"kubernetes.io".namespace')).toBe('prod');
    expect(at('kubernetes.io.namespace')).toBe('other');
  });

  it('__proto__, constructor and prototype never reach Object.prototype', () => {
    for (const text of ['__proto__', 'obj.__proto__', '__proto__.constructor', 'constructor.prototype', 'toString']) {
      expect(at(text)).toBeUndefined();
    }
  });

  it("a token's own __proto__ claim is reachable: it is data, not the prototype", () => {
    const parsed = JSON.parse('{"__proto__":{"tenant":"a"}}') as Record<string, unknown>;
    expect(claimAt(parsed, parseClaimPath('__proto__.tenant') as string[])).toBe('a');
    expect(claimAt(parsed, parseClaimPath('__proto__.constructor') as string[])).toBeUndefined();
  });
});
