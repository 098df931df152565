// Identity assertions, checked the way an app checks them: jose's jwtVerify against the JWKS we serve.
// What each authentication method asserts, lifetime and reuse, and that nothing else verifies.
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { SidecarError } from '../../src/errors.js';
import {
  type AssertedCaller,
  assertedCaller,
  assertionKey,
  createIdentityAssertion,
  type IdentityAssertion,
  newAssertionKeyPem,
} from '../../src/proxy/identity-assertion.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';

const ISSUER = 'spiffe://example.org/ns/shop/sa/api';
const AUDIENCE = 'shop-api';
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const CALLER_ID = parseSpiffeId('spiffe://example.org/ns/shop/sa/frontend');
const CERT_ID = parseSpiffeId('spiffe://example.org/ns/shop/sa/gateway');

function clock(start = T0) {
  let t = start;
  return { now: () => t, set: (ms: number) => (t = ms), advance: (ms: number) => (t += ms) };
}

function asserter(ttlSeconds = 60, now = clock().now, extra: { privateKeyPem?: string; cacheSize?: number } = {}) {
  return createIdentityAssertion({ issuer: ISSUER, audience: AUDIENCE, ttlSeconds, now, ...extra });
}

async function verify(assertion: IdentityAssertion, jwt: string, at = T0) {
  return jwtVerify(jwt, createLocalJWKSet(assertion.jwks() as Parameters<typeof createLocalJWKSet>[0]), {
    issuer: ISSUER,
    audience: AUDIENCE,
    algorithms: ['ES256'],
    currentDate: new Date(at),
  });
}

const MTLS: PeerIdentity = { method: 'mtls', id: CALLER_ID, leafSha256: 'ab'.repeat(32) };
const JWT_SVID: PeerIdentity = {
  method: 'jwt-svid',
  id: CALLER_ID,
  subject: CALLER_ID.toString(),
  claims: { sub: CALLER_ID.toString(), role: 'admin', groups: ['root'] },
};
const K8S_SA: PeerIdentity = {
  method: 'k8s-sa',
  id: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/worker'),
  issuer: 'cluster',
  subject: 'system:serviceaccount:shop:worker',
  claims: { 'kubernetes.io': { namespace: 'shop' } },
};
const OIDC: PeerIdentity = {
  method: 'oidc',
  issuer: 'google',
  subject: '1234567890',
  claims: { email: 'someone@example.com', email_verified: true },
};
const API_KEY: PeerIdentity = {
  method: 'api-key',
  name: 'billing-batch',
  routes: [{ method: 'GET', text: '/invoices/*', matches: () => true }],
};

describe('assertions carry exactly what the sidecar verified, per method', () => {
  const now = clock().now;
  const assertion = asserter(60, now);
  const registered = { iss: ISSUER, aud: AUDIENCE, iat: T0 / 1000, exp: T0 / 1000 + 60 };

  it.each<[string, PeerIdentity, { certificate?: typeof CERT_ID; rule?: string }, AssertedCaller]>([
    [
      'mtls (its own certificate is not repeated)',
      MTLS,
      { certificate: CALLER_ID, rule: 'frontend-reads' },
      { sub: CALLER_ID.toString(), auth_method: 'mtls', spiffe_id: CALLER_ID.toString(), rule: 'frontend-reads' },
    ],
    [
      'jwt-svid over a client certificate: the token admitted, the certificate is carried too',
      JWT_SVID,
      { certificate: CERT_ID },
      {
        sub: CALLER_ID.toString(),
        auth_method: 'jwt-svid',
        spiffe_id: CALLER_ID.toString(),
        token_subject: CALLER_ID.toString(),
        certificate_spiffe_id: CERT_ID.toString(),
      },
    ],
    [
      'k8s-sa: the issuer by name, the service account and the SPIFFE ID it maps to',
      K8S_SA,
      { rule: 'workers' },
      {
        sub: 'spiffe://cluster.local/ns/shop/sa/worker',
        auth_method: 'k8s-sa',
        spiffe_id: 'spiffe://cluster.local/ns/shop/sa/worker',
        token_issuer: 'cluster',
        token_subject: 'system:serviceaccount:shop:worker',
        rule: 'workers',
      },
    ],
    [
      'oidc: ISSUER#SUBJECT, no SPIFFE ID',
      OIDC,
      {},
      { sub: 'google#1234567890', auth_method: 'oidc', token_issuer: 'google', token_subject: '1234567890' },
    ],
    [
      'api-key: the name the key is bound to, never the key or its routes',
      API_KEY,
      { rule: 'batch' },
      { sub: 'api-key:billing-batch', auth_method: 'api-key', api_key_name: 'billing-batch', rule: 'batch' },
    ],
  ])('%s', async (_name, peer, context, expected) => {
    const caller = assertedCaller(peer, context);
    expect(caller).toEqual(expected);
    const jwt = assertion.token(caller);
    const { payload, protectedHeader } = await verify(assertion, jwt);
    // Exactly these claims: none of the token's own (role, groups, email) leak through.
    expect(payload).toEqual({ ...expected, ...registered });
    expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'JWT', kid: assertion.jwks().keys[0].kid });
  });

  it('the JWKS is one public ES256 signing key named by its RFC 7638 thumbprint', async () => {
    const { keys } = assertion.jwks();
    expect(keys).toHaveLength(1);
    const [key] = keys;
    expect(Object.keys(key).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(key.kid).toBe(await calculateJwkThumbprint({ kty: key.kty, crv: key.crv, x: key.x, y: key.y }));
  });
});

describe('lifetime and reuse', () => {
  it('is valid until exp and expired from then on', async () => {
    const c = clock();
    const assertion = asserter(30, c.now);
    const jwt = assertion.token(assertedCaller(MTLS));
    await expect(verify(assertion, jwt, T0 + 29_999)).resolves.toBeDefined();
    await expect(verify(assertion, jwt, T0 + 30_000)).rejects.toBeInstanceOf(errors.JWTExpired);
  });

  it('one caller gets the same assertion while more than half its lifetime is left, then a fresh one', async () => {
    const c = clock();
    const assertion = asserter(60, c.now);
    const caller = assertedCaller(JWT_SVID, { rule: 'r' });
    const first = assertion.token(caller);
    c.advance(29_999);
    // Equal claims built anew hit the same entry.
    expect(assertion.token(assertedCaller(JWT_SVID, { rule: 'r' }))).toBe(first);
    c.advance(1);
    const second = assertion.token(caller);
    expect(second).not.toBe(first);
    const { payload } = await verify(assertion, second, c.now());
    expect(payload.iat).toBe(T0 / 1000 + 30);
    expect(payload.exp).toBe(T0 / 1000 + 90);
    c.advance(29_999);
    expect(assertion.token(caller)).toBe(second);
  });

  it('measures the half life from exp, which is whole seconds', () => {
    const c = clock(T0 + 900);
    const assertion = asserter(2, c.now);
    const caller = assertedCaller(MTLS);
    // iat = T0, exp = T0 + 2 s: at T0 + 0.9 s only 1.1 s is left (more than half), at T0 + 1 s exactly half.
    const first = assertion.token(caller);
    c.set(T0 + 999);
    expect(assertion.token(caller)).toBe(first);
    c.set(T0 + 1000);
    expect(assertion.token(caller)).not.toBe(first);
  });

  it('distinct callers, rules or certificates get distinct assertions', () => {
    const assertion = asserter();
    const tokens = new Set([
      assertion.token(assertedCaller(JWT_SVID)),
      assertion.token(assertedCaller(JWT_SVID, { rule: 'a' })),
      assertion.token(assertedCaller(JWT_SVID, { rule: 'b' })),
      assertion.token(assertedCaller(JWT_SVID, { certificate: CERT_ID })),
      assertion.token(assertedCaller(MTLS)),
    ]);
    expect(tokens.size).toBe(5);
  });

  it('keeps at most cacheSize callers, dropping the oldest first', () => {
    const assertion = asserter(60, clock().now, { cacheSize: 2 });
    const [a, b, c] = [MTLS, OIDC, API_KEY].map((p) => assertedCaller(p));
    const first = { a: assertion.token(a), b: assertion.token(b) };
    assertion.token(c);
    // ECDSA signatures are randomized: a re-signed caller gets a different string for the same claims.
    expect(assertion.token(b)).toBe(first.b);
    expect(assertion.token(a)).not.toBe(first.a);
  });

  it('a clock stepped back gets a fresh assertion, not one issued in its future', async () => {
    const c = clock();
    const assertion = asserter(60, c.now);
    const first = assertion.token(assertedCaller(MTLS));
    c.set(T0 - 3_600_000);
    const second = assertion.token(assertedCaller(MTLS));
    expect(second).not.toBe(first);
    expect((await verify(assertion, second, c.now())).payload.iat).toBe((T0 - 3_600_000) / 1000);
  });
});

describe('nothing else verifies', () => {
  const assertion = asserter();
  const jwt = assertion.token(assertedCaller(OIDC));

  it('a changed payload or signature fails', async () => {
    const [header, payload, signature] = jwt.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'google#admin' })).toString('base64url');
    await expect(verify(assertion, `${header}.${forged}.${signature}`)).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
    const bytes = Buffer.from(signature, 'base64url');
    bytes[10] ^= 1;
    await expect(verify(assertion, `${header}.${payload}.${bytes.toString('base64url')}`)).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
  });

  it("another sidecar's JWKS refuses it", async () => {
    const other = asserter();
    expect(other.jwks().keys[0].kid).not.toBe(assertion.jwks().keys[0].kid);
    await expect(verify(other, jwt)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  it('another issuer or audience is refused', async () => {
    const jwks = createLocalJWKSet(assertion.jwks() as Parameters<typeof createLocalJWKSet>[0]);
    const at = { currentDate: new Date(T0) };
    await expect(jwtVerify(jwt, jwks, { ...at, audience: 'other-app' })).rejects.toBeInstanceOf(
      errors.JWTClaimValidationFailed,
    );
    await expect(jwtVerify(jwt, jwks, { ...at, issuer: 'spiffe://example.org/x' })).rejects.toBeInstanceOf(
      errors.JWTClaimValidationFailed,
    );
  });
});

describe('the key', () => {
  it('the same PEM gives the same kid, and each instance verifies the other (--workers)', async () => {
    const pem = newAssertionKeyPem();
    // A PKCS#8 P-256 key, as the workers are handed it.
    const key = createPrivateKey(pem);
    expect([key.asymmetricKeyType, key.asymmetricKeyDetails?.namedCurve]).toEqual(['ec', 'prime256v1']);
    const one = asserter(60, clock().now, { privateKeyPem: pem });
    const two = asserter(60, clock().now, { privateKeyPem: pem });
    expect(one.jwks()).toEqual(two.jwks());
    expect(assertionKey(pem).kid).toBe(one.jwks().keys[0].kid);
    const jwt = two.token(assertedCaller(API_KEY));
    expect(decodeProtectedHeader(jwt).kid).toBe(one.jwks().keys[0].kid);
    await expect(verify(one, jwt)).resolves.toBeDefined();
  });

  it.each([
    ['not a PEM', 'hello'],
    ['an RSA key', pkcs8(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)],
    ['a P-384 key', pkcs8(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey)],
    ['an Ed25519 key', pkcs8(generateKeyPairSync('ed25519').privateKey)],
  ])('%s is refused with ERR_KEY_PARSE', (_name, pem) => {
    const attempt = () => asserter(60, clock().now, { privateKeyPem: pem });
    expect(attempt).toThrow(SidecarError);
    expect(attempt).toThrow(expect.objectContaining({ code: 'ERR_KEY_PARSE' }));
  });

  it('a lifetime that is not a whole positive number of seconds is refused', () => {
    for (const ttl of [0, -1, 1.5, Number.NaN]) expect(() => asserter(ttl)).toThrow(RangeError);
  });
});

function pkcs8(key: { export(o: { type: 'pkcs8'; format: 'pem' }): string | Buffer }): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}
