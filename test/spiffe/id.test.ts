// Tests for the SPIFFE ID parser against VERIFIER-RULES.md section A (items 1-17 and 19) and SPIFFE-ID.md §2.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SidecarError, type SidecarErrorCode } from '../../src/errors.js';
import { MAX_SPIFFE_ID_LENGTH, MAX_TRUST_DOMAIN_LENGTH, parseSpiffeId, parseTrustDomain } from '../../src/spiffe/id.js';

const TD_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789._-';
const PATH_CHARS = TD_CHARS + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** Independent oracle for SPIFFE-ID.md §2 plus our 2048-byte and 255-byte limits. */
const VALID_ID = /^spiffe:\/\/[a-z0-9._-]{1,255}(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._-]+)*$/;
function oracleAccepts(input: string): boolean {
  return input.length <= 2048 && VALID_ID.test(input);
}

/** Runs `fn` and returns the SidecarError it throws; fails the test if it returns or throws anything else. */
function catchSidecarError(fn: () => unknown): SidecarError {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error(`expected a SidecarError, but the call returned ${JSON.stringify(String(result))}`);
}

function expectAccept(input: string, trustDomain: string, path: string): void {
  const id = parseSpiffeId(input);
  expect(id.trustDomain).toBe(trustDomain);
  expect(id.path).toBe(path);
  expect(id.toString()).toBe(input);
  expect(`${id}`).toBe(input);
}

function expectReject(input: string, fragment?: string, code: SidecarErrorCode = 'ERR_INVALID_SPIFFE_ID'): void {
  const err = catchSidecarError(() => parseSpiffeId(input));
  expect(err.code).toBe(code);
  if (fragment !== undefined) expect(err.message).toContain(fragment);
}

interface AcceptCase {
  rule: string;
  input: string;
  trustDomain: string;
  path: string;
}

interface RejectCase {
  rule: string;
  input: string;
  fragment?: string;
}

const acceptCases: AcceptCase[] = [
  { rule: 'A8 IPv4 dotted quad', input: 'spiffe://10.0.0.1/p', trustDomain: '10.0.0.1', path: '/p' },
  { rule: 'A9 trust-domain-only ID', input: 'spiffe://td', trustDomain: 'td', path: '' },
  { rule: 'A9 trust-domain-only ID (dotted)', input: 'spiffe://example.org', trustDomain: 'example.org', path: '' },
  { rule: 'A10 path characters', input: 'spiffe://td/Path_1.x-y', trustDomain: 'td', path: '/Path_1.x-y' },
  { rule: 'A10 path is case-sensitive (upper)', input: 'spiffe://td/ABC', trustDomain: 'td', path: '/ABC' },
  { rule: 'A10 path is case-sensitive (lower)', input: 'spiffe://td/abc', trustDomain: 'td', path: '/abc' },
  {
    rule: 'A10 typical k8s ID',
    input: 'spiffe://k8s-west.example.com/ns/staging/sa/default',
    trustDomain: 'k8s-west.example.com',
    path: '/ns/staging/sa/default',
  },
  {
    rule: 'A4 all trust domain characters',
    input: 'spiffe://abc-xyz_0.9/p',
    trustDomain: 'abc-xyz_0.9',
    path: '/p',
  },
  { rule: 'A4 trust domain of only dots', input: 'spiffe://.../p', trustDomain: '...', path: '/p' },
  { rule: 'A15 segment starting with dots', input: 'spiffe://td/..a', trustDomain: 'td', path: '/..a' },
  { rule: 'A15 segment of three dots', input: 'spiffe://td/...', trustDomain: 'td', path: '/...' },
  { rule: 'A15 segment ending with dots', input: 'spiffe://td/a..', trustDomain: 'td', path: '/a..' },
  { rule: 'A15 segment .a', input: 'spiffe://td/.a/b', trustDomain: 'td', path: '/.a/b' },
  { rule: 'A15 dotted segments inside a path', input: 'spiffe://td/a/.../b', trustDomain: 'td', path: '/a/.../b' },
  {
    rule: 'A2 "spiffe://" appearing again in the path is just characters',
    input: 'spiffe://td/spiffe',
    trustDomain: 'td',
    path: '/spiffe',
  },
];

const rejectCases: RejectCase[] = [
  { rule: 'A1 empty input', input: '', fragment: 'cannot be empty' },
  { rule: 'A2 scheme case', input: 'Spiffe://td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 scheme upper case', input: 'SPIFFE://td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 single slash', input: 'spiffe:/td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 no slashes', input: 'spiffe:td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 other scheme', input: 'http://td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 no scheme', input: 'td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 leading whitespace', input: ' spiffe://td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 scheme only', input: 'spiffe:', fragment: 'scheme is missing or invalid' },
  { rule: 'A2 invalid subject', input: 'invalid subject', fragment: 'scheme is missing or invalid' },
  { rule: 'A3 empty trust domain', input: 'spiffe://', fragment: 'trust domain is missing' },
  { rule: 'A3 empty trust domain with path', input: 'spiffe:///path', fragment: 'trust domain is missing' },
  { rule: 'A3 empty trust domain with slash', input: 'spiffe:///', fragment: 'trust domain is missing' },
  { rule: 'A4 upper-case trust domain', input: 'spiffe://TD/p', fragment: 'trust domain characters' },
  { rule: 'A4 mixed-case trust domain', input: 'spiffe://Example.org/p', fragment: 'trust domain characters' },
  { rule: 'A4 $ in trust domain', input: 'spiffe://trust$domain', fragment: 'trust domain characters' },
  { rule: 'A4 $ in trust domain with path', input: 'spiffe://trust$domain/p', fragment: 'trust domain characters' },
  { rule: 'A5 percent-encoded trust domain', input: 'spiffe://%62%61%64/path', fragment: 'trust domain characters' },
  { rule: 'A6 userinfo', input: 'spiffe://user@td/p', fragment: 'trust domain characters' },
  { rule: 'A6 userinfo with password', input: 'spiffe://user:pw@td/p', fragment: 'trust domain characters' },
  { rule: 'A7 port', input: 'spiffe://td:8080/p', fragment: 'trust domain characters' },
  { rule: 'A7 port without path', input: 'spiffe://td:8080', fragment: 'trust domain characters' },
  { rule: 'A7 empty port', input: 'spiffe://td:/p', fragment: 'trust domain characters' },
  { rule: 'A8 IPv6', input: 'spiffe://[::1]/p', fragment: 'trust domain characters' },
  { rule: 'A8 IPv6 without path', input: 'spiffe://[::1]', fragment: 'trust domain characters' },
  { rule: 'A10 $ in path', input: 'spiffe://td/path$', fragment: 'path segment characters' },
  { rule: 'A10 space in path', input: 'spiffe://td/pa th', fragment: 'path segment characters' },
  { rule: 'A10 * in path', input: 'spiffe://td/ns/*', fragment: 'path segment characters' },
  { rule: 'A10 backslash in path', input: 'spiffe://td/a\\b', fragment: 'path segment characters' },
  { rule: 'A11 percent-encoded path', input: 'spiffe://td/%41', fragment: 'path segment characters' },
  { rule: 'A11 percent-encoded UTF-8 path', input: 'spiffe://td/%F0%9F%A4%AF', fragment: 'path segment characters' },
  { rule: 'A11 percent-encoded slash', input: 'spiffe://td/a%2Fb', fragment: 'path segment characters' },
  { rule: 'A12 query', input: 'spiffe://td/p?x=1', fragment: 'path segment characters' },
  { rule: 'A12 empty query', input: 'spiffe://td/p?', fragment: 'path segment characters' },
  { rule: 'A12 query on trust domain', input: 'spiffe://td?x=1', fragment: 'trust domain characters' },
  { rule: 'A12 fragment', input: 'spiffe://td/p#f', fragment: 'path segment characters' },
  { rule: 'A12 empty fragment', input: 'spiffe://td/p#', fragment: 'path segment characters' },
  { rule: 'A12 fragment on trust domain', input: 'spiffe://td#f', fragment: 'trust domain characters' },
  { rule: 'A13 empty segment', input: 'spiffe://td//p', fragment: 'path cannot contain empty segments' },
  { rule: 'A13 empty inner segment', input: 'spiffe://td/a//b', fragment: 'path cannot contain empty segments' },
  { rule: 'A13 many slashes', input: 'spiffe://td///', fragment: 'path cannot contain empty segments' },
  { rule: 'A14 bare trailing slash', input: 'spiffe://td/', fragment: 'path cannot have a trailing slash' },
  { rule: 'A14 trailing slash', input: 'spiffe://td/p/', fragment: 'path cannot have a trailing slash' },
  { rule: 'A14 trailing slash deep', input: 'spiffe://td/a/b/', fragment: 'path cannot have a trailing slash' },
  { rule: 'A15 .. segment', input: 'spiffe://td/a/../b', fragment: 'dot segments' },
  { rule: 'A15 . segment', input: 'spiffe://td/a/./b', fragment: 'dot segments' },
  { rule: 'A15 leading . segment', input: 'spiffe://td/.', fragment: 'dot segments' },
  { rule: 'A15 leading .. segment', input: 'spiffe://td/..', fragment: 'dot segments' },
  { rule: 'A15 trailing . segment', input: 'spiffe://td/a/.', fragment: 'dot segments' },
  { rule: 'A15 trailing .. segment', input: 'spiffe://td/a/..', fragment: 'dot segments' },
  { rule: 'A16 tab at end of path', input: 'spiffe://td/p\t', fragment: 'path segment characters' },
  { rule: 'A16 tab in path', input: 'spiffe://td/a\tb', fragment: 'path segment characters' },
  { rule: 'A16 tab in trust domain', input: 'spiffe://t\td/p', fragment: 'trust domain characters' },
  { rule: 'A16 tab in scheme', input: 'spif\tfe://td/p', fragment: 'scheme is missing or invalid' },
  { rule: 'A16 newline at end', input: 'spiffe://td/p\n', fragment: 'path segment characters' },
  { rule: 'A16 NUL in path', input: 'spiffe://td/p\u0000', fragment: 'path segment characters' },
  { rule: 'A16 trailing space', input: 'spiffe://td/p ', fragment: 'path segment characters' },
  { rule: 'A16 non-ASCII trust domain', input: 'spiffe://tdé/p', fragment: 'trust domain characters' },
  { rule: 'A16 non-ASCII path', input: 'spiffe://td/pé', fragment: 'path segment characters' },
  { rule: 'A16 emoji path', input: 'spiffe://td/🤯', fragment: 'path segment characters' },
  { rule: 'A16 lone surrogate path', input: 'spiffe://td/\ud800', fragment: 'path segment characters' },
  { rule: 'A16 fullwidth letter in trust domain', input: 'spiffe://ｔd/p', fragment: 'trust domain characters' },
];

describe('parseSpiffeId: VERIFIER-RULES section A table', () => {
  it.each(acceptCases)('$rule: accepts $input', ({ input, trustDomain, path }) => {
    expectAccept(input, trustDomain, path);
  });

  it.each(rejectCases)('$rule: rejects $input', ({ input, fragment }) => {
    expectReject(input, fragment);
  });

  it('includes the offending input in the error message (quoted)', () => {
    const err = catchSidecarError(() => parseSpiffeId('spiffe://td/p?x=1'));
    expect(err.message).toContain('"spiffe://td/p?x=1"');
    expect(err.name).toBe('SidecarError');
  });

  it('escapes control bytes in error messages instead of echoing them raw', () => {
    const err = catchSidecarError(() => parseSpiffeId('spiffe://td/a\nb\u0000'));
    expect(err.message).not.toContain('\n');
    expect(err.message).not.toContain('\u0000');
  });

  it('rejects non-string input with a SidecarError', () => {
    for (const value of [undefined, null, 42, {}, ['spiffe://td/p']]) {
      const err = catchSidecarError(() => parseSpiffeId(value as unknown as string));
      expect(err.code).toBe('ERR_INVALID_SPIFFE_ID');
    }
  });

  it('returns a frozen value', () => {
    const id = parseSpiffeId('spiffe://td/p');
    expect(Object.isFrozen(id)).toBe(true);
  });
});

describe('parseSpiffeId: every code unit 0-255 (A4, A10, A16)', () => {
  const codes = Array.from({ length: 256 }, (_, i) => i);

  it.each(codes)('code %i in the trust domain', (code) => {
    const ch = String.fromCharCode(code);
    const input = `spiffe://t${ch}d/p`;
    if (ch === '/') {
      // The slash ends the trust domain: this is `spiffe://t` + `/d/p`.
      expectAccept(input, 't', '/d/p');
    } else if (TD_CHARS.includes(ch)) {
      expectAccept(input, `t${ch}d`, '/p');
    } else {
      expectReject(input, 'trust domain characters');
    }
  });

  it.each(codes)('code %i alone as the trust domain', (code) => {
    const ch = String.fromCharCode(code);
    const input = `spiffe://${ch}`;
    if (ch === '/') {
      expectReject(input, 'trust domain is missing');
    } else if (TD_CHARS.includes(ch)) {
      expectAccept(input, ch, '');
    } else {
      expectReject(input, 'trust domain characters');
    }
  });

  it.each(codes)('code %i in a path segment', (code) => {
    const ch = String.fromCharCode(code);
    const input = `spiffe://td/p${ch}q`;
    if (PATH_CHARS.includes(ch) || ch === '/') {
      // A slash is the segment separator: `/p/q` is two valid segments.
      expectAccept(input, 'td', `/p${ch}q`);
    } else {
      expectReject(input, 'path segment characters');
    }
  });

  it.each(codes)('code %i alone as a path segment', (code) => {
    const ch = String.fromCharCode(code);
    const input = `spiffe://td/${ch}`;
    if (ch === '.') {
      expectReject(input, 'dot segments');
    } else if (ch === '/') {
      expectReject(input, 'empty segments');
    } else if (PATH_CHARS.includes(ch)) {
      expectAccept(input, 'td', `/${ch}`);
    } else {
      expectReject(input, 'path segment characters');
    }
  });

  it('accepts exactly the allowed characters', () => {
    const tdAccepted = codes.filter((c) => {
      try {
        parseSpiffeId(`spiffe://x${String.fromCharCode(c)}`);
        return true;
      } catch {
        return false;
      }
    });
    const pathAccepted = codes.filter((c) => {
      try {
        parseSpiffeId(`spiffe://td/x${String.fromCharCode(c)}`);
        return true;
      } catch {
        return false;
      }
    });
    const sortedCodes = (chars: string) => [...chars].map((c) => c.charCodeAt(0)).sort((a, b) => a - b);
    // `/` is accepted in the trust-domain probe as a separator only when followed by a valid path; here
    // `spiffe://x/` is a trailing slash, so it is rejected and the sets are exactly the spec's sets.
    expect(tdAccepted).toEqual(sortedCodes(TD_CHARS));
    expect(pathAccepted).toEqual(sortedCodes(PATH_CHARS));
  });
});

describe('parseSpiffeId: length limits (A17)', () => {
  const prefix = 'spiffe://td/';

  it('has the documented limits', () => {
    expect(MAX_SPIFFE_ID_LENGTH).toBe(2048);
    expect(MAX_TRUST_DOMAIN_LENGTH).toBe(255);
  });

  it('accepts a 2048-byte ID', () => {
    const input = prefix + 'a'.repeat(2048 - prefix.length);
    expect(input.length).toBe(2048);
    expectAccept(input, 'td', input.slice('spiffe://td'.length));
  });

  it('accepts a 2048-byte ID made of many short segments', () => {
    // 'spiffe://td' is 11 bytes; each '/ab' adds 3; 679 of them give 2048 exactly.
    const input = 'spiffe://td' + '/ab'.repeat(679);
    expect(input.length).toBe(2048);
    expectAccept(input, 'td', '/ab'.repeat(679));
  });

  it('rejects a 2049-byte ID', () => {
    const input = prefix + 'a'.repeat(2049 - prefix.length);
    expect(input.length).toBe(2049);
    expectReject(input, '2048');
  });

  it('rejects a very long ID quickly and with a bounded message', () => {
    const input = prefix + 'a'.repeat(1_000_000);
    const err = catchSidecarError(() => parseSpiffeId(input));
    expect(err.code).toBe('ERR_INVALID_SPIFFE_ID');
    expect(err.message.length).toBeLessThan(500);
  });

  it('accepts a 255-byte trust domain', () => {
    const td = 'a'.repeat(255);
    expectAccept(`spiffe://${td}/p`, td, '/p');
    expectAccept(`spiffe://${td}`, td, '');
  });

  it('rejects a 256-byte trust domain', () => {
    const td = 'a'.repeat(256);
    expectReject(`spiffe://${td}/p`, '255');
    expectReject(`spiffe://${td}`, '255');
  });

  it('accepts a 255-byte dotted trust domain', () => {
    const td = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`;
    expect(td.length).toBe(255);
    expectAccept(`spiffe://${td}/p`, td, '/p');
  });
});

describe('parseTrustDomain (A19)', () => {
  it.each([
    ['td', 'td'],
    ['example.org', 'example.org'],
    ['10.0.0.1', '10.0.0.1'],
    ['spiffe://td', 'td'],
    ['spiffe://td/x', 'td'],
    ['spiffe://example.org/ns/prod/sa/api', 'example.org'],
    ['a'.repeat(255), 'a'.repeat(255)],
  ])('%s → %s', (input, expected) => {
    expect(parseTrustDomain(input)).toBe(expected);
  });

  it.each([
    ['BAD', 'trust domain characters'],
    ['', 'trust domain is missing'],
    ['a'.repeat(256), '255'],
    ['td:8080', 'trust domain characters'],
    ['user@td', 'trust domain characters'],
    ['tdé', 'trust domain characters'],
    ['td/x', 'trust domain characters'],
    ['spiffe://', 'trust domain is missing'],
    ['spiffe://TD', 'trust domain characters'],
    ['spiffe://td/', 'trailing slash'],
    ['spiffe://td/a/../b', 'dot segments'],
    ['spiffe://td?x', 'trust domain characters'],
    ['Spiffe://td', 'trust domain characters'],
    ['http://td', 'trust domain characters'],
  ])('%j → ERR_INVALID_TRUST_DOMAIN', (input, fragment) => {
    const err = catchSidecarError(() => parseTrustDomain(input));
    expect(err.code).toBe('ERR_INVALID_TRUST_DOMAIN');
    expect(err.message).toContain(fragment);
  });

  it('keeps the ID parse error as the cause', () => {
    const err = catchSidecarError(() => parseTrustDomain('spiffe://td/'));
    expect(err.cause).toBeInstanceOf(SidecarError);
    expect((err.cause as SidecarError).code).toBe('ERR_INVALID_SPIFFE_ID');
  });

  it('rejects non-string input with a SidecarError', () => {
    const err = catchSidecarError(() => parseTrustDomain(7 as unknown as string));
    expect(err.code).toBe('ERR_INVALID_TRUST_DOMAIN');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property tests

const tdCharArb = fc.constantFrom(...TD_CHARS);
const pathCharArb = fc.constantFrom(...PATH_CHARS);
const trustDomainArb = fc.string({ unit: tdCharArb, minLength: 1, maxLength: 255 });
const segmentArb = fc.string({ unit: pathCharArb, minLength: 1, maxLength: 24 }).filter((s) => s !== '.' && s !== '..');
const validIdArb = fc
  .tuple(trustDomainArb, fc.array(segmentArb, { maxLength: 12 }))
  .map(([td, segments]) => ({ td, path: segments.map((s) => `/${s}`).join('') }));

/** Characters that make the parser take interesting branches. */
const spiffeishCharArb = fc.oneof(
  { weight: 6, arbitrary: pathCharArb },
  { weight: 3, arbitrary: fc.constant('/') },
  { weight: 2, arbitrary: fc.constantFrom('.', '..') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('%', '?', '#', '@', ':', '[', ']', '*', '\t', ' ', '\n', '\u0000', 'é', '🤯', '\ud800'),
  },
);
const codeUnitArb = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));

/** Property (b): never any error other than a SidecarError with an ERR_ code, and accept means round-trip. */
function checkTotal(input: string): void {
  let id: ReturnType<typeof parseSpiffeId>;
  try {
    id = parseSpiffeId(input);
  } catch (err) {
    if (!(err instanceof SidecarError)) throw new Error(`non-SidecarError thrown for ${JSON.stringify(input)}`);
    if (!err.code.startsWith('ERR_')) throw new Error(`bad code ${err.code}`);
    return;
  }
  if (id.toString() !== input) throw new Error(`toString() ${JSON.stringify(id.toString())} differs from input`);
  if (`spiffe://${id.trustDomain}${id.path}` !== input) throw new Error('trustDomain + path differs from input');
}

describe('parseSpiffeId: properties', () => {
  it('(a) round-trips every generated valid ID', () => {
    fc.assert(
      fc.property(validIdArb, ({ td, path }) => {
        const input = `spiffe://${td}${path}`;
        const id = parseSpiffeId(input);
        expect(id.toString()).toBe(input);
        expect(id.trustDomain).toBe(td);
        expect(id.path).toBe(path);
      }),
      { numRuns: 1000 },
    );
  });

  it('(a) the trust domain of a generated valid ID parses with parseTrustDomain, both ways', () => {
    fc.assert(
      fc.property(validIdArb, ({ td, path }) => {
        expect(parseTrustDomain(td)).toBe(td);
        expect(parseTrustDomain(`spiffe://${td}${path}`)).toBe(td);
      }),
      { numRuns: 300 },
    );
  });

  it('(b) any full-unicode string: round-trip or SidecarError', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), checkTotal), { numRuns: 2000 });
  });

  it('(b) any grapheme string: round-trip or SidecarError', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 64 }), checkTotal), { numRuns: 2000 });
  });

  it('(b) any UTF-16 string including lone surrogates: round-trip or SidecarError', () => {
    fc.assert(fc.property(fc.string({ unit: codeUnitArb, maxLength: 64 }), checkTotal), { numRuns: 2000 });
  });

  it('(b) "spiffe://"-prefixed strings: round-trip or SidecarError', () => {
    const suffixArb = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 48 }),
      fc.string({ unit: spiffeishCharArb, maxLength: 48 }),
    );
    fc.assert(
      fc.property(suffixArb, (suffix) => checkTotal(`spiffe://${suffix}`)),
      { numRuns: 3000 },
    );
  });

  it('(b) long "spiffe://"-prefixed strings around the length limit: round-trip or SidecarError', () => {
    fc.assert(
      fc.property(fc.string({ unit: spiffeishCharArb, minLength: 2000, maxLength: 2100 }), (suffix) =>
        checkTotal(`spiffe://td/${suffix}`),
      ),
      { numRuns: 200 },
    );
  });

  it('(c) accepts exactly what an independent regex oracle of SPIFFE-ID.md §2 accepts', () => {
    const inputArb = fc.oneof(
      fc.string({ unit: spiffeishCharArb, maxLength: 40 }).map((s) => `spiffe://${s}`),
      validIdArb.map(({ td, path }) => `spiffe://${td}${path}`),
      fc.string({ unit: 'binary', maxLength: 40 }),
    );
    fc.assert(
      fc.property(inputArb, (input) => {
        let accepted: boolean;
        try {
          accepted = parseSpiffeId(input).toString() === input;
        } catch {
          accepted = false;
        }
        expect(accepted).toBe(oracleAccepts(input));
      }),
      { numRuns: 3000 },
    );
  });
});
