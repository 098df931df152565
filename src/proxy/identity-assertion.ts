// The signed identity assertion: a short-lived ES256 JWT, signed by this sidecar's own key, telling the app
// who was admitted and how, and the JWKS to check it with. Signing never fails once the key is loaded; a
// PEM that is not a P-256 private key is an ERR_KEY_PARSE, a bad lifetime a RangeError, both at startup.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { SidecarError } from '../errors.js';
import { type AuthMethod, describePeer, type PeerIdentity } from '../authn/identity.js';
import type { SpiffeId } from '../spiffe/id.js';

/**
 * What the assertion says about the caller, besides `iss`, `aud`, `iat` and `exp`: only what the sidecar
 * verified itself, never the caller's token or key and never claims the caller chose (a token's other
 * claims are the issuer's words, forwarded verbatim they would let one issuer's token speak for another).
 */
export interface AssertedCaller {
  /** The caller as the audit log names it: a SPIFFE ID, `ISSUER#SUBJECT` or `api-key:NAME`. */
  readonly sub: string;
  readonly auth_method: AuthMethod;
  /** The admitted SPIFFE ID (mtls, jwt-svid, k8s-sa). */
  readonly spiffe_id?: string;
  /** The configured name of the issuer that signed the caller's token (`--jwt-issuer`), not its URL. */
  readonly token_issuer?: string;
  /** The `sub` of the caller's token (jwt-svid, k8s-sa, oidc). */
  readonly token_subject?: string;
  /** The name the caller's API key is bound to (api-key). */
  readonly api_key_name?: string;
  /** The SPIFFE ID of the client certificate the caller's connection presented, when a token admitted it. */
  readonly certificate_spiffe_id?: string;
  /** The policy rule that admitted the request. */
  readonly rule?: string;
}

/**
 * The claims of an admitted caller. Built in one fixed order, so that equal callers give equal cache keys.
 * `certificate` is ignored for an mTLS caller: its certificate is the admitted identity, already `spiffe_id`.
 */
export function assertedCaller(
  peer: PeerIdentity,
  context: { readonly certificate?: SpiffeId; readonly rule?: string } = {},
): AssertedCaller {
  const caller: {
    -readonly [K in keyof AssertedCaller]: AssertedCaller[K];
  } = { sub: describePeer(peer), auth_method: peer.method };
  if (peer.id) caller.spiffe_id = peer.id.toString();
  if (peer.method === 'api-key') caller.api_key_name = peer.name;
  else if (peer.method !== 'mtls') {
    if (peer.issuer !== undefined) caller.token_issuer = peer.issuer;
    caller.token_subject = peer.subject;
  }
  if (context.certificate && peer.method !== 'mtls') caller.certificate_spiffe_id = context.certificate.toString();
  if (context.rule !== undefined) caller.rule = context.rule;
  return caller;
}

export interface IdentityAssertionOptions {
  /** `iss`: who signed, e.g. our own SPIFFE ID. */
  issuer: string;
  /** `aud`: the app the assertion is for. */
  audience: string;
  /** Lifetime of one assertion, whole seconds (at least 1). */
  ttlSeconds: number;
  /** A PKCS#8 PEM P-256 key (`--workers`: the primary's, so that every worker signs with one key); else a new one. */
  privateKeyPem?: string;
  /** The key itself, already loaded (the admin listener serves its JWKS from the same one); wins over the PEM. */
  key?: AssertionKey;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
  /** How many distinct callers' assertions are kept for reuse (default 10,000; oldest out first). */
  cacheSize?: number;
}

export interface AssertionJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
  readonly kid: string;
  readonly alg: 'ES256';
  readonly use: 'sig';
}

/** What the admin listener serves at /.well-known/jwks.json. */
export interface AssertionJwks {
  readonly keys: readonly AssertionJwk[];
}

export interface IdentityAssertion {
  /** The compact JWT for `caller`: synchronous, one ECDSA signature at most (see the cache below). */
  token(caller: AssertedCaller): string;
  jwks(): AssertionJwks;
}

/** The signing key and its public half. */
export interface AssertionKey {
  readonly privateKey: KeyObject;
  /** RFC 7638 JWK thumbprint (SHA-256). */
  readonly kid: string;
  readonly jwks: AssertionJwks;
}

const DEFAULT_CACHE_SIZE = 10_000;

/** A new P-256 key as PKCS#8 PEM: `--workers`' primary makes one and hands it to every worker. */
export function newAssertionKeyPem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

/** The key of `privateKeyPem`, or a new one that lives only in this process. */
export function assertionKey(privateKeyPem?: string): AssertionKey {
  let privateKey: KeyObject;
  if (privateKeyPem === undefined) {
    privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  } else {
    try {
      privateKey = createPrivateKey({ key: privateKeyPem, format: 'pem' });
    } catch (err) {
      throw new SidecarError('ERR_KEY_PARSE', 'identity assertion key: not a PEM private key', { cause: err });
    }
    if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new SidecarError('ERR_KEY_PARSE', 'identity assertion key: not a P-256 (ES256) EC key');
    }
  }
  const { x, y } = createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string; y: string };
  // RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace.
  const kid = createHash('sha256')
    .update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y }))
    .digest('base64url');
  return { privateKey, kid, jwks: { keys: [{ kty: 'EC', crv: 'P-256', x, y, kid, alg: 'ES256', use: 'sig' }] } };
}

interface Signed {
  readonly jwt: string;
  /** `exp` in milliseconds. */
  readonly expiresAt: number;
}

export function createIdentityAssertion(options: IdentityAssertionOptions): IdentityAssertion {
  const { issuer, audience, ttlSeconds } = options;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be a whole number ≥ 1');
  const now = options.now ?? Date.now;
  const cacheSize = Math.max(1, options.cacheSize ?? DEFAULT_CACHE_SIZE);
  const key = options.key ?? assertionKey(options.privateKeyPem);
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: key.kid })).toString('base64url');
  // A keep-alive caller sends many requests as one identity: one signature per half lifetime, not per
  // request. Map order is insertion order, so the first key is the oldest (FIFO: no bookkeeping per hit).
  const cache = new Map<string, Signed>();
  const ttlMs = ttlSeconds * 1000;

  const signFor = (caller: AssertedCaller, at: number): Signed => {
    const iat = Math.floor(at / 1000);
    const exp = iat + ttlSeconds;
    // The registered claims last: an object that is more than an AssertedCaller cannot replace them.
    const payload = Buffer.from(JSON.stringify({ ...caller, iss: issuer, aud: audience, iat, exp })).toString(
      'base64url',
    );
    const input = `${header}.${payload}`;
    // JWS (RFC 7518 §3.4) wants R‖S, not DER.
    const signature = sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    return { jwt: `${input}.${signature.toString('base64url')}`, expiresAt: exp * 1000 };
  };

  return {
    token(caller) {
      const at = now();
      const cacheKey = JSON.stringify(caller);
      const cached = cache.get(cacheKey);
      // "More than half its lifetime left" is measured from `exp` (whole seconds, rounded down). More left
      // than a whole lifetime means the clock stepped back: sign anew rather than hand out a token from the future.
      const left = cached ? cached.expiresAt - at : 0;
      if (cached && left > ttlMs / 2 && left <= ttlMs) return cached.jwt;
      const fresh = signFor(caller, at);
      if (cached) cache.delete(cacheKey);
      else if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
      cache.set(cacheKey, fresh);
      return fresh.jwt;
    },
    jwks: () => key.jwks,
  };
}
