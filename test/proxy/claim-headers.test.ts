// Claims to request headers: `--claim-header CLAIM=HEADER` and policy `claim_headers:` entries checked
// at startup (bad header names refused with how to fix them), and per request only present, sendable
// values: arrays as RFC 9110 lists, unsafe or over-long values dropped whole, never half-mangled.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ClaimHeaderMapping,
  claimHeaderFields,
  compileClaimHeaders,
  MAX_CLAIM_HEADER_VALUE_LENGTH,
  parseClaimHeaderFlag,
} from '../../src/proxy/claim-headers.js';
import { SidecarError } from '../../src/errors.js';

function flagRefusal(value: string): SidecarError {
  try {
    parseClaimHeaderFlag(value);
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe('ERR_CONFIG_INVALID');
    return err as SidecarError;
  }
  throw new Error(`--claim-header ${value} was accepted`);
}

describe('parseClaimHeaderFlag accepts', () => {
  const cases: [value: string, mapping: ClaimHeaderMapping][] = [
    ['realm_access.roles=x-roles', { text: 'realm_access.roles', path: ['realm_access', 'roles'], header: 'x-roles' }],
    ['sub=X-Subject', { text: 'sub', path: ['sub'], header: 'x-subject' }],
    [
      '"kubernetes.io".namespace=x-k8s-namespace',
      { text: '"kubernetes.io".namespace', path: ['kubernetes.io', 'namespace'], header: 'x-k8s-namespace' },
    ],
    // the last `=` outside quotes splits: a claim name may hold `=`
    ['"a=b"=x-a', { text: '"a=b"', path: ['a=b'], header: 'x-a' }],
    ['a=b=x-a', { text: 'a=b', path: ['a=b'], header: 'x-a' }],
    ['"x=y".z=x-z', { text: '"x=y".z', path: ['x=y', 'z'], header: 'x-z' }],
    ["tenant=x-tenant-id!#$%&'*+.^`|~", { text: 'tenant', path: ['tenant'], header: "x-tenant-id!#$%&'*+.^`|~" }],
    [`sub=${'x'.repeat(64)}`, { text: 'sub', path: ['sub'], header: 'x'.repeat(64) }],
    // names that merely start like a refused one
    ['sub=hosts', { text: 'sub', path: ['sub'], header: 'hosts' }],
    ['sub=x-proxy-user', { text: 'sub', path: ['sub'], header: 'x-proxy-user' }],
  ];
  it.each(cases)('%s', (value, mapping) => {
    expect(parseClaimHeaderFlag(value)).toEqual(mapping);
  });
});

describe('parseClaimHeaderFlag refuses, naming the flag and how to write it', () => {
  const cases: [what: string, value: string, message: string][] = [
    ['no =', 'realm_access.roles', 'expected CLAIM=HEADER'],
    ['only = inside quotes', '"a=b"', 'expected CLAIM=HEADER'],
    ['no header', 'sub=', 'the header name is missing'],
    ['no claim', '=x-sub', 'the claim is empty'],
    ['a claim path with an empty name', 'a..b=x-a', 'the claim a..b has an empty name at character 3'],
    ['an unclosed quote', '"kubernetes.io.namespace=x-ns', 'expected CLAIM=HEADER'],
    ['text after a quoted name', '"kubernetes.io"namespace=x-ns', 'needs a dot after the quoted name'],
    ['a header with a space', 'sub=x sub', '"x sub" is not a header name'],
    ['a header with a colon', 'sub=x:y', '"x:y" is not a header name'],
    ['a non-ASCII header', 'sub=x-rôle', 'is not a header name'],
    ['a header with CR LF', 'sub=x\r\nevil: 1', '"x\\r\\nevil: 1" is not a header name'],
    ['a header of 65 characters', `sub=${'x'.repeat(65)}`, 'is longer than 64 characters'],
    ['a pseudo-header', 'sub=:authority', ':authority is a pseudo-header'],
    ['a pseudo-header :path', 'sub=:path', ':path is a pseudo-header'],
    ['connection', 'sub=Connection', 'header connection describes one connection'],
    ['keep-alive', 'sub=keep-alive', 'header keep-alive describes one connection'],
    ['transfer-encoding', 'sub=transfer-encoding', 'header transfer-encoding describes one connection'],
    ['te', 'sub=TE', 'header te describes one connection'],
    ['trailer', 'sub=trailer', 'header trailer describes one connection'],
    ['upgrade', 'sub=upgrade', 'header upgrade describes one connection'],
    ['expect', 'sub=expect', 'header expect describes one connection'],
    ['http2-settings', 'sub=http2-settings', 'header http2-settings describes one connection'],
    ['proxy-authorization', 'sub=proxy-authorization', 'header proxy-authorization describes one connection'],
    ['proxy-connection', 'sub=Proxy-Connection', 'header proxy-connection describes one connection'],
    ['host', 'sub=host', 'header host frames or routes the request'],
    ['content-length', 'sub=Content-Length', 'header content-length frames or routes the request'],
    ['content_length (read as content-length)', 'sub=content_length', 'has "_", which some apps read as "-"'],
    ['x_spiffe_id (an identity header to CGI-style apps)', 'sub=x_spiffe_id', 'has "_", which some apps read as "-"'],
    ['authorization', 'sub=Authorization', 'header authorization carries a credential'],
    ['cookie', 'sub=cookie', 'header cookie carries a credential'],
  ];
  it.each(cases)('%s', (_what, value, message) => {
    const err = flagRefusal(value);
    expect(err.message).toContain(message);
    expect(err.message).toContain('--claim-header realm_access.roles=x-roles');
    expect(err.message).not.toMatch(/[\r\n]/);
  });

  it('names the flag as given', () => {
    expect(flagRefusal('sub=host').message).toMatch(/^--claim-header sub=host: /);
    expect(flagRefusal('sub=a\nb').message).toMatch(/^--claim-header "sub=a\\nb": /);
  });
});

describe('compileClaimHeaders (policy file entries)', () => {
  it('compiles entries in order', () => {
    expect(
      compileClaimHeaders(
        [
          ['realm_access.roles', 'X-Roles'],
          ['"kubernetes.io".namespace', 'x-k8s-namespace'],
        ],
        'claim_headers',
      ),
    ).toEqual([
      { text: 'realm_access.roles', path: ['realm_access', 'roles'], header: 'x-roles' },
      { text: '"kubernetes.io".namespace', path: ['kubernetes.io', 'namespace'], header: 'x-k8s-namespace' },
    ]);
  });

  it('one claim may go to two headers', () => {
    const compiled = compileClaimHeaders(
      [
        ['sub', 'x-a'],
        ['sub', 'x-b'],
      ],
      'claim_headers',
    );
    expect(compiled).toHaveLength(2);
  });

  const refusals: [what: string, entries: [string, unknown][], message: string][] = [
    ['a header that is not text', [['sub', 7]], 'claim_headers: sub: expected a header name such as x-roles'],
    ['a null header', [['sub', null]], 'claim_headers: sub: expected a header name'],
    ['a bad claim path', [['a..b', 'x-a']], 'claim_headers: a..b: the claim has an empty name at character 3'],
    ['a claim path with a newline', [['a\nb', 'x-a']], 'claim_headers: "a\\nb": the claim has whitespace'],
    ['a refused header', [['sub', 'Cookie']], 'claim_headers: sub: header cookie carries a credential'],
    ['a pseudo-header', [['sub', ':path']], 'claim_headers: sub: :path is a pseudo-header'],
    [
      'two claims to one header',
      [
        ['"kubernetes.io".namespace', 'x-ns'],
        ['ns', 'X-NS'],
      ],
      'claim_headers: ns: header x-ns already carries claim "kubernetes.io".namespace; map each header once',
    ],
    [
      'the bad entry is the one named',
      [
        ['sub', 'x-sub'],
        ['tenant', 'host'],
      ],
      'claim_headers: tenant: header host',
    ],
  ];
  it.each(refusals)('refuses %s', (_what, entries, message) => {
    const result = compileClaimHeaders(entries, 'claim_headers');
    expect(typeof result).toBe('string');
    expect(result).toContain(message);
  });
});

describe('claimHeaderFields', () => {
  const map = (...pairs: [string, string][]) => {
    const compiled = compileClaimHeaders(pairs, 'test');
    if (typeof compiled === 'string') throw new Error(compiled);
    return compiled;
  };
  const one = (value: unknown) => claimHeaderFields({ c: value }, map(['c', 'x-c']));

  it('no claims (mTLS, API keys): no headers', () => {
    expect(claimHeaderFields(undefined, map(['sub', 'x-sub']))).toEqual([]);
  });

  it('in mapping order, only for claims present', () => {
    const claims = {
      sub: 'alice',
      realm_access: { roles: ['admin', 'user'] },
      'kubernetes.io': { namespace: 'prod' },
    };
    const mappings = map(
      ['"kubernetes.io".namespace', 'x-ns'],
      ['missing', 'x-missing'],
      ['sub', 'x-sub'],
      ['realm_access.roles', 'x-roles'],
    );
    expect(claimHeaderFields(claims, mappings)).toEqual(['x-ns', 'prod', 'x-sub', 'alice', 'x-roles', 'admin, user']);
  });

  const values: [what: string, value: unknown, sent: string | undefined][] = [
    ['a string as is', 'a, "b"', 'a, "b"'],
    ['a string with inner spaces', 'two words', 'two words'],
    ['a number', 7, '7'],
    ['a negative fraction', -1.5, '-1.5'],
    ['a large number', 1e21, '1e+21'],
    ['true', true, 'true'],
    ['false', false, 'false'],
    ['an array as a list', ['admin', 'user'], 'admin, user'],
    ['an array of one', ['admin'], 'admin'],
    ['an array of scalars', ['a', 1, false], 'a, 1, false'],
    ['an array skips objects, arrays and null', ['a', { b: 1 }, ['c'], null, 'd'], 'a, d'],
    ['an element with a comma is quoted', ['a,b', 'c'], '"a,b", c'],
    ['an element with a quote is quoted and escaped', ['say "hi"'], '"say \\"hi\\""'],
    ['a backslash is escaped inside quotes', ['a\\b, c'], '"a\\\\b, c"'],
    ['a backslash alone needs no quotes', ['a\\b'], 'a\\b'],
    ['a leading space is quoted', [' a'], '" a"'],
    ['a trailing space is quoted', ['a '], '"a "'],
    ['an empty element is quoted (a bare one would vanish)', ['', 'a'], '"", a'],
    // nothing to send
    ['an empty string', '', undefined],
    ['an empty array', [], undefined],
    ['an array of nothing sendable', [{}, null, '\n'], undefined],
    ['an object', { a: 1 }, undefined],
    ['null', null, undefined],
    ['NaN', NaN, undefined],
    ['Infinity', Infinity, undefined],
    // unsafe: dropped whole, never mangled
    ['CR LF', 'a\r\nx-evil: 1', undefined],
    ['LF', 'a\nb', undefined],
    ['NUL', 'a\0b', undefined],
    ['a tab', 'a\tb', undefined],
    ['DEL', 'a\x7fb', undefined],
    ['non-ASCII', 'rôle', undefined],
    ['an emoji', '🔑', undefined],
    ['an unsafe element is dropped, the others sent', ['ok', 'bad\r\n', 'rôle', 'fine'], 'ok, fine'],
    ['8192 characters', 'a'.repeat(MAX_CLAIM_HEADER_VALUE_LENGTH), 'a'.repeat(MAX_CLAIM_HEADER_VALUE_LENGTH)],
    ['8193 characters', 'a'.repeat(MAX_CLAIM_HEADER_VALUE_LENGTH + 1), undefined],
    ['a list over 8192 characters is not sent, not truncated', Array(2000).fill('abcde'), undefined],
    ['a list of exactly 8192 characters', ['a'.repeat(8189), 'b'], `${'a'.repeat(8189)}, b`],
  ];
  it.each(values)('%s', (_what, value, sent) => {
    expect(one(value)).toEqual(sent === undefined ? [] : ['x-c', sent]);
  });

  it('__proto__ and constructor never resolve to Object.prototype', () => {
    const mappings = map(['__proto__', 'x-a'], ['constructor.name', 'x-b'], ['sub.length', 'x-c'], ['toString', 'x-d']);
    expect(claimHeaderFields({ sub: 'alice' }, mappings)).toEqual([]);
    const parsed = JSON.parse('{"__proto__":{"tenant":"t1"}}') as Record<string, unknown>;
    expect(claimHeaderFields(parsed, map(['__proto__.tenant', 'x-tenant']))).toEqual(['x-tenant', 't1']);
  });

  it('a huge array stops as soon as the value is too long', () => {
    const huge = Array(1_000_000).fill('role');
    const started = performance.now();
    expect(one(huge)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(200);
  });

  it('whatever the claims, every value is visible ASCII and space, at most 8192 characters', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.anything(), (json, anything) => {
        const fields = claimHeaderFields({ c: json, d: anything }, map(['c', 'x-c'], ['d', 'x-d']));
        for (let i = 1; i < fields.length; i += 2) {
          expect(fields[i]).toMatch(/^[\x20-\x7e]+$/);
          expect(fields[i].length).toBeLessThanOrEqual(MAX_CLAIM_HEADER_VALUE_LENGTH);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('a list of safe strings splits back into its elements', () => {
    const element = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) });
    fc.assert(
      fc.property(fc.array(element, { minLength: 1, maxLength: 8 }), (list) => {
        const [, value] = one(list);
        expect(splitList(value)).toEqual(list);
      }),
      { numRuns: 1000 },
    );
  });
});

/** An RFC 9110 list split back, as an app would: `, ` between elements, quoted-strings unescaped. */
function splitList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < value.length) {
    if (value[i] === '"') {
      let text = '';
      i++;
      while (value[i] !== '"') {
        if (value[i] === '\\') i++;
        text += value[i++];
      }
      out.push(text);
      i++;
    } else {
      const end = value.indexOf(', ', i);
      out.push(value.slice(i, end === -1 ? value.length : end));
      i = end === -1 ? value.length : end;
    }
    if (value.startsWith(', ', i)) i += 2;
  }
  return out;
}
