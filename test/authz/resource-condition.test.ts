// `where:` conditions: what each kind of caller has to compare with a bound segment (claims, the segments and
// trust domain of its SPIFFE ID, its API key name), and that what it does not have never matches.
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { compilePathTemplate, type PathTemplate } from '../../src/authz/path-template.js';
import {
  type CallerValue,
  callerValue,
  parseCallerValue,
  resourceConditionsHold,
} from '../../src/authz/resource-condition.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';

const ref = (text: string): CallerValue => {
  const r = parseCallerValue(text);
  if (typeof r === 'string') throw new Error(r);
  return r;
};

const mtls: PeerIdentity = {
  method: 'mtls',
  id: parseSpiffeId('spiffe://example.org/ns/prod/sa/web'),
  leafSha256: 'ab',
};
const jwtSvid: PeerIdentity = {
  method: 'jwt-svid',
  id: parseSpiffeId('spiffe://example.org/ns/staging/sa/worker'),
  subject: 'spiffe://example.org/ns/staging/sa/worker',
  claims: { sub: 'spiffe://example.org/ns/staging/sa/worker' },
};
const k8s: PeerIdentity = {
  method: 'k8s-sa',
  id: parseSpiffeId('spiffe://cluster.local/ns/prod/sa/builder'),
  issuer: 'k8s',
  subject: 'system:serviceaccount:prod:builder',
  claims: { 'kubernetes.io': { namespace: 'prod' } },
};
const oidc: PeerIdentity = {
  method: 'oidc',
  issuer: 'keycloak',
  subject: 'alice',
  claims: {
    sub: 'alice',
    uid: 42,
    big: 2 ** 53,
    half: 4.5,
    neg: -7,
    admin: true,
    empty: '',
    groups: ['a', 'b'],
    realm_access: { roles: ['x'] },
    'kubernetes.io': { namespace: 'prod' },
    repository: 'octo-org/app',
  },
};
const tokenless: PeerIdentity = { method: 'oidc', issuer: 'keycloak', subject: 'nobody' };
const key: PeerIdentity = { method: 'api-key', name: 'partner-x' };

describe('parseCallerValue', () => {
  it.each([
    ['claims.sub', { kind: 'claim', path: ['sub'] }],
    ['claims.realm_access.roles', { kind: 'claim', path: ['realm_access', 'roles'] }],
    ['claims."kubernetes.io".namespace', { kind: 'claim', path: ['kubernetes.io', 'namespace'] }],
    ['id.segment[0]', { kind: 'id_segment', index: 0 }],
    ['id.segment[12]', { kind: 'id_segment', index: 12 }],
    ['id.trust_domain', { kind: 'trust_domain' }],
    ['key.name', { kind: 'key_name' }],
  ])('%s', (text, expected) => {
    expect(parseCallerValue(text)).toEqual(expected);
  });

  it.each([
    ['alice', 'to compare with fixed values write in: [a, b]'],
    ['sub', 'expected claims.<claim path>'],
    ['claims', 'expected claims.<claim path>'],
    ['claims.', 'the claim path is empty'],
    ['claims.a..b', 'the claim path has an empty name'],
    ['claims."kubernetes.io', 'never closed'],
    ['id.segment[01]', 'id.segment[N]'],
    ['id.segment[-1]', 'id.segment[N]'],
    ['id.segment[]', 'id.segment[N]'],
    ['id.segment[1024]', 'id.segment[N]'],
    ['id.segment', 'id.segment[N]'],
    ['id.path', 'id.segment[N]'],
    ['ID.trust_domain', 'id.trust_domain'],
    ['key.id', 'key.name'],
  ])('refuses %s', (text, message) => {
    const result = parseCallerValue(text);
    expect(typeof result).toBe('string');
    expect(result).toContain(message);
  });
});

describe('callerValue: what each kind of caller has', () => {
  const cases: [what: string, caller: PeerIdentity, ref: string, value: string | undefined][] = [
    ['mtls: the first segment after the trust domain', mtls, 'id.segment[0]', 'ns'],
    ['mtls: the namespace', mtls, 'id.segment[1]', 'prod'],
    ['mtls: the last segment', mtls, 'id.segment[3]', 'web'],
    ['mtls: past the last segment', mtls, 'id.segment[4]', undefined],
    ['mtls: the trust domain', mtls, 'id.trust_domain', 'example.org'],
    ['mtls: no claims', mtls, 'claims.sub', undefined],
    ['mtls: no key', mtls, 'key.name', undefined],
    ['jwt-svid: its SPIFFE ID', jwtSvid, 'id.segment[1]', 'staging'],
    ['jwt-svid: its claims', jwtSvid, 'claims.sub', 'spiffe://example.org/ns/staging/sa/worker'],
    ['k8s-sa: the SPIFFE ID its subject maps to', k8s, 'id.segment[1]', 'prod'],
    ['k8s-sa: a quoted claim name', k8s, 'claims."kubernetes.io".namespace', 'prod'],
    ['k8s-sa: its trust domain', k8s, 'id.trust_domain', 'cluster.local'],
    ['oidc: a claim', oidc, 'claims.sub', 'alice'],
    ['oidc: no SPIFFE ID', oidc, 'id.segment[0]', undefined],
    ['oidc: no trust domain', oidc, 'id.trust_domain', undefined],
    ['oidc: a missing claim', oidc, 'claims.email', undefined],
    ['oidc: a whole number as its decimal text', oidc, 'claims.uid', '42'],
    ['oidc: a negative whole number', oidc, 'claims.neg', '-7'],
    ['oidc: a number JSON may have rounded is no value', oidc, 'claims.big', undefined],
    ['oidc: a fraction is no value', oidc, 'claims.half', undefined],
    ['oidc: a boolean is no value', oidc, 'claims.admin', undefined],
    ['oidc: an array is no value', oidc, 'claims.groups', undefined],
    ['oidc: an object is no value', oidc, 'claims.realm_access', undefined],
    ['oidc: a string claim may hold "/"', oidc, 'claims.repository', 'octo-org/app'],
    ['oidc: never the prototype', oidc, 'claims.constructor', undefined],
    ['oidc without claims', tokenless, 'claims.sub', undefined],
    ['api-key: its name', key, 'key.name', 'partner-x'],
    ['api-key: no claims', key, 'claims.sub', undefined],
    ['api-key: no SPIFFE ID', key, 'id.segment[0]', undefined],
  ];
  it.each(cases)('%s', (_what, caller, text, value) => {
    expect(callerValue(ref(text), caller)).toBe(value);
  });
});

describe('resourceConditionsHold', () => {
  const template = compilePathTemplate('/r/{owner}/{repo}/{id}/**') as PathTemplate;
  const bound = (path: string) => template.bind(path) ?? [];
  const owner = { segment: 'owner', bindings: [0] };
  const ownerRepo = { segment: 'owner/repo', bindings: [0, 1] };
  const id = { segment: 'id', bindings: [2] };

  it('equals: the bound segment and the caller value are the same text', () => {
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/alice/x/1'), oidc)).toBe(true);
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/bob/x/1'), oidc)).toBe(false);
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/Alice/x/1'), oidc)).toBe(false);
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/alic%65/x/1'), oidc)).toBe(true);
  });

  it('a number claim compares as its decimal text; "042" is not 42', () => {
    const c = [{ ...id, equals: ref('claims.uid') }];
    expect(resourceConditionsHold(c, bound('/r/a/b/42'), oidc)).toBe(true);
    expect(resourceConditionsHold(c, bound('/r/a/b/042'), oidc)).toBe(false);
    expect(resourceConditionsHold(c, bound('/r/a/b/42.0'), oidc)).toBe(false);
  });

  it('joined segments compare with a claim that holds "/", one segment never does', () => {
    const c = [{ ...ownerRepo, equals: ref('claims.repository') }];
    expect(resourceConditionsHold(c, bound('/r/octo-org/app/1'), oidc)).toBe(true);
    expect(resourceConditionsHold(c, bound('/r/octo-org/other/1'), oidc)).toBe(false);
    expect(
      resourceConditionsHold([{ ...owner, equals: ref('claims.repository') }], bound('/r/octo-org/app/1'), oidc),
    ).toBe(false);
  });

  it('in: one of the fixed values', () => {
    const c = [{ ...owner, in: new Set(['alice', 'bob']) }];
    expect(resourceConditionsHold(c, bound('/r/bob/x/1'), key)).toBe(true);
    expect(resourceConditionsHold(c, bound('/r/carol/x/1'), key)).toBe(false);
  });

  it('a value the caller does not have, or a segment that is not UTF-8, never matches (not even another undefined)', () => {
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/alice/x/1'), tokenless)).toBe(
      false,
    );
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.sub') }], bound('/r/%FF/x/1'), tokenless)).toBe(
      false,
    );
    expect(resourceConditionsHold([{ ...owner, in: new Set(['%FF']) }], bound('/r/%FF/x/1'), key)).toBe(false);
    expect(resourceConditionsHold([{ ...owner, equals: ref('claims.empty') }], bound('/r/x/x/1'), oidc)).toBe(false);
  });

  it('every condition must hold', () => {
    const both = [
      { ...owner, equals: ref('claims.sub') },
      { ...id, in: new Set(['1']) },
    ];
    expect(resourceConditionsHold(both, bound('/r/alice/x/1'), oidc)).toBe(true);
    expect(resourceConditionsHold(both, bound('/r/alice/x/2'), oidc)).toBe(false);
  });
});
