// JWT bearer authentication, once per distinct token: `Authorization: Bearer <jws>` is verified as a
// JWT-SVID (key from the JWT bundle of the sub's trust domain) or, when its `iss` is a configured issuer,
// as that issuer's token (Kubernetes service-account tokens map to SPIFFE IDs). Verified tokens are cached
// by their hash until they expire or the keys change, so a keep-alive caller pays one signature check per
// token, not per request. Never throws: failures are rejections with a bounded reason.
import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { isSidecarError } from '../errors.js';
import { parseSpiffeId, quoteInput, type SpiffeId } from '../spiffe/id.js';
import { ALLOWED_JWT_ALGS, type JWKS, verifyJwtSvid } from '../spiffe/jwtsvid.js';
import type { JwksProvider } from '../identity/jwks-provider.js';
import type { PeerIdentity, Rejection } from './identity.js';
import type { TokenReviewer } from './token-review.js';

export type JwtAuthnResult =
  { ok: true; identity: PeerIdentity } | { ok: false; rejection: Rejection; status: 401 | 503 };

export interface OidcIssuer {
  /** The name used in flags, headers and logs (`k8s`, `keycloak`). */
  readonly name: string;
  /** The exact `iss` its tokens carry. */
  readonly issuer: string;
  /** `k8s`: `system:serviceaccount:<ns>:<sa>` becomes spiffe://<trustDomain>/ns/<ns>/sa/<sa>. */
  readonly kind: 'oidc' | 'k8s';
  readonly k8sTrustDomain?: string;
  readonly keys: JwksProvider;
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
}

interface CacheEntry {
  identity: PeerIdentity;
  expiresAt: number;
  /** The key material it was verified with: a change of keys invalidates it. */
  keys: unknown;
  /** Confirmed by a TokenReview: a hit reuses that review (counted apart from reviews). */
  reviewed?: boolean;
}

/** RFC 6750 §2.1: `Bearer` (any case), one space, a b64token. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;
const K8S_SUBJECT = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;
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

function reject(reason: string, message: string, status: 401 | 503 = 401): JwtAuthnResult {
  return { ok: false, rejection: { reason, message }, status };
}

export class JwtAuthenticator {
  /** `reviewCacheHits`: cache hits of TokenReview-confirmed tokens (reviews not made again). */
  readonly counters = { verified: 0, cacheHits: 0, rejected: 0, reviewCacheHits: 0 };
  private readonly cache = new Map<string, CacheEntry>();
  private readonly issuersByIss: Map<string, OidcIssuer>;
  private readonly localSets = new WeakMap<JWKS, ReturnType<typeof createLocalJWKSet>>();

  constructor(private readonly options: JwtAuthenticatorOptions) {
    this.issuersByIss = new Map(options.issuers.map((i) => [i.issuer, i]));
  }

  async authenticate(authorization: string | undefined, now = Date.now()): Promise<JwtAuthnResult> {
    const result = await this.authenticateUncounted(authorization, now);
    if (!result.ok) this.counters.rejected++;
    return result;
  }

  private async authenticateUncounted(authorization: string | undefined, now: number): Promise<JwtAuthnResult> {
    if (!authorization) return reject('ERR_JWT_MISSING', 'no Authorization: Bearer token');
    const token = BEARER.exec(authorization)?.[1];
    if (!token) return reject('ERR_JWT_MALFORMED', 'the Authorization header is not "Bearer <token>"');
    const key = createHash('sha256').update(token).digest('base64url');
    const hit = this.cache.get(key);
    if (hit && now < hit.expiresAt && hit.keys === this.keysFor(hit.identity)) {
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
    try {
      const verified = issuer
        ? await this.verifyIssuerToken(issuer, token, now)
        : typeof claims.sub === 'string' && claims.sub.startsWith('spiffe://')
          ? await this.verifySvid(token, now)
          : undefined;
      if (!verified) {
        return reject('ERR_JWT_ISSUER_UNKNOWN', 'the token is neither a JWT-SVID nor from a configured --jwt-issuer');
      }
      if ('ok' in verified) return verified;
      this.counters.verified++;
      if (this.cache.size >= (this.options.cacheSize ?? 10_000))
        this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(key, verified);
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
      Object.entries(i.keys.failureCounts ?? {}).map(([reason, count]) => ({ issuer: i.name, reason, count })),
    );
  }

  /** The key material an identity was verified against, to detect rotation. */
  private keysFor(identity: PeerIdentity): unknown {
    if (identity.method === 'mtls' || identity.method === 'api-key') return undefined;
    if (identity.issuer === undefined) return this.options.svidBundles();
    const issuer = this.options.issuers.find((i) => i.name === identity.issuer);
    return issuer?.keys.current();
  }

  private async verifySvid(token: string, now: number): Promise<CacheEntry | JwtAuthnResult> {
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
    return {
      identity: {
        method: 'jwt-svid',
        id: verified.spiffeId,
        subject: verified.spiffeId.toString(),
        claims: verified.claims,
      },
      expiresAt: verified.expiresAt.getTime(),
      keys: bundles,
    };
  }

  private async verifyIssuerToken(
    issuer: OidcIssuer,
    token: string,
    now: number,
    retried = false,
  ): Promise<CacheEntry | JwtAuthnResult> {
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
        clockTolerance: this.options.clockToleranceSeconds ?? 60,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || retried) throw err;
      // The issuer may have rotated: one refresh (at most one per cool-down, see the providers), then this token
      // once more against the new keys, so that the first token of a new key is not refused.
      await issuer.keys.keyMissed();
      if (issuer.keys.current() === jwks) throw err;
      return this.verifyIssuerToken(issuer, token, now, true);
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0)
      return reject('ERR_JWT_SUBJECT', 'the token subject is not a string');
    // Never quoted in the message: that is exactly what cannot be trusted to print.
    if (!HEADER_SAFE_SUBJECT.test(payload.sub)) {
      return reject(
        'ERR_JWT_SUBJECT_UNSAFE',
        `"${issuer.name}" token subject cannot be carried in an HTTP header (visible ASCII only, at most 1024 characters)`,
      );
    }
    if (typeof payload.iat === 'number' && payload.iat > now / 1000 + (this.options.clockToleranceSeconds ?? 60)) {
      return reject('ERR_JWT_NOT_YET_VALID', 'the token was issued in the future (iat)');
    }
    const subject = payload.sub;
    const expiresAt = (payload.exp as number) * 1000;
    if (issuer.kind === 'k8s') {
      const m = K8S_SUBJECT.exec(subject);
      if (!m) return reject('ERR_JWT_SUBJECT', `"${issuer.name}" token subject is not a Kubernetes service account`);
      let id: SpiffeId;
      try {
        id = parseSpiffeId(`spiffe://${issuer.k8sTrustDomain}/ns/${m[1]}/sa/${m[3]}`);
      } catch {
        return reject('ERR_JWT_SUBJECT', `"${issuer.name}" token subject does not map to a SPIFFE ID`);
      }
      const review = this.options.tokenReview;
      if (review) {
        const verdict = await review.review(token, subject);
        if (verdict === 'unavailable') {
          return reject('ERR_JWT_TOKEN_REVIEW', 'the Kubernetes API server could not review the token', 503);
        }
        if (verdict === 'invalid') {
          return reject('ERR_JWT_TOKEN_REVIEW', 'the Kubernetes API server does not accept this token (deleted?)');
        }
      }
      // A reviewed token is reviewed again after the interval, so that a deleted pod's token stops working.
      const until = review ? Math.min(expiresAt, now + review.intervalMs) : expiresAt;
      return {
        identity: { method: 'k8s-sa', id, issuer: issuer.name, subject, claims: payload },
        expiresAt: until,
        keys: jwks,
        reviewed: review !== undefined,
      };
    }
    return { identity: { method: 'oidc', issuer: issuer.name, subject, claims: payload }, expiresAt, keys: jwks };
  }
}

/** jose's error codes, as bounded reasons in our naming. */
function joseReason(err: InstanceType<typeof joseErrors.JOSEError>): string {
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
