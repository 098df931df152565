// JWT-SVID verification (JWT-SVID.md §1-4, VERIFIER-RULES section E): a JWS in compact serialization whose
// `sub` is a SPIFFE ID, signed by a key of the JWT bundle of that SPIFFE ID's OWN trust domain. This file
// owns the token rules (serialization, header, claims, times, audience) and the choice of key; `jose` only
// checks the signature with the key we hand it, so no header can ever choose or carry the key.
// Every failure throws a SidecarError whose code (JwtErrorCode, or ERR_CONFIG_INVALID for bad options or
// bundles) names the rule. Checks run cheapest and key-free first: the `alg` allow-list is applied before
// any bundle is even looked at (E2).
import { type CryptoKey, compactVerify, importJWK } from 'jose';
import { SidecarError, type SidecarErrorCode } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, quoteInput, type SpiffeId } from './id.js';

/** A JSON Web Key as found in a JWT bundle (RFC 7517); only the public members are ever used. */
export interface JWK {
  kty: string;
  kid?: string;
  use?: string;
  alg?: string;
  [k: string]: unknown;
}

/** A JWK Set: the JWT bundle of one trust domain. */
export interface JWKS {
  keys: JWK[];
  /** SPIFFE bundle members (Trust Domain and Bundle §4.1): either one says the document is a SPIFFE bundle. */
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

export interface VerifyJwtOptions {
  /** Required, non-empty: at least one of these must be in the token's `aud`. */
  audience: string[];
  /** The time to check `exp`, `nbf` and `iat` at; defaults to now. */
  now?: Date;
  /** Leeway for clock skew between issuer and us, in seconds; defaults to 60 (go-jose, Envoy). */
  clockToleranceSeconds?: number;
  /** Optional cap on `exp - now` (E16, like Envoy `max_lifetime`), in seconds. */
  maxLifetimeSeconds?: number;
}

export interface VerifiedJwtSvid {
  spiffeId: SpiffeId;
  /** The whole verified claims set, including claims this module does not interpret. */
  claims: Record<string, unknown>;
  expiresAt: Date;
}

/** The codes this module throws, besides ERR_CONFIG_INVALID: the ERR_JWT_ part of the one catalogue. */
export type JwtErrorCode = Extract<SidecarErrorCode, `ERR_JWT_${string}`>;

/** JWT-SVID.md §2.1: RFC 7518 §3.3 (RS*), §3.4 (ES*) and §3.5 (PS*). Nothing else, ever. */
export type JwtSvidAlgorithm = 'RS256' | 'RS384' | 'RS512' | 'ES256' | 'ES384' | 'ES512' | 'PS256' | 'PS384' | 'PS512';

/** The allow-list the header check applies (E2); frozen. */
export const ALLOWED_JWT_ALGS: readonly string[] = Object.freeze([
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] satisfies JwtSvidAlgorithm[]);

/** The key each algorithm needs: RS and PS take any RSA key, each ES size its own curve (RFC 7518 §3.4). */
const KEY_FOR_ALG: Readonly<Record<JwtSvidAlgorithm, { kty: 'RSA' } | { kty: 'EC'; crv: string }>> = {
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
};

/**
 * Header members that carry or locate a key (RFC 7515 §4.1.2-4.1.6). The key must come from the bundle
 * only (E3), and SPIFFE issuers never send these (JWT-SVID §2 forbids any header it does not describe),
 * so a token with one is refused outright rather than silently ignored: it is either broken or an attempt
 * to make some verifier trust a key the token brought along.
 */
const KEY_CARRYING_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;

/**
 * A bound on the token before any decoding. Node caps all request headers at 16 KiB by default, and a
 * JWT-SVID is well under 2 KiB; this only stops a caller that hands us something absurd.
 */
const MAX_TOKEN_LENGTH = 64 * 1024;
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 60;
/** The ECMAScript Date range, in ms: a time claim beyond it cannot be an expiry we can represent. */
const MAX_DATE_MS = 8.64e15;

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function fail(code: JwtErrorCode | 'ERR_CONFIG_INVALID', message: string, cause?: unknown): never {
  throw new SidecarError(code, message, cause === undefined ? undefined : { cause });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkOptions(options: VerifyJwtOptions): { nowMs: number; toleranceMs: number; maxLifetimeMs?: number } {
  if (!isPlainObject(options)) fail('ERR_CONFIG_INVALID', 'JWT-SVID verification needs options with an audience');
  const { audience, now, clockToleranceSeconds, maxLifetimeSeconds } = options;
  // E12: an empty list would make the audience check vacuous (the go-spiffe bug fixed by PR #407).
  if (!Array.isArray(audience) || audience.length === 0) {
    fail('ERR_CONFIG_INVALID', 'JWT-SVID verification needs at least one expected audience');
  }
  if (!audience.every((a) => typeof a === 'string' && a.length > 0)) {
    fail('ERR_CONFIG_INVALID', 'every expected JWT audience must be a non-empty string');
  }
  const nowMs = now === undefined ? Date.now() : now instanceof Date ? now.getTime() : NaN;
  if (!Number.isFinite(nowMs)) fail('ERR_CONFIG_INVALID', 'the `now` option must be a valid Date');
  const tolerance = clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  if (typeof tolerance !== 'number' || !Number.isFinite(tolerance) || tolerance < 0) {
    fail('ERR_CONFIG_INVALID', 'clockToleranceSeconds must be a finite number of seconds, 0 or more');
  }
  if (
    maxLifetimeSeconds !== undefined &&
    (typeof maxLifetimeSeconds !== 'number' || !Number.isFinite(maxLifetimeSeconds) || maxLifetimeSeconds <= 0)
  ) {
    fail('ERR_CONFIG_INVALID', 'maxLifetimeSeconds must be a positive finite number of seconds');
  }
  return {
    nowMs,
    toleranceMs: tolerance * 1000,
    maxLifetimeMs: maxLifetimeSeconds === undefined ? undefined : maxLifetimeSeconds * 1000,
  };
}

/** Decodes one base64url part (already checked against BASE64URL) to a JSON object. */
function decodeJsonPart(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(Buffer.from(part, 'base64url')));
  } catch (err) {
    fail('ERR_JWT_MALFORMED', `token ${what} is not base64url-encoded UTF-8 JSON`, err);
  }
  if (!isPlainObject(value)) fail('ERR_JWT_MALFORMED', `token ${what} is not a JSON object`);
  return value;
}

/** E1: exactly JWS Compact Serialization, three base64url parts (RFC 7515 §7.1); the signature may be empty. */
function splitCompact(token: string): [string, string, string] {
  if (typeof token !== 'string') fail('ERR_JWT_MALFORMED', 'token must be a string');
  if (token.length > MAX_TOKEN_LENGTH) fail('ERR_JWT_MALFORMED', `token is longer than ${MAX_TOKEN_LENGTH} bytes`);
  if (token.trimStart().startsWith('{')) {
    fail('ERR_JWT_MALFORMED', 'token uses JWS JSON serialization; a JWT-SVID must use compact serialization');
  }
  const parts = token.split('.');
  if (parts.length === 5) {
    fail('ERR_JWT_MALFORMED', 'token has 5 parts, so it is a JWE (encrypted); a JWT-SVID is a signed JWS');
  }
  if (parts.length !== 3) {
    fail('ERR_JWT_MALFORMED', `token has ${parts.length} parts; compact serialization has exactly 3`);
  }
  // Strict alphabet, no padding: Buffer's decoder would silently skip anything else, so two different
  // strings could verify as one token.
  if (!parts.every((p) => BASE64URL.test(p))) {
    fail('ERR_JWT_MALFORMED', 'token parts must be unpadded base64url (RFC 7515 §2)');
  }
  if (parts[0] === '' || parts[1] === '') fail('ERR_JWT_MALFORMED', 'token header or payload is empty');
  return parts as [string, string, string];
}

/** E2, E4, E5, E6, E3 (header half): returns the algorithm and key id. Never touches a key. */
function checkHeader(header: Record<string, unknown>): { alg: JwtSvidAlgorithm; kid: string } {
  const { alg, typ, kid } = header;
  if (alg === undefined) fail('ERR_JWT_ALG', 'token header missing algorithm');
  // Before anything else (JWT-SVID §4): `none`, HS* (a public key used as an HMAC secret) and EdDSA stop here.
  if (typeof alg !== 'string' || !ALLOWED_JWT_ALGS.includes(alg)) {
    fail(
      'ERR_JWT_ALG',
      `token header algorithm ${quoteInput(String(alg))} is not allowed; a JWT-SVID uses one of ${ALLOWED_JWT_ALGS.join(', ')}`,
    );
  }
  if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') {
    fail('ERR_JWT_HEADER', 'token header type not equal to either JWT or JOSE');
  }
  // E5: no extension is understood here, so any `crit` (even empty) is refused (RFC 7515 §4.1.11).
  if (header.crit !== undefined) fail('ERR_JWT_HEADER', 'token header has "crit"; no JWS extension is supported');
  for (const name of KEY_CARRYING_HEADERS) {
    if (header[name] !== undefined) {
      fail('ERR_JWT_HEADER', `token header has "${name}"; JWT-SVID keys come only from the trust domain's bundle`);
    }
  }
  // E6: the spec allows no kid, but go-spiffe and SPIRE require it, and without it we cannot pick a key.
  if (kid === undefined) fail('ERR_JWT_HEADER', 'token header missing key id');
  if (typeof kid !== 'string' || kid.length === 0)
    fail('ERR_JWT_HEADER', 'token header key id must be a non-empty string');
  return { alg: alg as JwtSvidAlgorithm, kid };
}

function numericDate(claims: Record<string, unknown>, name: 'exp' | 'nbf' | 'iat'): number | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  // E15: RFC 7519 NumericDate is a JSON number; "1700000000" is a string, not a time.
  if (typeof value !== 'number' || !Number.isFinite(value) || Math.abs(value * 1000) > MAX_DATE_MS) {
    fail('ERR_JWT_MALFORMED', `token ${name} claim must be a number of seconds since the epoch`);
  }
  return value;
}

interface ParsedClaims {
  spiffeId: SpiffeId;
  expMs: number;
  nbfMs?: number;
  iatMs?: number;
  audience?: readonly string[];
}

/** E7, E10, E13, E15: claim presence and types; nothing time- or audience-dependent yet. */
function parseClaims(claims: Record<string, unknown>): ParsedClaims {
  const { sub, aud } = claims;
  if (sub === undefined) fail('ERR_JWT_SUBJECT', 'token missing subject claim');
  if (typeof sub !== 'string') fail('ERR_JWT_SUBJECT', 'token subject claim must be a string');
  let spiffeId: SpiffeId;
  try {
    spiffeId = parseSpiffeId(sub);
  } catch (err) {
    fail('ERR_JWT_SUBJECT', `token subject is not a SPIFFE ID: ${(err as Error).message}`, err);
  }
  // Like an X509-SVID leaf (B3): a workload identity has a path; the bare trust domain ID is not one.
  if (spiffeId.path === '') {
    fail('ERR_JWT_SUBJECT', `token subject "${spiffeId}" has no path; a workload SPIFFE ID needs one`);
  }
  const exp = numericDate(claims, 'exp');
  if (exp === undefined) fail('ERR_JWT_MALFORMED', 'token missing exp claim');
  const nbf = numericDate(claims, 'nbf');
  const iat = numericDate(claims, 'iat');
  let audience: readonly string[] | undefined;
  if (typeof aud === 'string') audience = [aud];
  else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audience = aud;
  else if (aud !== undefined) fail('ERR_JWT_MALFORMED', 'token aud claim must be a string or an array of strings');
  return {
    spiffeId,
    expMs: exp * 1000,
    nbfMs: nbf === undefined ? undefined : nbf * 1000,
    iatMs: iat === undefined ? undefined : iat * 1000,
    audience,
  };
}

/**
 * Finds the JWT bundle of one trust domain. Keys may be names or `spiffe://` IDs (the Workload API sends
 * the latter, D7); two keys for one trust domain are a configuration error, never silently merged.
 */
function findBundle(
  bundles: Record<string, JWKS> | ReadonlyMap<string, JWKS>,
  trustDomain: string,
): { jwks: unknown; found: boolean } {
  const isMap =
    bundles instanceof Map ||
    (typeof (bundles as ReadonlyMap<string, JWKS>).get === 'function' &&
      typeof (bundles as ReadonlyMap<string, JWKS>).entries === 'function');
  const entries: Iterable<[string, unknown]> = isMap
    ? (bundles as ReadonlyMap<string, JWKS>).entries()
    : Object.entries(bundles as Record<string, JWKS>);
  let found: { jwks: unknown; key: string } | undefined;
  for (const [key, jwks] of entries) {
    let td: string;
    try {
      td = parseTrustDomain(key);
    } catch (err) {
      fail('ERR_CONFIG_INVALID', `JWT bundles: ${(err as Error).message}`, err);
    }
    if (td !== trustDomain) continue;
    if (found) {
      fail(
        'ERR_CONFIG_INVALID',
        `JWT bundles: trust domain "${td}" is given more than one bundle (${quoteInput(found.key)} and ${quoteInput(key)})`,
      );
    }
    found = { jwks, key };
  }
  return found ? { jwks: found.jwks, found: true } : { jwks: undefined, found: false };
}

/** Why an entry a plain JWK Set would use is not a key of a SPIFFE bundle (refusal messages). */
const SPIFFE_USE = 'in a SPIFFE bundle only entries with use "jwt-svid" are JWT-SVID keys';

/**
 * Whether a JWT bundle is a SPIFFE bundle (Trust Domain and Bundle §4): it says so with a `spiffe_*` member, or
 * one of its entries names an SVID use. A plain JWK Set holds JWT-SVID keys only (the Workload API's JWT
 * bundles, Workload API §6.2.2: "a standard JWK Set"; the JWKS an OIDC discovery provider for JWT-SVIDs
 * publishes, whose keys say `sig`), and its entries need not name a use.
 */
function isSpiffeBundle(jwks: Record<string, unknown>, entries: unknown[]): boolean {
  if (jwks.spiffe_sequence !== undefined || jwks.spiffe_refresh_hint !== undefined) return true;
  return entries.some((entry) => isPlainObject(entry) && (entry.use === 'jwt-svid' || entry.use === 'x509-svid'));
}

/**
 * JWT-SVID §6.2, D2 and D8: an entry is a JWT authority when it has a kid (D4: the key of a kid-less entry could
 * never be chosen) and its `use` is `jwt-svid`. In a SPIFFE bundle that is the only one (Trust Domain and Bundle
 * §4.2.2: an entry with a missing or unknown use MUST be ignored); in a plain JWK Set an entry without a use, or
 * with `sig`, is one too. `x509-svid` entries, and any other use, are never used for JWTs.
 */
function isJwtAuthority(entry: unknown, spiffeBundle: boolean): entry is JWK & { kid: string } {
  if (!isPlainObject(entry)) return false;
  const { use, kid } = entry;
  const forJwt = use === 'jwt-svid' || (!spiffeBundle && (use === undefined || use === 'sig'));
  return forJwt && typeof kid === 'string' && kid.length > 0;
}

/**
 * The kids of a JWT bundle's entries that a plain JWK Set would use as keys but a SPIFFE bundle ignores (no
 * `use: "jwt-svid"`): none for a plain JWK Set. For a warning when the bundle is loaded, before a token meets it.
 */
export function ignoredJwtAuthorityKids(jwks: JWKS): string[] {
  const entries = jwks.keys as unknown[];
  if (!isSpiffeBundle(jwks as unknown as Record<string, unknown>, entries)) return [];
  return entries
    .filter((entry) => isJwtAuthority(entry, false) && !isJwtAuthority(entry, true))
    .map((entry) => (entry as { kid: string }).kid);
}

/**
 * Imported keys, per bundle entry and algorithm. Bundles are immutable snapshots (a new Workload API or
 * file update is a new object), so the entry object itself is the cache key and a rotated bundle simply
 * misses. Only public members are imported, which also keeps a private `d` or a `key_ops` list in a
 * misconfigured bundle from changing what the key is.
 */
const importedKeys = new WeakMap<object, Map<string, Promise<CryptoKey>>>();

function importAuthority(entry: JWK, alg: JwtSvidAlgorithm): Promise<CryptoKey> {
  let byAlg = importedKeys.get(entry);
  if (!byAlg) {
    byAlg = new Map();
    importedKeys.set(entry, byAlg);
  }
  let key = byAlg.get(alg);
  if (!key) {
    const { kty, n, e, crv, x, y } = entry;
    const publicJwk = kty === 'RSA' ? { kty, n, e } : { kty, crv, x, y };
    key = (importJWK(publicJwk as Parameters<typeof importJWK>[0], alg) as Promise<CryptoKey>).then((imported) => {
      // RFC 7518 §3.3/§3.5; jose would refuse it only at verification, as if the signature were wrong.
      const { modulusLength } = imported.algorithm as { modulusLength?: number };
      if (kty === 'RSA' && !(typeof modulusLength === 'number' && modulusLength >= 2048)) {
        throw new Error(`an RSA key must have at least 2048 bits, this one has ${modulusLength}`);
      }
      return imported;
    });
    byAlg.set(alg, key);
  }
  return key;
}

/** E8 and E3 (key half): the key for `kid` from the bundle of the subject's trust domain, fit for `alg`. */
async function selectKey(
  bundles: Record<string, JWKS> | ReadonlyMap<string, JWKS>,
  trustDomain: string,
  kid: string,
  alg: JwtSvidAlgorithm,
): Promise<CryptoKey> {
  if (typeof bundles !== 'object' || bundles === null) {
    fail('ERR_CONFIG_INVALID', 'JWT bundles must be a map or an object keyed by trust domain');
  }
  const { jwks, found } = findBundle(bundles, trustDomain);
  if (!found) fail('ERR_JWT_NO_BUNDLE', `no bundle found for trust domain "${trustDomain}"`);
  if (!isPlainObject(jwks) || !Array.isArray(jwks.keys)) {
    fail('ERR_CONFIG_INVALID', `the JWT bundle of trust domain "${trustDomain}" has no "keys" array`);
  }
  const entries = jwks.keys as unknown[];
  const spiffeBundle = isSpiffeBundle(jwks, entries);
  const authorities = entries.filter((entry) => isJwtAuthority(entry, spiffeBundle));
  // A SPIFFE bundle's entries that would be keys in a plain JWK Set: a refusal says why they are not.
  const unnamed = (): unknown[] =>
    spiffeBundle ? entries.filter((entry) => isJwtAuthority(entry, false) && !isJwtAuthority(entry, true)) : [];
  // Trust Domain and Bundle §4.1.3 / JWT-SVID §6.2: no JWT authorities means the trust domain issues no
  // JWT-SVIDs we can accept, exactly as if it had no bundle.
  if (authorities.length === 0) {
    const ignored = unnamed().length;
    fail(
      'ERR_JWT_NO_BUNDLE',
      `the bundle of trust domain "${trustDomain}" has no JWT-SVID authorities${ignored > 0 ? ` (${ignored} entries ignored: ${SPIFFE_USE})` : ''}`,
    );
  }
  const matches = authorities.filter((entry) => entry.kid === kid);
  if (matches.length === 0) {
    const ignored = unnamed().some((entry) => (entry as { kid?: unknown }).kid === kid);
    fail(
      'ERR_JWT_KEY_NOT_FOUND',
      ignored
        ? `JWT authority ${quoteInput(kid)} of trust domain "${trustDomain}" is ignored: its entry has no use "jwt-svid", and ${SPIFFE_USE}`
        : `no JWT authority ${quoteInput(kid)} found for trust domain "${trustDomain}"`,
    );
  }
  // Two keys under one kid: picking either would let the bundle order decide trust. Fail closed.
  if (matches.length > 1) {
    fail(
      'ERR_JWT_KEY_NOT_FOUND',
      `JWT authority ${quoteInput(kid)} of trust domain "${trustDomain}" is ambiguous: ${matches.length} keys share it`,
    );
  }
  const entry = matches[0];
  const need = KEY_FOR_ALG[alg];
  const fits = entry.kty === need.kty && (need.kty === 'RSA' || entry.crv === need.crv);
  if (!fits) {
    const has = entry.kty === 'EC' ? `EC ${String(entry.crv)}` : quoteInput(String(entry.kty));
    fail('ERR_JWT_ALG', `token algorithm ${alg} does not fit JWT authority ${quoteInput(kid)}, a ${has} key`);
  }
  // RFC 7517 §4.4: a key that names its algorithm is for that algorithm only (no RS256 key used for PS256).
  if (entry.alg !== undefined && entry.alg !== alg) {
    fail('ERR_JWT_ALG', `token algorithm ${alg} does not match the algorithm of JWT authority ${quoteInput(kid)}`);
  }
  try {
    return await importAuthority(entry, alg);
  } catch (err) {
    fail(
      'ERR_JWT_KEY_NOT_FOUND',
      `JWT authority ${quoteInput(kid)} of trust domain "${trustDomain}" is not a usable ${alg} key: ${(err as Error).message}`,
      err,
    );
  }
}

/**
 * Verifies a JWT-SVID against the JWT bundles (keyed by trust domain name or `spiffe://` ID) and returns
 * the subject's SPIFFE ID and the verified claims. Throws a SidecarError on any failure.
 */
export async function verifyJwtSvid(
  token: string,
  bundles: Record<string, JWKS> | ReadonlyMap<string, JWKS>,
  options: VerifyJwtOptions,
): Promise<VerifiedJwtSvid> {
  const { nowMs, toleranceMs, maxLifetimeMs } = checkOptions(options);
  const [headerPart, payloadPart, signaturePart] = splitCompact(token);
  const { alg, kid } = checkHeader(decodeJsonPart(headerPart, 'header'));
  const claims = decodeJsonPart(payloadPart, 'payload');
  const parsed = parseClaims(claims);
  if (signaturePart === '') fail('ERR_JWT_SIGNATURE', 'token signature is empty');

  const key = await selectKey(bundles, parsed.spiffeId.trustDomain, kid, alg);
  try {
    // `algorithms: [alg]` pins jose to the algorithm we checked against the key; the key is ours.
    await compactVerify(token, key, { algorithms: [alg] });
  } catch (err) {
    fail('ERR_JWT_SIGNATURE', `token signature does not verify with JWT authority ${quoteInput(kid)}`, err);
  }

  // Only now, on a token the trust domain signed, the time and audience rules (go-jose order, E10, E14).
  if (nowMs - toleranceMs > parsed.expMs) fail('ERR_JWT_EXPIRED', 'token has expired');
  if (parsed.nbfMs !== undefined && nowMs + toleranceMs < parsed.nbfMs) {
    fail('ERR_JWT_NOT_YET_VALID', 'token not valid yet (nbf is in the future)');
  }
  if (parsed.iatMs !== undefined && nowMs + toleranceMs < parsed.iatMs) {
    fail('ERR_JWT_NOT_YET_VALID', 'token issued in the future (iat is in the future)');
  }
  // E11, E13: `aud` is required; one configured audience must be among its values.
  if (parsed.audience === undefined) fail('ERR_JWT_AUDIENCE', 'token missing audience claim');
  const expected = options.audience;
  if (!parsed.audience.some((a) => expected.includes(a))) {
    fail(
      'ERR_JWT_AUDIENCE',
      `expected audience in ${JSON.stringify(expected)} (audience=${quoteInput(JSON.stringify(parsed.audience))})`,
    );
  }
  // E16: the tolerance applies here too, so an issuer whose clock runs a little ahead is not refused.
  if (maxLifetimeMs !== undefined && parsed.expMs - nowMs > maxLifetimeMs + toleranceMs) {
    fail(
      'ERR_JWT_LIFETIME',
      `token expires in ${Math.round((parsed.expMs - nowMs) / 1000)}s, more than the maximum lifetime of ${maxLifetimeMs / 1000}s`,
    );
  }
  return { spiffeId: parsed.spiffeId, claims, expiresAt: new Date(parsed.expMs) };
}
