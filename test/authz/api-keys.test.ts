// Static API keys: the file (SHA-256 only, one key per line, bound to a name, optional expiry and routes)
// is parsed strictly; a key authenticates only if listed and unexpired; `apikey new` prints a key once
// and a line that this same parser accepts.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiKeyNew } from '../../src/authn/api-key-commands.js';
import {
  type ApiKeyResult,
  type ApiKeySet,
  newApiKey,
  parseApiKeys,
  parseExpiry,
  parseRoute,
  presentedApiKey,
  routeAllowed,
} from '../../src/authn/api-keys.js';
import type { KeyRoute } from '../../src/authn/identity.js';
import { SidecarError } from '../../src/errors.js';
import { apiKey } from '../helpers/authz.js';

const LABEL = '--api-keys-file /etc/sidecar/keys';
const HEX = 'a'.repeat(64);

function routesOf(result: ApiKeyResult): readonly KeyRoute[] {
  if (!result.ok) throw new Error(`refused: ${result.rejection.reason}`);
  return result.identity.routes ?? [];
}

function refusal(text: string): SidecarError {
  try {
    parseApiKeys(text, LABEL);
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error('the file was accepted');
}

describe('the API keys file is parsed strictly', () => {
  const invalid: [what: string, text: string, line: number, why: string][] = [
    ['a bare hex digest', `${HEX} partner`, 1, 'the first field must be sha256:'],
    ['upper-case hex', `sha256:${'A'.repeat(64)} partner`, 1, 'the first field must be sha256:'],
    ['63 hex digits', `sha256:${'a'.repeat(63)} partner`, 1, 'the first field must be sha256:'],
    ['65 hex digits', `sha256:${'a'.repeat(65)} partner`, 1, 'the first field must be sha256:'],
    ['another algorithm', `sha512:${HEX} partner`, 1, 'the first field must be sha256:'],
    ['the key itself instead of its hash', `sk_${'A'.repeat(43)} partner`, 1, 'the first field must be sha256:'],
    ['no name', `sha256:${HEX}`, 1, 'the name must be'],
    ['a name with a slash', `sha256:${HEX} partner/x`, 1, 'the name must be'],
    ['a name starting with a dot', `sha256:${HEX} .partner`, 1, 'the name must be'],
    ['a name of 64 characters', `sha256:${HEX} ${'n'.repeat(64)}`, 1, 'the name must be'],
    ['the same key twice', `sha256:${HEX} a\n# rotated\nsha256:${HEX} b`, 3, 'the same key is listed twice'],
    ['expires twice', `sha256:${HEX} a expires=2030-01-01 expires=2031-01-01`, 1, 'expires is given twice'],
    ['expires in words', `sha256:${HEX} a expires=tomorrow`, 1, 'expires=tomorrow is not an ISO 8601 time'],
    ['expires empty', `sha256:${HEX} a expires=`, 1, 'is not an ISO 8601 time'],
    ['expires without a zone', `sha256:${HEX} a expires=2030-01-31T00:00:00`, 1, 'is not an ISO 8601 time'],
    ['expires as a Unix time', `sha256:${HEX} a expires=1900000000`, 1, 'is not an ISO 8601 time'],
    ['expires in month 13', `sha256:${HEX} a expires=2030-13-01`, 1, 'is not an ISO 8601 time'],
    ['expires at hour 25', `sha256:${HEX} a expires=2030-01-01T25:00:00Z`, 1, 'is not an ISO 8601 time'],
    // A date that does not exist must not silently become another one (2030-03-02).
    ['expires on February 30', `sha256:${HEX} a expires=2030-02-30`, 1, 'is not an ISO 8601 time'],
    ['expires on April 31', `sha256:${HEX} a expires=2030-04-31T00:00:00Z`, 1, 'is not an ISO 8601 time'],
    ['a route without a method', `sha256:${HEX} a route=/status`, 1, 'route=/status: write METHOD:PATH'],
    ['a lower-case route method', `sha256:${HEX} a route=get:/status`, 1, 'route=get:/status: write METHOD:PATH'],
    ['a route with a bad glob', `sha256:${HEX} a route=GET:/status*`, 1, 'route=GET:/status*'],
    ['a route path not in normal form', `sha256:${HEX} a route=GET:/a/../b`, 1, 'not a path in normal form'],
    ['a route without a path', `sha256:${HEX} a route=GET:`, 1, 'route=GET:'],
    ['an unknown field', `sha256:${HEX} a owner=bob`, 1, 'unknown field "owner=bob"'],
    ['a trailing comment', `sha256:${HEX} a # partner X`, 1, 'unknown field "#"'],
    ['a bad line after good ones', `# keys\n\nsha256:${HEX} a\nsha256:nope b`, 4, 'the first field'],
  ];
  it.each(invalid)('%s', (_what, text, line, why) => {
    const err = refusal(text);
    expect(err.code).toBe('ERR_API_KEYS_INVALID');
    expect(err.message).toContain(`${LABEL} line ${line}: `);
    expect(err.message).toContain(why);
    expect(err.message).toContain("as printed by 'spiffe-sidecar apikey new'");
  });

  it('comments, blank lines, indentation and CRLF line ends are fine; a name may hold several keys', () => {
    const a = apiKey('partner');
    const b = apiKey('partner');
    const set = parseApiKeys(`# partner keys\r\n\r\n   ${a.line}   \r\n\t${b.line}\r\n# end\r\n`, LABEL);
    expect(set.size).toBe(2);
    for (const k of [a, b])
      expect(set.authenticate(k.key, 0)).toMatchObject({ ok: true, identity: { name: 'partner' } });
  });

  it('an empty file (or only comments) admits no key', () => {
    expect(parseApiKeys('', LABEL).size).toBe(0);
    expect(parseApiKeys('# none yet\n', LABEL).size).toBe(0);
  });
});

describe('expiry forms', () => {
  const cases: [text: string, iso: string | undefined][] = [
    ['2030-01-31', '2030-01-31T00:00:00.000Z'],
    ['2030-01-31T12:30Z', '2030-01-31T12:30:00.000Z'],
    ['2030-01-31T12:30:15Z', '2030-01-31T12:30:15.000Z'],
    ['2030-01-31T12:30:15.250Z', '2030-01-31T12:30:15.250Z'],
    ['2030-01-31T12:30:15+02:00', '2030-01-31T10:30:15.000Z'],
    ['2030-01-31T12:30:15-05:00', '2030-01-31T17:30:15.000Z'],
    ['2030-1-31', undefined],
    ['2030-01-31 12:30:15Z', undefined],
    ['2030-01-31T12Z', undefined],
    ['2030-01-31T12:30:15+0200', undefined],
    ['31/01/2030', undefined],
    ['', undefined],
  ];
  it.each(cases)('%j → %j', (text, iso) => {
    const ms = parseExpiry(text);
    expect(ms === undefined ? undefined : new Date(ms).toISOString()).toBe(iso);
  });

  it('an expiry takes effect to the millisecond', () => {
    const k = apiKey('partner', 'expires=2030-01-31T00:00:00Z');
    const set = parseApiKeys(k.line, LABEL);
    const at = Date.parse('2030-01-31T00:00:00Z');
    expect(set.authenticate(k.key, at - 1).ok).toBe(true);
    expect(set.authenticate(k.key, at)).toMatchObject({ ok: false, rejection: { reason: 'ERR_API_KEY_EXPIRED' } });
    expect(set.authenticate(k.key, at + 86_400_000)).toMatchObject({ ok: false });
  });
});

describe('authenticate', () => {
  const partner = apiKey('partner-x');
  const routed = apiKey('reporter', 'route=GET:/reports/**', 'route=*:/status');
  const expired = apiKey('old-script', 'expires=2020-01-01');
  const set: ApiKeySet = parseApiKeys([partner.line, routed.line, expired.line].join('\n'), LABEL);
  const NOW = Date.parse('2026-01-01T00:00:00Z');

  it('a listed key is its name', () => {
    expect(set.authenticate(partner.key, NOW)).toEqual({
      ok: true,
      identity: { method: 'api-key', name: 'partner-x' },
    });
  });

  it('a key with routes carries them', () => {
    const result = set.authenticate(routed.key, NOW);
    expect(result.ok).toBe(true);
    const routes = routesOf(result);
    expect(routes.map((r) => [r.method, r.text])).toEqual([
      ['GET', 'GET:/reports/**'],
      ['*', '*:/status'],
    ]);
    expect(routeAllowed(routes, 'GET', '/reports/2026/01')).toBe(true);
    expect(routeAllowed(routes, 'POST', '/reports/2026/01')).toBe(false);
    expect(routeAllowed(routes, 'DELETE', '/status')).toBe(true);
    expect(routeAllowed(routes, 'GET', '/status/x')).toBe(false);
    expect(routeAllowed(routes, 'GET', '/reportsx')).toBe(false);
  });

  it('an expired key is refused as expired, with its name in the message', () => {
    expect(set.authenticate(expired.key, NOW)).toEqual({
      ok: false,
      rejection: { reason: 'ERR_API_KEY_EXPIRED', message: 'API key "old-script" expired' },
    });
  });

  const unknown: [what: string, key: string][] = [
    ['a well-formed key that is not listed', newApiKey().key],
    ['the listed hash itself', partner.line.split(' ')[0]],
    ['the hex digest of a listed key', partner.line.split(' ')[0].slice('sha256:'.length)],
    ['a listed key with one character changed', `${partner.key.slice(0, -1)}${partner.key.endsWith('A') ? 'B' : 'A'}`],
    ['a listed key with a suffix', `${partner.key}x`],
    ['a listed key cut short', partner.key.slice(0, -1)],
    ['a listed key in upper case', partner.key.toUpperCase()],
    ['a listed key with a space', ` ${partner.key}`],
    ['the empty string', ''],
    ['only the prefix', 'sk_'],
    ['a key of another format', `pk_${partner.key.slice(3)}`],
  ];
  it.each(unknown)('%s is unknown, and the message never repeats it', (_what, key) => {
    const result = set.authenticate(key, NOW);
    expect(result.ok).toBe(false);
    const { rejection } = result as { rejection: { reason: string; message: string } };
    expect(rejection.reason).toBe('ERR_API_KEY_UNKNOWN');
    if (key.length > 3) expect(rejection.message).not.toContain(key);
  });
});

describe('where a request carries its key', () => {
  const key = newApiKey().key;
  const cases: [what: string, headers: Record<string, string | string[]>, expected: unknown][] = [
    ['x-api-key', { 'x-api-key': key }, { key, from: 'x-api-key' }],
    ['x-api-key, trimmed', { 'x-api-key': ` ${key} ` }, { key, from: 'x-api-key' }],
    ['Authorization: Bearer sk_…', { authorization: `Bearer ${key}` }, { key, from: 'authorization' }],
    ['a bearer JWT is not an API key', { authorization: 'Bearer eyJhbGciOi.x.y' }, undefined],
    ['Basic credentials are not an API key', { authorization: 'Basic dXNlcjpwYXNz' }, undefined],
    ['nothing', {}, undefined],
    ['both headers', { 'x-api-key': key, authorization: `Bearer ${key}` }, 'ambiguous'],
    ['x-api-key twice', { 'x-api-key': [key, key] }, 'ambiguous'],
  ];
  it.each(cases)('%s', (_what, headers, expected) => {
    expect(presentedApiKey(headers)).toEqual(expected);
  });
});

describe('apikey new', () => {
  const NOW = Date.parse('2026-05-01T10:00:00Z');

  function made(options: Record<string, string | string[]>) {
    const out = apiKeyNew(options, NOW);
    const key = /^key: {2}(\S+)$/m.exec(out)?.[1];
    const line = /^line: (.+)$/m.exec(out)?.[1];
    expect(key).toBeDefined();
    expect(line).toBeDefined();
    return { out, key: key!, line: line! };
  }

  it('prints a fresh key once and the line that admits it; the line holds only its SHA-256', () => {
    const { out, key, line } = made({ name: 'partner-x' });
    expect(key).toMatch(/^sk_[A-Za-z0-9_-]{43}$/);
    expect(line).toBe(
      `sha256:${createHash('sha256').update(key).digest('hex')} partner-x created=2026-05-01T10:00:00Z`,
    );
    expect(out.split(key)).toHaveLength(2);
    expect(out).toContain('shown only this once');
    const set = parseApiKeys(line, LABEL);
    expect(set.authenticate(key, NOW)).toEqual({ ok: true, identity: { method: 'api-key', name: 'partner-x' } });
  });

  it('every key is new', () => {
    const keys = new Set(Array.from({ length: 50 }, () => made({ name: 'a' }).key));
    expect(keys.size).toBe(50);
  });

  it('--expires as a duration from now, or as an ISO date; the key expires then', () => {
    const inDays = made({ name: 'a', expires: '90d' });
    expect(inDays.line).toMatch(/ a created=2026-05-01T10:00:00Z expires=2026-07-30T10:00:00Z$/);
    const set = parseApiKeys(inDays.line, LABEL);
    expect(set.authenticate(inDays.key, NOW + 90 * 86_400_000 - 1).ok).toBe(true);
    expect(set.authenticate(inDays.key, NOW + 90 * 86_400_000)).toMatchObject({
      ok: false,
      rejection: { reason: 'ERR_API_KEY_EXPIRED' },
    });
    expect(made({ name: 'a', expires: '2027-01-31' }).line).toMatch(/ expires=2027-01-31T00:00:00Z$/);
    expect(made({ name: 'a', expires: '2027-01-31T08:00:00+01:00' }).line).toMatch(/ expires=2027-01-31T07:00:00Z$/);
    expect(made({ name: 'a', expires: '36h' }).line).toMatch(/ expires=2026-05-02T22:00:00Z$/);
  });

  it('--route, repeatable, ends up on the line and limits the key', () => {
    const { key, line } = made({ name: 'reporter', route: ['POST:/invoke', '*:/status/**'] });
    expect(line).toMatch(/ reporter created=\S+ route=POST:\/invoke route=\*:\/status\/\*\*$/);
    const result = parseApiKeys(line, LABEL).authenticate(key, NOW);
    expect(result.ok).toBe(true);
    const routes = routesOf(result);
    expect(routeAllowed(routes, 'POST', '/invoke')).toBe(true);
    expect(routeAllowed(routes, 'GET', '/invoke')).toBe(false);
    expect(routeAllowed(routes, 'GET', '/status/x/y')).toBe(true);
  });

  const bad: [what: string, options: Record<string, string | string[]>, message: string][] = [
    ['no name', {}, '--name is required'],
    ['an empty name', { name: '' }, '--name is required'],
    // The name is one field of the line: whitespace must not split it into a name and other fields.
    ['a name with a space', { name: 'partner x' }, 'the name must be'],
    ['a name that smuggles a field', { name: 'partner expires=2099-01-01' }, 'the name must be'],
    ['an expiry in the past', { name: 'a', expires: '2026-04-30' }, 'is in the past'],
    ['an expiry of now', { name: 'a', expires: '2026-05-01T10:00:00Z' }, 'is in the past'],
    ['an expiry in words', { name: 'a', expires: 'next-week' }, '--expires'],
    ['an expiry of zero', { name: 'a', expires: '0d' }, '--expires'],
    ['a bad date', { name: 'a', expires: '2027-31-01' }, 'write a duration from now (90d) or an ISO date'],
    ['an expiry in years', { name: 'a', expires: '1y' }, 'write a duration from now (90d) or an ISO date'],
    [
      'a lower-case route method',
      { name: 'a', route: ['post:/invoke'] },
      'write the method in upper case: POST:/invoke',
    ],
    ['a route without a method', { name: 'a', route: ['/invoke'] }, '--route "/invoke"'],
    ['a route with a bad glob', { name: 'a', route: ['GET:/a*'] }, '--route "GET:/a*"'],
  ];
  it.each(bad)('refuses %s', (_what, options, message) => {
    let err: unknown;
    try {
      apiKeyNew(options, NOW);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe('ERR_CONFIG_INVALID');
    expect((err as SidecarError).message).toContain(message);
  });
});

describe('parseRoute', () => {
  it('METHOD:GLOB, or *:GLOB for any method', () => {
    expect(parseRoute('POST:/invoke')).toMatchObject({ method: 'POST', text: 'POST:/invoke' });
    expect(parseRoute('*:/status/**')).toMatchObject({ method: '*' });
    expect(parseRoute('GET:/a:b')).toMatchObject({ method: 'GET' });
    expect(typeof parseRoute('POST')).toBe('string');
    expect(typeof parseRoute(':/x')).toBe('string');
    expect(typeof parseRoute('GET,POST:/x')).toBe('string');
  });
});
