// JWT bearer authentication, once per distinct token: `Authorization: Bearer <jws>` is verified as a
// JWT-SVID (key from the JWT bundle of the sub's trust domain) or, when its `iss` is a configured issuer,
// as that issuer's token (Kubernetes service-account tokens map to SPIFFE IDs; with --k8s-token-review-only
// the API server's TokenReview is their only signature check). Verified tokens are cached by their hash until
// they expire or the keys change, so a keep-alive caller pays one signature check per token, not per request;
// what depends on the connection (a certificate-bound token's `cnf`) is checked on every request. Never
// throws: failures are rejections with a bounded reason.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { isSidecarError, SidecarError, type SidecarErrorCode } from '../errors.js';
import { parseSpiffeId, quoteInput, type SpiffeId } from '../spiffe/id.js';
import { ALLOWED_JWT_ALGS, type JWKS, type JwtErrorCode, verifyJwtSvid } from '../spiffe/jwtsvid.js';
import type { JwksProvider } from '../identity/jwks-provider.js';
import type { PeerIdentity, Rejection } from './identity.js';
import { createReplayCache, type ReplayCache, type ReplayCacheStats } from './replay-cache.js';
import type { TokenReviewer } from './token-review.js';

/**
 * Every reason a token is refused with. Beyond the catalogue's ERR_JWT_* codes: a replayed jti, a
 * certificate-bound token on the wrong connection or bound to what we cannot check, and a TokenReview
 * that could not be made (503, unlike ERR_JWT_TOKEN_REVIEW: the API server refused the token, 401).
 */
export type JwtRejectionReason =
  | JwtErrorCode
  | 'ERR_JWT_REPLAYED'
  | 'ERR_JWT_CNF_MISMATCH'
  | 'ERR_JWT_CNF_UNSUPPORTED'
  | 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE'
  | 'ERR_JWT_REPLAY_CACHE_FULL';

export type JwtAuthnResult = { ok: true; identity: PeerIdentity } | Refused;

type Refused = { ok: false; rejection: Rejection; status: 401 | 503 };

/** What the token is presented over, for the checks that depend on it (RFC 8705 §3 certificate binding). */
export interface TokenConnection {
  /** SHA-256 of the verified client certificate's DER, lowercase hex (as `PeerIdentity.leafSha256` holds it). */
  readonly certificateSha256Hex?: string;
}

export interface OidcIssuer {
  /** The name used in flags, headers and logs (`k8s`, `keycloak`). */
  readonly name: string;
  /** The exact `iss` its tokens carry. */
  readonly issuer: string;
  /** `k8s`: `system:serviceaccount:<ns>:<sa>` becomes spiffe://<trustDomain>/ns/<ns>/sa/<sa>. */
  readonly kind: 'oidc' | 'k8s';
  readonly k8sTrustDomain?: string;
  /**
   * Its keys. None: a Kubernetes issuer whose tokens TokenReview alone verifies (`--k8s-token-review-only`),
   * so the authenticator must have a `tokenReview`.
   */
  readonly keys?: JwksProvider;
}

export interface JwtAuthenticatorOptions {
  audience: readonly string[];
  /** JWT-SVID bundles by trust domain; undefined when none are configured. */
  svidBundles: () => ReadonlyMap<string, JWKS> | undefined;
  issuers: readonly OidcIssuer[];
  cacheSize?: number;
  clockToleranceSeconds?: number;
  /** Kubernetes issuers: confirm tokens with the API server, again after `intervalMs`. */
  tokenReview?: { review: TokenReviewer; intervalMs: number };
  /** `--max-token-lifetime`: refuse a token whose `exp - iat` is longer, or that has no `iat`. */
  maxTokenLifetimeMs?: number;
  /** `--jwt-replay-cache`: admit each `jti` once, remembering this many. */
  replayCacheSize?: number;
}

interface CacheEntry {
  identity: PeerIdentity;
  expiresAt: number;
  /** The key material it was verified with: a change of keys invalidates it. */
  keys: unknown;
  /** Confirmed by a TokenReview: a hit reuses that review (counted apart from reviews). */
  reviewed?: boolean;
  /** `cnf.x5t#S256`: the client certificate (SHA-256 of its DER) every request must come over. */
  boundTo?: Buffer;
  /** With the replay cache on: the token's jti, admitted once, remembered until `exp` (ms) and the tolerance. */
  jti?: { value: string; until: number };
}

/** Claims verified (or, for TokenReview alone, checked and about to be reviewed). */
type Claims = Readonly<Record<string, unknown>>;

/** RFC 6750 §2.1: `Bearer` (any case), one space, a b64token. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;
/** RFC 7515 §7.1 compact serialization, signed (a non-empty signature): what TokenReview alone accepts. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const K8S_SUBJECT = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;
/** RFC 8705 §3.1: `x5t#S256` is the base64url (unpadded) SHA-256 of the certificate's DER: 43 characters. */
const X5T_S256 = /^[A-Za-z0-9_-]{43}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/i;
/**
 * A subject the app receives in a header (`--jwt-subject-header`): visible ASCII only, bounded. Anything else
 * (non-ASCII, controls, spaces) would be refused by Node when forwarding, or mangled, or split a log line.
 */
const HEADER_SAFE_SUBJECT = /^[\x21-\x7e]{1,1024}$/;
/**
 * Token types of access tokens (RFC 9068 §2.1 `at+jwt`, or plain `JWT`), compared as RFC 7515 §4.1.9 says:
 * case-insensitively, `application/` optional. Any other explicit type (a logout token, a security event,
 * a DPoP proof, …) is a JWT meant for something else and must not open the door (RFC 8725 §3.11).
 */
const ACCESS_TOKEN_TYPES = new Set(['jwt', 'at+jwt']);

function isAccessTokenType(typ: unknown): boolean {
  if (typ === undefined) return true;
  if (typeof typ !== 'string') return false;
  const lower = typ.toLowerCase();
  return ACCESS_TOKEN_TYPES.has(lower.startsWith('application/') ? lower.slice('application/'.length) : lower);
}

function reject(reason: JwtRejectionReason | SidecarErrorCode, message: string, status: 401 | 503 = 401): Refused {
  return { ok: false, rejection: { reason, message }, status };
}

function isRejection(value: unknown): value is Refused {
  return typeof value === 'object' && value !== null && (value as { ok?: unknown }).ok === false;
}

// Here once; in identity.ts so that admission reads it without loading jose (startup: file mode never verifies a JWT).
export { answerReasonOf } from './identity.js';

export class JwtAuthenticator {
  /**
   * `reviewCacheHits`: cache hits of TokenReview-confirmed tokens (reviews not made again); `replayed`: tokens
   * refused because their jti was admitted before (ERR_JWT_REPLAYED, also counted in `rejected`).
   */
  readonly counters = { verified: 0, cacheHits: 0, rejected: 0, reviewCacheHits: 0, replayed: 0 };
  private readonly cache = new Map<string, CacheEntry>();
  private readonly issuersByIss: Map<string, OidcIssuer>;
  private readonly localSets = new WeakMap<JWKS, ReturnType<typeof createLocalJWKSet>>();
  private readonly replay: ReplayCache | undefined;

  constructor(private readonly options: JwtAuthenticatorOptions) {
    this.issuersByIss = new Map(options.issuers.map((i) => [i.issuer, i]));
    // An issuer with no keys and no review would admit unverified tokens: refuse to start.
    for (const i of options.issuers) {
      if (!i.keys && (i.kind !== 'k8s' || !options.tokenReview))
        throw new SidecarError(
          'ERR_CONFIG_INVALID',
          `--jwt-issuer ${i.name}: no keys to verify its tokens with; only a Kubernetes issuer with --k8s-token-review-only goes without`,
        );
    }
    this.replay = options.replayCacheSize === undefined ? undefined : createReplayCache(options.replayCacheSize);
  }

  /**
   * The caller of one request. `connection`: what the request came over; a certificate-bound token (`cnf`)
   * is admitted only over the certificate it names, checked on every call (also when the token is cached).
   */
  async authenticate(
    authorization: string | undefined,
    now = Date.now(),
    connection?: TokenConnection,
  ): Promise<JwtAuthnResult> {
    const result = await this.authenticateUncounted(authorization, now, connection);
    if (!result.ok) {
      this.counters.rejected++;
      if (result.rejection.reason === 'ERR_JWT_REPLAYED') this.counters.replayed++;
    }
    return result;
  }

  /** `--jwt-replay-cache`: how full it is and how many live entries it had to evict; undefined when off. */
  replayCacheStats(): ReplayCacheStats | undefined {
    return this.replay?.stats();
  }

  private async authenticateUncounted(
    authorization: string | undefined,
    now: number,
    connection: TokenConnection | undefined,
  ): Promise<JwtAuthnResult> {
    if (!authorization) return reject('ERR_JWT_MISSING', 'no Authorization: Bearer token');
    const token = BEARER.exec(authorization)?.[1];
    if (!token) return reject('ERR_JWT_MALFORMED', 'the Authorization header is not "Bearer <token>"');
    const key = createHash('sha256').update(token).digest('base64url');
    const hit = this.cache.get(key);
    if (hit && now < hit.expiresAt && hit.keys === this.keysFor(hit.identity)) {
      // The cache is per token, the binding per connection: a stolen bound token stays useless from a cache hit.
      const unbound = hit.boundTo && checkBinding(hit.boundTo, connection);
      if (unbound) return unbound;
      this.counters.cacheHits++;
      if (hit.reviewed) this.counters.reviewCacheHits++;
      return { ok: true, identity: hit.identity };
    }
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(token);
    } catch {
      return reject('ERR_JWT_MALFORMED', 'the bearer token is not a JWT');
    }
    const issuer = typeof claims.iss === 'string' ? this.issuersByIss.get(claims.iss) : undefined;
    const svid = !issuer && typeof claims.sub === 'string' && claims.sub.startsWith('spiffe://');
    const scope = issuer ? `iss:${issuer.issuer}` : svid ? svidScope(claims.sub as string) : undefined;
    // Before any signature check or review: a jti already admitted costs nothing more. Only a verified token
    // records its jti (below), so a forged one cannot use up a real token's.
    if (this.replay && scope && typeof claims.jti === 'string' && this.replay.seen(scope, claims.jti, now))
      return replayed();
    try {
      const verified = issuer
        ? await this.verifyIssuerToken(issuer, token, claims, now, connection)
        : svid
          ? await this.verifySvid(token, now, connection)
          : undefined;
      if (!verified) {
        return reject('ERR_JWT_ISSUER_UNKNOWN', 'the token is neither a JWT-SVID nor from a configured --jwt-issuer');
      }
      if (isRejection(verified)) return verified;
      // A token admitted once is never admitted again: caching it would only hold memory. Checked and recorded
      // in one step, so that of two presentations verified side by side only one gets in.
      if (verified.jti) {
        const once = this.replay?.admitOnce(scope as string, verified.jti.value, verified.jti.until, now);
        if (once === 'full')
          return reject(
            'ERR_JWT_REPLAY_CACHE_FULL',
            'every --jwt-replay-cache entry holds a live one-time token: raise N (nothing is evicted alive)',
            503,
          );
        if (once !== 'admitted') return replayed();
      } else {
        if (this.cache.size >= (this.options.cacheSize ?? 10_000))
          this.cache.delete(this.cache.keys().next().value as string);
        this.cache.set(key, verified);
      }
      this.counters.verified++;
      return { ok: true, identity: verified.identity };
    } catch (err) {
      if (isSidecarError(err)) return reject(err.code, err.message);
      if (err instanceof joseErrors.JOSEError) return reject(joseReason(err), err.message);
      return reject('ERR_JWT_INVALID', (err as Error).message);
    }
  }

  /** Failed key refreshes per issuer name and reason, for the metrics. */
  jwksFailures(): { issuer: string; reason: string; count: number }[] {
    return this.options.issuers.flatMap((i) =>
      Object.entries(i.keys?.failureCounts ?? {}).map(([reason, count]) => ({ issuer: i.name, reason, count })),
    );
  }

  private toleranceSeconds(): number {
    return this.options.clockToleranceSeconds ?? 60;
  }

  /** The key material an identity was verified against, to detect rotation (none: TokenReview alone). */
  private keysFor(identity: PeerIdentity): unknown {
    if (identity.method === 'mtls' || identity.method === 'api-key') return undefined;
    if (identity.issuer === undefined) return this.options.svidBundles();
    const issuer = this.options.issuers.find((i) => i.name === identity.issuer);
    return issuer?.keys?.current();
  }

  /**
   * The rules of this sidecar on a token whose claims are verified (or about to be reviewed): its lifetime,
   * its certificate binding, and its jti when jtis are tracked. Returns what the cache entry keeps of them.
   */
  private tokenRules(
    claims: Claims,
    connection: TokenConnection | undefined,
  ): Pick<CacheEntry, 'boundTo' | 'jti'> | Refused {
    const max = this.options.maxTokenLifetimeMs;
    if (max !== undefined) {
      const { iat, exp } = claims;
      if (typeof iat !== 'number')
        return reject('ERR_JWT_LIFETIME', 'the token has no iat claim, so its lifetime cannot be bounded');
      // A property of the token: checked here, when it is verified, never again from the cache.
      if (((exp as number) - iat) * 1000 > max) {
        return reject(
          'ERR_JWT_LIFETIME',
          `the token lives ${(exp as number) - iat} s (exp - iat), longer than the ${max / 1000} s allowed`,
        );
      }
    }
    const boundTo = bindingOf(claims.cnf);
    if (isRejection(boundTo)) return boundTo;
    const unbound = boundTo && checkBinding(boundTo, connection);
    if (unbound) return unbound;
    // Tokens without a jti cannot be told apart from their replays: the cache leaves them alone.
    if (!this.replay || claims.jti === undefined) return { boundTo };
    if (typeof claims.jti !== 'string') return reject('ERR_JWT_CLAIM', 'the token jti claim is not a string');
    // Remembered as long as the token is accepted: until exp, and the clock tolerance after it.
    return { boundTo, jti: { value: claims.jti, until: ((claims.exp as number) + this.toleranceSeconds()) * 1000 } };
  }

  private async verifySvid(
    token: string,
    now: number,
    connection: TokenConnection | undefined,
  ): Promise<CacheEntry | Refused> {
    const bundles = this.options.svidBundles();
    if (!bundles || bundles.size === 0) return reject('ERR_JWT_NO_KEYS', 'no JWT bundle has been loaded yet', 503);
    const verified = await verifyJwtSvid(token, bundles, {
      audience: [...this.options.audience],
      now: new Date(now),
      clockToleranceSeconds: this.options.clockToleranceSeconds,
    });
    // Kubernetes service accounts own their trust domain: no JWT-SVID may speak in its name.
    if (this.options.issuers.some((i) => i.kind === 'k8s' && i.k8sTrustDomain === verified.spiffeId.trustDomain)) {
      return reject(
        'ERR_JWT_SUBJECT',
        `trust domain "${verified.spiffeId.trustDomain}" is reserved for Kubernetes service accounts`,
      );
    }
    const rules = this.tokenRules(verified.claims, connection);
    if (isRejection(rules)) return rules;
    return {
      identity: {
        method: 'jwt-svid',
        id: verified.spiffeId,
        subject: verified.spiffeId.toString(),
        claims: verified.claims,
      },
      expiresAt: verified.expiresAt.getTime(),
      keys: bundles,
      ...rules,
    };
  }

  private async verifyIssuerToken(
    issuer: OidcIssuer,
    token: string,
    claims: Claims,
    now: number,
    connection: TokenConnection | undefined,
    retried = false,
  ): Promise<CacheEntry | Refused> {
    if (!issuer.keys) {
      const checked = this.checkUnverified(token, claims, now);
      return checked ?? this.admitIssuerToken(issuer, token, claims, undefined, now, connection);
    }
    const jwks = issuer.keys.current();
    if (!jwks) return reject('ERR_JWT_NO_KEYS', `no keys of issuer "${issuer.name}" have been loaded yet`, 503);
    const header = decodeProtectedHeader(token);
    // As for JWT-SVIDs: a key is named, never guessed among several.
    if (typeof header.kid !== 'string') return reject('ERR_JWT_HEADER', 'token header missing key id');
    if (!isAccessTokenType(header.typ)) {
      return reject(
        'ERR_JWT_HEADER',
        `token type ${quoteInput(String(header.typ))} is not an access token (JWT, at+jwt or none)`,
      );
    }
    let local = this.localSets.get(jwks);
    if (!local) {
      local = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
      this.localSets.set(jwks, local);
    }
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(token, local, {
        issuer: issuer.issuer,
        audience: [...this.options.audience],
        algorithms: [...ALLOWED_JWT_ALGS],
        clockTolerance: this.toleranceSeconds(),
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || retried) throw err;
      // The issuer may have rotated: one refresh (at most one per cool-down, see the providers), then this token
      // once more against the new keys, so that the first token of a new key is not refused.
      await issuer.keys.keyMissed();
      if (issuer.keys.current() === jwks) throw err;
      return this.verifyIssuerToken(issuer, token, claims, now, connection, true);
    }
    return this.admitIssuerToken(issuer, token, payload, jwks, now, connection);
  }

  /**
   * `--k8s-token-review-only`: what can be checked of a token without its issuer's keys, before the API
   * server is asked (a token refused here costs no review): the form of a signed compact JWS, its header,
   * `exp`, `nbf` and `aud` as jose checks them for the other issuers. `iss` chose the issuer already.
   */
  private checkUnverified(token: string, claims: Claims, now: number): Refused | undefined {
    if (!COMPACT_JWS.test(token))
      return reject('ERR_JWT_MALFORMED', 'the token is not a signed JWS in compact serialization');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return reject('ERR_JWT_MALFORMED', 'the token header is not a JSON object');
    }
    if (typeof header.alg !== 'string' || !ALLOWED_JWT_ALGS.includes(header.alg))
      return reject('ERR_JWT_ALG', `token header algorithm ${quoteInput(String(header.alg))} is not allowed`);
    if (!isAccessTokenType(header.typ)) {
      return reject(
        'ERR_JWT_HEADER',
        `token type ${quoteInput(String(header.typ))} is not an access token (JWT, at+jwt or none)`,
      );
    }
    if (header.crit !== undefined)
      return reject('ERR_JWT_HEADER', 'token header has "crit"; no extension is supported');
    const nowSeconds = Math.floor(now / 1000);
    const tolerance = this.toleranceSeconds();
    for (const name of ['exp', 'nbf', 'iat'] as const) {
      const value = claims[name];
      if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value)))
        return reject('ERR_JWT_CLAIM', `the token ${name} claim is not a number`);
    }
    if (claims.exp === undefined) return reject('ERR_JWT_CLAIM', 'the token has no exp claim');
    if (claims.sub === undefined) return reject('ERR_JWT_CLAIM', 'the token has no sub claim');
    if ((claims.exp as number) <= nowSeconds - tolerance) return reject('ERR_JWT_EXPIRED', 'the token has expired');
    if (claims.nbf !== undefined && (claims.nbf as number) > nowSeconds + tolerance)
      return reject('ERR_JWT_CLAIM', 'the token is not valid yet (nbf)');
    const aud = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
    if (!Array.isArray(aud) || !aud.some((a) => typeof a === 'string' && this.options.audience.includes(a)))
      return reject('ERR_JWT_AUDIENCE', 'the token is not for this audience');
    return undefined;
  }

  /**
   * An issuer's token whose signature and standard claims are checked (or, without keys, about to be
   * reviewed): its subject, our rules, and for Kubernetes the service account and the TokenReview.
   */
  private async admitIssuerToken(
    issuer: OidcIssuer,
    token: string,
    payload: Claims,
    jwks: JWKS | undefined,
    now: number,
    connection: TokenConnection | undefined,
  ): Promise<CacheEntry | Refused> {
    if (typeof payload.sub !== 'string' || payload.sub.length === 0)
      return reject('ERR_JWT_SUBJECT', 'the token subject is not a string');
    // Never quoted in the message: that is exactly what cannot be trusted to print.
    if (!HEADER_SAFE_SUBJECT.test(payload.sub)) {
      return reject(
        'ERR_JWT_SUBJECT_UNSAFE',
        `"${issuer.name}" token subject cannot be carried in an HTTP header (visible ASCII only, at most 1024 characters)`,
      );
    }
    if (typeof payload.iat === 'number' && payload.iat > now / 1000 + this.toleranceSeconds()) {
      return reject('ERR_JWT_NOT_YET_VALID', 'the token was issued in the future (iat)');
    }
    const subject = payload.sub;
    const expiresAt = (payload.exp as number) * 1000;
    let id: SpiffeId | undefined;
    if (issuer.kind === 'k8s') {
      const m = K8S_SUBJECT.exec(subject);
      if (!m) return reject('ERR_JWT_SUBJECT', `"${issuer.name}" token subject is not a Kubernetes service account`);
      try {
        id = parseSpiffeId(`spiffe://${issuer.k8sTrustDomain}/ns/${m[1]}/sa/${m[3]}`);
      } catch {
        return reject('ERR_JWT_SUBJECT', `"${issuer.name}" token subject does not map to a SPIFFE ID`);
      }
    }
    const rules = this.tokenRules(payload, connection);
    if (isRejection(rules)) return rules;
    if (!id) {
      return {
        identity: { method: 'oidc', issuer: issuer.name, subject, claims: payload },
        expiresAt,
        keys: jwks,
        ...rules,
      };
    }
    const review = this.options.tokenReview;
    if (review) {
      const verdict = await review.review(token, subject);
      if (verdict === 'unavailable') {
        return reject('ERR_JWT_TOKEN_REVIEW_UNAVAILABLE', 'the Kubernetes API server could not review the token', 503);
      }
      if (verdict === 'invalid') {
        return reject('ERR_JWT_TOKEN_REVIEW', 'the Kubernetes API server does not accept this token (deleted?)');
      }
    }
    // A reviewed token is reviewed again after the interval, so that a deleted pod's token stops working.
    return {
      identity: { method: 'k8s-sa', id, issuer: issuer.name, subject, claims: payload },
      expiresAt: review ? Math.min(expiresAt, now + review.intervalMs) : expiresAt,
      keys: jwks,
      reviewed: review !== undefined,
      ...rules,
    };
  }
}

function replayed(): Refused {
  return reject('ERR_JWT_REPLAYED', 'the token jti was admitted before: each such token is admitted once');
}

/** A JWT-SVID's replay scope: the trust domain whose keys sign it (none for what is no SPIFFE ID). */
function svidScope(sub: string): string | undefined {
  try {
    return `td:${parseSpiffeId(sub).trustDomain}`;
  } catch {
    // verifySvid refuses it and says why; no jti of it is ever recorded.
    return undefined;
  }
}

/**
 * RFC 8705 §3.1 / RFC 7800: the certificate a token is bound to, from its `cnf`. Only `x5t#S256` can be
 * proved here (by the TLS handshake); any other confirmation method (`jkt` for DPoP, `jwk`, …) cannot, so
 * such a token is refused rather than used as a bearer token. RFC 7800 §3.1: one method per `cnf`.
 */
function bindingOf(cnf: unknown): Buffer | undefined | Refused {
  if (cnf === undefined) return undefined;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf))
    return reject('ERR_JWT_CNF_UNSUPPORTED', 'the token cnf claim is not an object');
  const members = Object.keys(cnf);
  if (members.length !== 1 || members[0] !== 'x5t#S256') {
    return reject(
      'ERR_JWT_CNF_UNSUPPORTED',
      'the token cnf claim binds it to a proof of possession this sidecar cannot check (only x5t#S256 alone is)',
    );
  }
  const thumbprint = (cnf as Record<string, unknown>)['x5t#S256'];
  if (typeof thumbprint !== 'string' || !X5T_S256.test(thumbprint))
    return reject('ERR_JWT_CLAIM', 'the token cnf x5t#S256 is not a base64url SHA-256 thumbprint');
  return Buffer.from(thumbprint, 'base64url');
}

/** Whether the connection's verified client certificate is the one a token is bound to; a rejection if not. */
function checkBinding(boundTo: Buffer, connection: TokenConnection | undefined): Refused | undefined {
  const hex = connection?.certificateSha256Hex;
  if (hex === undefined)
    return reject('ERR_JWT_CNF_MISMATCH', 'the token is bound to a client certificate and the connection has none');
  if (SHA256_HEX.test(hex) && timingSafeEqual(boundTo, Buffer.from(hex, 'hex'))) return undefined;
  return reject('ERR_JWT_CNF_MISMATCH', 'the token is bound to another client certificate than the connection has');
}

/** jose's error codes, as bounded reasons in our naming. */
function joseReason(err: InstanceType<typeof joseErrors.JOSEError>): JwtErrorCode {
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return 'ERR_JWT_EXPIRED';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return (err as InstanceType<typeof joseErrors.JWTClaimValidationFailed>).claim === 'aud'
        ? 'ERR_JWT_AUDIENCE'
        : 'ERR_JWT_CLAIM';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'ERR_JWT_KEY_NOT_FOUND';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'ERR_JWT_SIGNATURE';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'ERR_JWT_ALG';
    default:
      return 'ERR_JWT_INVALID';
  }
}
