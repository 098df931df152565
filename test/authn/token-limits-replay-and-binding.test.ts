// The JwtAuthenticator's token rules with real jose-signed tokens: --max-token-lifetime (exp - iat), the jti
// replay cache, certificate-bound tokens (RFC 8705 §3, cnf x5t#S256, checked per connection even on cache
// hits), and --k8s-token-review-only against a real HTTPS fake API server (no keys: the review is the check).
import { createHash, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerReasonOf,
  JwtAuthenticator,
  type JwtAuthenticatorOptions,
  type JwtAuthnResult,
  type OidcIssuer,
} from '../../src/authn/jwt.js';
import { createTokenReviewer } from '../../src/authn/token-review.js';
import type { JWKS } from '../../src/spiffe/jwtsvid.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';

const K8S_ISS = 'https://kubernetes.default.svc.cluster.local';
const OIDC_ISS = 'https://idp.example.com/realms/ci';
const HOUR_S = 3600;
/** One fixed "now" (whole seconds), passed to every call: the time rules are exact, not raced against. */
const NOW_S = Math.floor(Date.now() / 1000);
const NOW = NOW_S * 1000;

let signingKey: CryptoKey;
let otherKey: CryptoKey;
let issuerKeys: JWKS;
let svidBundles: ReadonlyMap<string, JWKS>;
/** Two real client certificates: their DER's SHA-256, as cnf carries it and as the connection reports it. */
let certs: { thumbprint: string; hex: string }[];
let dir: { path: string; remove: () => Promise<void> };
let kube: KubeApi;
let tokenFile: string;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(pair.publicKey);
  signingKey = pair.privateKey;
  otherKey = (await generateKeyPair('ES256')).privateKey;
  issuerKeys = { keys: [{ ...publicJwk, kid: 'k1', alg: 'ES256', use: 'sig' }] } as JWKS;
  svidBundles = new Map([['example.org', { keys: [{ ...publicJwk, kid: 'k1', use: 'jwt-svid' }] } as JWKS]]);
  const ca = await createDevCa({ trustDomain: 'example.org' });
  certs = [];
  for (const id of ['spiffe://example.org/client', 'spiffe://example.org/thief']) {
    const der = new X509Certificate((await issueSvid(ca, { id })).certPem).raw;
    const digest = createHash('sha256').update(der).digest();
    certs.push({ thumbprint: digest.toString('base64url'), hex: digest.toString('hex') });
  }
  dir = await tempDir();
  kube = await startKubeApi();
  tokenFile = join(dir.path, 'token');
  await writeFile(tokenFile, `${kube.callerToken}\n`);
});
afterAll(async () => {
  await kube.close();
  await dir.remove();
});

const keys = () => ({ current: () => issuerKeys, version: 1, keyMissed: async () => {} });

function authenticator(options: Partial<JwtAuthenticatorOptions> = {}): JwtAuthenticator {
  const issuers: OidcIssuer[] = [
    { name: 'k8s', issuer: K8S_ISS, kind: 'k8s', k8sTrustDomain: 'cluster.local', keys: keys() },
    { name: 'ci', issuer: OIDC_ISS, kind: 'oidc', keys: keys() },
  ];
  return new JwtAuthenticator({ audience: ['orders'], svidBundles: () => svidBundles, issuers, ...options });
}

/** An authenticator whose Kubernetes issuer has no keys: TokenReview (the fake API server) verifies alone. */
function reviewOnly(options: Partial<JwtAuthenticatorOptions> = {}): JwtAuthenticator {
  return new JwtAuthenticator({
    audience: ['orders'],
    svidBundles: () => undefined,
    issuers: [{ name: 'k8s', issuer: K8S_ISS, kind: 'k8s', k8sTrustDomain: 'cluster.local' }],
    tokenReview: {
      review: createTokenReviewer({
        apiServer: kube.url,
        tokenFile,
        caPem: [kube.caPem],
        audiences: ['orders'],
      }),
      intervalMs: 60_000,
    },
    ...options,
  });
}

interface TokenOptions {
  iat?: number | null;
  exp?: number;
  aud?: string | string[];
  key?: CryptoKey;
  alg?: string;
}

/** A token with explicit times (seconds): `iat: null` leaves iat out. */
function sign(claims: JWTPayload, options: TokenOptions = {}): Promise<string> {
  const iat = options.iat === undefined ? NOW_S : options.iat;
  const jwt = new SignJWT({ ...claims, ...(iat === null ? {} : { iat }) })
    .setProtectedHeader({ alg: options.alg ?? 'ES256', kid: 'k1', typ: 'JWT' })
    .setAudience(options.aud ?? 'orders')
    .setExpirationTime(options.exp ?? NOW_S + 600);
  return jwt.sign(options.key ?? signingKey);
}

const svidToken = (extra: JWTPayload = {}, options?: TokenOptions) =>
  sign({ sub: 'spiffe://example.org/frontend', ...extra }, options);
const oidcToken = (extra: JWTPayload = {}, options?: TokenOptions) =>
  sign({ iss: OIDC_ISS, sub: 'ci-pipeline-42', ...extra }, options);
const saToken = (extra: JWTPayload = {}, options?: TokenOptions) =>
  sign({ iss: K8S_ISS, sub: 'system:serviceaccount:agents:worker', ...extra }, options);

/** A service-account token the fake API server knows as live. */
async function liveSaToken(extra: JWTPayload = {}, options?: TokenOptions): Promise<string> {
  const token = await saToken(extra, options);
  kube.live.set(token, 'system:serviceaccount:agents:worker');
  return token;
}

function refusal(result: JwtAuthnResult) {
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result.identity)}`);
  return { reason: result.rejection.reason, status: result.status, message: result.rejection.message };
}

const bearer = (token: string) => `Bearer ${token}`;

describe('--max-token-lifetime: exp - iat, for every kind of token', () => {
  const kinds = [
    ['JWT-SVID', svidToken, authenticator],
    ['OIDC', oidcToken, authenticator],
    ['service account', saToken, authenticator],
    ['service account, TokenReview alone', liveSaToken, reviewOnly],
  ] as const;

  it.each(kinds)('%s: exactly the limit is admitted, a second more is refused', async (_, token, make) => {
    const authn = make({ maxTokenLifetimeMs: HOUR_S * 1000 });
    const atLimit = await token({}, { iat: NOW_S - 60, exp: NOW_S - 60 + HOUR_S });
    expect((await authn.authenticate(bearer(atLimit), NOW)).ok).toBe(true);
    const over = await token({}, { iat: NOW_S - 60, exp: NOW_S - 60 + HOUR_S + 1 });
    const refused = refusal(await authn.authenticate(bearer(over), NOW));
    expect(refused).toMatchObject({ reason: 'ERR_JWT_LIFETIME', status: 401 });
    expect(refused.message).toContain('3601 s');
  });

  it.each(kinds)('%s: with a limit, a token without iat is refused, and says why', async (_, token, make) => {
    const noIat = await token({}, { iat: null });
    const refused = refusal(await make({ maxTokenLifetimeMs: HOUR_S * 1000 }).authenticate(bearer(noIat), NOW));
    expect(refused).toMatchObject({ reason: 'ERR_JWT_LIFETIME', status: 401 });
    expect(refused.message).toContain('no iat');
    // Without the limit, iat stays optional.
    expect((await make().authenticate(bearer(noIat), NOW)).ok).toBe(true);
  });

  it('a day-long token is fine without the limit', async () => {
    const long = await oidcToken({}, { exp: NOW_S + 24 * HOUR_S });
    expect((await authenticator().authenticate(bearer(long), NOW)).ok).toBe(true);
  });
});

describe('--jwt-replay-cache: a token with a jti is admitted once', () => {
  it('a second presentation is refused, even where the verified-token cache would hit', async () => {
    const authn = authenticator({ replayCacheSize: 100 });
    for (const token of [await svidToken({ jti: 'a' }), await oidcToken({ jti: 'a' }), await saToken({ jti: 'a' })]) {
      expect((await authn.authenticate(bearer(token), NOW)).ok).toBe(true);
      expect(refusal(await authn.authenticate(bearer(token), NOW))).toMatchObject({
        reason: 'ERR_JWT_REPLAYED',
        status: 401,
      });
    }
    // The same jti under three scopes (a trust domain, two issuers): three different tokens.
    expect(authn.counters).toMatchObject({ verified: 3, replayed: 3, rejected: 3, cacheHits: 0 });
  });

  it('another jti is another token; tokens without a jti are not affected (and cached as before)', async () => {
    const authn = authenticator({ replayCacheSize: 100 });
    expect((await authn.authenticate(bearer(await oidcToken({ jti: 'one' })), NOW)).ok).toBe(true);
    expect((await authn.authenticate(bearer(await oidcToken({ jti: 'two' })), NOW)).ok).toBe(true);
    const plain = await oidcToken();
    for (let i = 0; i < 3; i++) expect((await authn.authenticate(bearer(plain), NOW)).ok).toBe(true);
    expect(authn.counters).toMatchObject({ verified: 3, cacheHits: 2, rejected: 0 });
  });

  it('a refused token does not use up its jti: bad signature, too long a life, the wrong connection', async () => {
    const authn = authenticator({ replayCacheSize: 100, maxTokenLifetimeMs: HOUR_S * 1000 });
    const forged = await oidcToken({ jti: 'x' }, { key: otherKey });
    expect(refusal(await authn.authenticate(bearer(forged), NOW)).reason).toBe('ERR_JWT_SIGNATURE');
    const tooLong = await oidcToken({ jti: 'x' }, { exp: NOW_S + 2 * HOUR_S });
    expect(refusal(await authn.authenticate(bearer(tooLong), NOW)).reason).toBe('ERR_JWT_LIFETIME');
    const bound = await oidcToken({ jti: 'x', cnf: { 'x5t#S256': certs[0].thumbprint } });
    const elsewhere = { certificateSha256Hex: certs[1].hex };
    expect(refusal(await authn.authenticate(bearer(bound), NOW, elsewhere)).reason).toBe('ERR_JWT_CNF_MISMATCH');
    // The real owner, over its own certificate, is admitted once.
    const own = { certificateSha256Hex: certs[0].hex };
    expect((await authn.authenticate(bearer(bound), NOW, own)).ok).toBe(true);
    expect(refusal(await authn.authenticate(bearer(bound), NOW, own)).reason).toBe('ERR_JWT_REPLAYED');
  });

  it('of two presentations verified side by side, exactly one gets in', async () => {
    const authn = authenticator({ replayCacheSize: 100 });
    const token = await svidToken({ jti: 'race' });
    const results = await Promise.all([1, 2, 3].map(() => authn.authenticate(bearer(token), NOW)));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => refusal(r).reason)).toEqual([
      'ERR_JWT_REPLAYED',
      'ERR_JWT_REPLAYED',
    ]);
  });

  it('holds N live entries and then refuses new one-time tokens with 503, never evicting one alive', async () => {
    const authn = authenticator({ replayCacheSize: 2 });
    const [t1, t2, t3] = await Promise.all(['1', '2', '3'].map((jti) => oidcToken({ jti })));
    for (const t of [t1, t2]) expect((await authn.authenticate(bearer(t), NOW)).ok).toBe(true);
    const full = await authn.authenticate(bearer(t3), NOW);
    expect([full.ok, refusal(full).reason, !full.ok && full.status]).toEqual([false, 'ERR_JWT_REPLAY_CACHE_FULL', 503]);
    expect(authn.replayCacheStats()).toEqual({ size: 2, refusedFull: 1 });
    // Nothing was evicted: the first two are still refused as replays.
    expect(refusal(await authn.authenticate(bearer(t1), NOW)).reason).toBe('ERR_JWT_REPLAYED');
    expect(refusal(await authn.authenticate(bearer(t2), NOW)).reason).toBe('ERR_JWT_REPLAYED');
  });

  it('without the flag, a token with a jti is admitted as often as it comes', async () => {
    const authn = authenticator();
    const token = await oidcToken({ jti: 'a' });
    for (let i = 0; i < 2; i++) expect((await authn.authenticate(bearer(token), NOW)).ok).toBe(true);
    expect(authn.replayCacheStats()).toBeUndefined();
  });
});

describe('certificate-bound tokens (RFC 8705 §3): cnf x5t#S256 is the connection certificate', () => {
  const over = (i: number) => ({ certificateSha256Hex: certs[i].hex });

  it('over the certificate it names: admitted, for each kind of token', async () => {
    const authn = authenticator();
    for (const make of [svidToken, oidcToken, saToken]) {
      const token = await make({ cnf: { 'x5t#S256': certs[0].thumbprint } });
      expect((await authn.authenticate(bearer(token), NOW, over(0))).ok).toBe(true);
    }
  });

  it('without a certificate, or over another one: ERR_JWT_CNF_MISMATCH', async () => {
    const authn = authenticator();
    const token = await oidcToken({ cnf: { 'x5t#S256': certs[0].thumbprint } });
    for (const connection of [undefined, {}, over(1), { certificateSha256Hex: 'not hex' }]) {
      expect(refusal(await authn.authenticate(bearer(token), NOW, connection))).toMatchObject({
        reason: 'ERR_JWT_CNF_MISMATCH',
        status: 401,
      });
    }
  });

  it('a cached token is checked against each connection: a cache hit elsewhere is refused', async () => {
    const authn = authenticator();
    const token = await svidToken({ cnf: { 'x5t#S256': certs[0].thumbprint } });
    expect((await authn.authenticate(bearer(token), NOW, over(0))).ok).toBe(true);
    expect(refusal(await authn.authenticate(bearer(token), NOW, over(1))).reason).toBe('ERR_JWT_CNF_MISMATCH');
    expect(refusal(await authn.authenticate(bearer(token), NOW)).reason).toBe('ERR_JWT_CNF_MISMATCH');
    expect((await authn.authenticate(bearer(token), NOW, over(0))).ok).toBe(true);
    expect(authn.counters).toMatchObject({ verified: 1, cacheHits: 1, rejected: 2 });
  });

  it('a binding we cannot prove (DPoP jkt, a key, several methods, not an object) is refused: fail closed', async () => {
    const authn = authenticator();
    for (const cnf of [
      { jkt: certs[0].thumbprint },
      { jwk: { kty: 'EC' } },
      { 'x5t#S256': certs[0].thumbprint, jkt: certs[0].thumbprint },
      'bound',
      [certs[0].thumbprint],
    ]) {
      const token = await oidcToken({ cnf } as JWTPayload);
      expect(refusal(await authn.authenticate(bearer(token), NOW, over(0)))).toMatchObject({
        reason: 'ERR_JWT_CNF_UNSUPPORTED',
        status: 401,
      });
    }
  });

  it('a thumbprint that is no SHA-256 is a bad claim', async () => {
    const token = await oidcToken({ cnf: { 'x5t#S256': certs[0].hex } });
    expect(refusal(await authenticator().authenticate(bearer(token), NOW, over(0))).reason).toBe('ERR_JWT_CLAIM');
  });
});

describe('--k8s-token-review-only: TokenReview alone verifies service-account tokens', () => {
  it('a live token is admitted as its SPIFFE ID, reviewed once per interval (the cache counts the rest)', async () => {
    const authn = reviewOnly();
    const token = await liveSaToken();
    const reviews = kube.reviews;
    const result = await authn.authenticate(bearer(token), NOW);
    if (!result.ok) throw new Error(result.rejection.message);
    expect(result.identity.method).toBe('k8s-sa');
    expect(result.identity.id?.toString()).toBe('spiffe://cluster.local/ns/agents/sa/worker');
    expect((await authn.authenticate(bearer(token), NOW)).ok).toBe(true);
    expect(kube.reviews).toBe(reviews + 1);
    expect(authn.counters).toMatchObject({ verified: 1, cacheHits: 1, reviewCacheHits: 1 });
    // After the interval: reviewed again.
    expect((await authn.authenticate(bearer(token), NOW + 60_000)).ok).toBe(true);
    expect(kube.reviews).toBe(reviews + 2);
  });

  it('its signature is the API server’s business: a token it does not know is ERR_JWT_TOKEN_REVIEW (401)', async () => {
    const token = await saToken({}, { key: otherKey });
    const refused = refusal(await reviewOnly().authenticate(bearer(token), NOW));
    expect(refused).toMatchObject({ reason: 'ERR_JWT_TOKEN_REVIEW', status: 401 });
    expect(answerReasonOf({ reason: refused.reason, message: refused.message })).toBe('ERR_JWT_TOKEN_REVIEW');
  });

  it('an API server that cannot answer: 503 ERR_JWT_TOKEN_REVIEW_UNAVAILABLE, answered token_review_unavailable', async () => {
    const authn = reviewOnly();
    const token = await liveSaToken({ jti: 'outage' });
    kube.up = false;
    let refused: ReturnType<typeof refusal>;
    try {
      refused = refusal(await authn.authenticate(bearer(token), NOW));
    } finally {
      kube.up = true;
    }
    expect(refused).toMatchObject({ reason: 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE', status: 503 });
    expect(answerReasonOf({ reason: refused.reason, message: refused.message })).toBe('token_review_unavailable');
    // Not cached, and not counted as a use: once the API server is back the token gets in.
    expect((await authn.authenticate(bearer(token), NOW)).ok).toBe(true);
  });

  it('what can be checked without keys is checked before any review is made', async () => {
    const authn = reviewOnly({ maxTokenLifetimeMs: HOUR_S * 1000, replayCacheSize: 10 });
    const used = await liveSaToken({ jti: 'used' });
    expect((await authn.authenticate(bearer(used), NOW)).ok).toBe(true);
    const [header, payload] = (await liveSaToken()).split('.');
    const cases: [string, string][] = [
      [await liveSaToken({ iss: 'https://evil.example.com' }), 'ERR_JWT_ISSUER_UNKNOWN'],
      [await liveSaToken({}, { aud: 'payments' }), 'ERR_JWT_AUDIENCE'],
      [await liveSaToken({}, { iat: NOW_S - 700, exp: NOW_S - 61 }), 'ERR_JWT_EXPIRED'],
      [await liveSaToken({ sub: 'system:serviceaccount:Not_A_Namespace' }), 'ERR_JWT_SUBJECT'],
      [await liveSaToken({}, { exp: NOW_S + 2 * HOUR_S }), 'ERR_JWT_LIFETIME'],
      [await liveSaToken({ cnf: { 'x5t#S256': certs[0].thumbprint } }), 'ERR_JWT_CNF_MISMATCH'],
      [await liveSaToken({ cnf: { jkt: certs[0].thumbprint } }), 'ERR_JWT_CNF_UNSUPPORTED'],
      [await liveSaToken({ nbf: NOW_S + 600 }), 'ERR_JWT_CLAIM'],
      [await liveSaToken({}, { iat: NOW_S + 600, exp: NOW_S + 900 }), 'ERR_JWT_NOT_YET_VALID'],
      [await liveSaToken({}, { alg: 'ES384', key: (await generateKeyPair('ES384')).privateKey }), ''],
      [`${header}.${payload}.`, 'ERR_JWT_MALFORMED'],
      [used, 'ERR_JWT_REPLAYED'],
    ];
    // The ES384 token is well formed: the review decides (it is live), so it is the one admitted here.
    const reviews = kube.reviews;
    for (const [token, reason] of cases) {
      const result = await authn.authenticate(bearer(token), NOW);
      if (reason === '') expect(result.ok).toBe(true);
      else expect(refusal(result).reason, reason).toBe(reason);
    }
    expect(kube.reviews).toBe(reviews + 1);
  });

  it('an unsigned token (alg none) is refused before the review', async () => {
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const claims = { iss: K8S_ISS, sub: 'system:serviceaccount:agents:worker', aud: 'orders', exp: NOW_S + 60 };
    const reviews = kube.reviews;
    for (const [token, reason] of [
      [`${part({ alg: 'none' })}.${part(claims)}.`, 'ERR_JWT_MALFORMED'],
      [`${part({ alg: 'none' })}.${part(claims)}.c2ln`, 'ERR_JWT_ALG'],
      [`${part({ alg: 'HS256' })}.${part(claims)}.c2ln`, 'ERR_JWT_ALG'],
    ]) {
      expect(refusal(await reviewOnly().authenticate(bearer(token), NOW)).reason).toBe(reason);
    }
    expect(kube.reviews).toBe(reviews);
  });

  it('an issuer without keys needs TokenReview: refused at construction', () => {
    expect(
      () =>
        new JwtAuthenticator({
          audience: ['orders'],
          svidBundles: () => undefined,
          issuers: [{ name: 'k8s', issuer: K8S_ISS, kind: 'k8s', k8sTrustDomain: 'cluster.local' }],
        }),
    ).toThrow(/--jwt-issuer k8s: no keys/);
  });
});

describe('answerReasonOf: the word of the answer', () => {
  it('no_keys and token_review_unavailable for the 503s, the reason itself otherwise', () => {
    expect(answerReasonOf({ reason: 'ERR_JWT_NO_KEYS', message: '' })).toBe('no_keys');
    expect(answerReasonOf({ reason: 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE', message: '' })).toBe(
      'token_review_unavailable',
    );
    expect(answerReasonOf({ reason: 'ERR_JWT_REPLAYED', message: '' })).toBe('ERR_JWT_REPLAYED');
  });
});
