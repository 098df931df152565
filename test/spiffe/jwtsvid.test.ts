// VERIFIER-RULES section E (JWT-SVID), each applicable rule as a test, plus the key-confusion and
// cross-trust-domain attacks. Every key is generated here and every token is really signed: by hand with
// node:crypto (so headers and claims can be anything, including what jose refuses to produce) or with
// jose's SignJWT (an ordinary issuer). E17-E19 (foreign claims, OIDC issuers, the Bearer header) belong to
// the authentication layer, not to this verifier.

import {
  constants,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign as cryptoSign,
} from 'node:crypto';
import { CompactEncrypt, FlattenedSign, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { SidecarError } from '../../src/errors.js';
import { parseJwksText } from '../../src/identity/jwks.js';
import {
  ALLOWED_JWT_ALGS,
  type JWK,
  type JWKS,
  type JwtErrorCode,
  verifyJwtSvid,
  type VerifyJwtOptions,
} from '../../src/spiffe/jwtsvid.js';

const NOW = new Date('2030-01-01T00:00:00Z');
const NOW_S = NOW.getTime() / 1000;
const MINUTE = 60;
const SUB = 'spiffe://example.org/ns/prod/sa/web';
const PARTNER_SUB = 'spiffe://partner.org/ns/prod/sa/billing';

interface Signer {
  privateKey: KeyObject;
  jwk: JWK;
}

let rsa: Signer; // example.org, kid rsa-a, use jwt-svid: RS* and PS*
let ec256: Signer; // example.org, kid ec-a, use jwt-svid
let ec384: Signer; // example.org, kid ec384-a, use sig (a plain JWK Set's use: ignored in a SPIFFE bundle)
let ec521: Signer; // example.org, kid ec521-a, no use (likewise)
let partner: Signer; // partner.org, kid ec-b
let attacker: Signer; // in no bundle as a JWT authority
let ed25519: KeyObject;
/** A SPIFFE bundle for example.org (its entries name SVID uses), and partner.org's. */
let bundles: Record<string, JWKS>;
/** example.org's keys as a plain JWK Set (as the Workload API streams them): no entry names an SVID use. */
let plainJwks: Record<string, JWKS>;

function signer(kind: 'rsa' | 'P-256' | 'P-384' | 'P-521', kid: string, use?: string, bits = 2048): Signer {
  const { privateKey, publicKey } =
    kind === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: bits })
      : generateKeyPairSync('ec', { namedCurve: kind });
  const jwk = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid };
  if (use !== undefined) jwk.use = use;
  return { privateKey, jwk };
}

beforeAll(() => {
  rsa = signer('rsa', 'rsa-a', 'jwt-svid');
  ec256 = signer('P-256', 'ec-a', 'jwt-svid');
  ec384 = signer('P-384', 'ec384-a', 'sig');
  ec521 = signer('P-521', 'ec521-a');
  partner = signer('P-256', 'ec-b', 'jwt-svid');
  attacker = signer('P-256', 'x509-a', 'x509-svid');
  ed25519 = generateKeyPairSync('ed25519').privateKey;
  bundles = {
    'example.org': { keys: [rsa.jwk, ec256.jwk, ec384.jwk, ec521.jwk, attacker.jwk] },
    'spiffe://partner.org': { keys: [partner.jwk] },
  };
  plainJwks = { 'example.org': { keys: [{ ...rsa.jwk, use: undefined }, ec384.jwk, ec521.jwk] } };
});

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Signs `header.payload` with the algorithm the header names (or `alg` when given), by hand. */
function rawSignature(alg: string, input: Buffer, key: KeyObject | Buffer | undefined): Buffer {
  const hash = `sha${alg.slice(2)}`;
  if (alg === 'none' || key === undefined) return Buffer.alloc(0);
  if (alg.startsWith('HS'))
    return createHmac(hash, key as Buffer)
      .update(input)
      .digest();
  if (alg === 'EdDSA') return cryptoSign(null, input, key as KeyObject);
  if (alg.startsWith('RS')) return cryptoSign(hash, input, key as KeyObject);
  if (alg.startsWith('PS')) {
    return cryptoSign(hash, input, {
      key: key as KeyObject,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
    });
  }
  return cryptoSign(hash, input, { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
}

interface TokenSpec {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** The signing key; defaults to the P-256 key of example.org. */
  key?: KeyObject | Buffer;
  /** The algorithm to sign with when it differs from the header's. */
  signAlg?: string;
}

/** A JWT-SVID for SUB, audience `reports`, valid for 5 minutes at NOW; `undefined` members are dropped. */
function token(spec: TokenSpec = {}): string {
  const header = { alg: 'ES256', kid: 'ec-a', typ: 'JWT', ...spec.header };
  const claims = { sub: SUB, aud: ['reports'], exp: NOW_S + 5 * MINUTE, iat: NOW_S, ...spec.claims };
  const input = `${b64(header)}.${b64(claims)}`;
  const alg = spec.signAlg ?? (header.alg as string);
  const key = 'key' in spec ? spec.key : ec256.privateKey;
  return `${input}.${rawSignature(alg, Buffer.from(input), key).toString('base64url')}`;
}

const opts = (extra: Partial<VerifyJwtOptions> = {}): VerifyJwtOptions => ({
  audience: ['reports'],
  now: NOW,
  ...extra,
});

async function expectReject(
  promise: Promise<unknown>,
  code: JwtErrorCode | 'ERR_CONFIG_INVALID',
  message?: string | RegExp,
): Promise<SidecarError> {
  const thrown = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(thrown, 'expected a rejection').toBeInstanceOf(SidecarError);
  const err = thrown as SidecarError;
  expect(err.code as string).toBe(code);
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** A bundle set whose JWKS records whether anyone looked at its keys. */
function watchedBundles(): { bundles: Record<string, JWKS>; touched: () => boolean } {
  let touched = false;
  const keys = [rsa.jwk, ec256.jwk];
  const jwks = {
    get keys() {
      touched = true;
      return keys;
    },
  };
  return { bundles: { 'example.org': jwks }, touched: () => touched };
}

describe('valid JWT-SVIDs', () => {
  it('accepts ES256 (P-256) and returns the SPIFFE ID, the claims and the expiry', async () => {
    const result = await verifyJwtSvid(token({ claims: { role: 'admin' } }), bundles, opts());
    expect(result.spiffeId.toString()).toBe(SUB);
    expect(result.spiffeId.trustDomain).toBe('example.org');
    expect(result.spiffeId.path).toBe('/ns/prod/sa/web');
    expect(result.claims).toMatchObject({ sub: SUB, aud: ['reports'], role: 'admin' });
    expect(result.expiresAt.getTime()).toBe((NOW_S + 5 * MINUTE) * 1000);
  });

  it('accepts RS256 from a jose SignJWT issuer', async () => {
    const jwt = await new SignJWT({ sub: SUB, aud: 'reports', exp: NOW_S + MINUTE })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-a', typ: 'JWT' })
      .sign(rsa.privateKey);
    expect((await verifyJwtSvid(jwt, bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('accepts PS256 from a jose SignJWT issuer, with the same RSA authority', async () => {
    const jwt = await new SignJWT({ sub: SUB, aud: ['reports'], exp: NOW_S + MINUTE })
      .setProtectedHeader({ alg: 'PS256', kid: 'rsa-a' })
      .sign(rsa.privateKey);
    expect((await verifyJwtSvid(jwt, bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('accepts ES384 (P-384) from a plain JWK Set entry with use "sig"', async () => {
    const jwt = token({ header: { alg: 'ES384', kid: 'ec384-a' }, key: ec384.privateKey });
    expect((await verifyJwtSvid(jwt, plainJwks, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('accepts ES512 (P-521) from a plain JWK Set entry without use, and RS512/PS384 by hand', async () => {
    const es512 = token({ header: { alg: 'ES512', kid: 'ec521-a' }, key: ec521.privateKey });
    const rs512 = token({ header: { alg: 'RS512', kid: 'rsa-a' }, key: rsa.privateKey });
    const ps384 = token({ header: { alg: 'PS384', kid: 'rsa-a' }, key: rsa.privateKey });
    for (const jwt of [es512, rs512, ps384]) {
      expect((await verifyJwtSvid(jwt, plainJwks, opts())).spiffeId.toString()).toBe(SUB);
    }
  });

  it('accepts the same token twice (imported keys are cached per bundle entry)', async () => {
    const jwt = token();
    await verifyJwtSvid(jwt, bundles, opts());
    expect((await verifyJwtSvid(jwt, bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('finds bundles keyed by spiffe://td, in a record and in a Map', async () => {
    const jwt = token({ header: { kid: 'ec-b' }, claims: { sub: PARTNER_SUB }, key: partner.privateKey });
    expect((await verifyJwtSvid(jwt, bundles, opts())).spiffeId.trustDomain).toBe('partner.org');
    const map = new Map<string, JWKS>([['spiffe://partner.org', { keys: [partner.jwk] }]]);
    expect((await verifyJwtSvid(jwt, map, opts())).spiffeId.toString()).toBe(PARTNER_SUB);
  });

  it('exports exactly the nine JWT-SVID algorithms', () => {
    expect([...ALLOWED_JWT_ALGS].sort()).toEqual(
      ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'].sort(),
    );
  });
});

describe('E1 compact serialization only', () => {
  it('E1: rejects a JSON-serialized JWS', async () => {
    const jws = await new FlattenedSign(Buffer.from(JSON.stringify({ sub: SUB, aud: 'reports', exp: NOW_S + 60 })))
      .setProtectedHeader({ alg: 'ES256', kid: 'ec-a' })
      .sign(ec256.privateKey);
    await expectReject(verifyJwtSvid(JSON.stringify(jws), bundles, opts()), 'ERR_JWT_MALFORMED', /JSON serialization/);
  });

  it('E1: rejects a 5-part JWE', async () => {
    const jwe = await new CompactEncrypt(Buffer.from(token()))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', kid: 'ec-a', cty: 'JWT' })
      .encrypt(createPublicKey(ec256.privateKey));
    expect(jwe.split('.')).toHaveLength(5);
    await expectReject(verifyJwtSvid(jwe, bundles, opts()), 'ERR_JWT_MALFORMED', /JWE/);
  });

  it('E1: rejects 2 or 4 parts, padding, non-base64url characters and a non-JSON header', async () => {
    const [h, p, s] = token().split('.');
    for (const bad of [`${h}.${p}`, `${h}.${p}.${s}.${s}`, `${h}=.${p}.${s}`, `${h}.${p}.${s}+`, `.${p}.${s}`]) {
      await expectReject(verifyJwtSvid(bad, bundles, opts()), 'ERR_JWT_MALFORMED');
    }
    await expectReject(verifyJwtSvid(`${b64('not json')}.${p}.${s}`, bundles, opts()), 'ERR_JWT_MALFORMED');
    await expectReject(verifyJwtSvid(`${b64([1, 2])}.${p}.${s}`, bundles, opts()), 'ERR_JWT_MALFORMED');
    await expectReject(verifyJwtSvid(`${h}.${b64('"str"')}.${s}`, bundles, opts()), 'ERR_JWT_MALFORMED');
  });
});

describe('E2 algorithm allow-list, before any key use', () => {
  it('E2: rejects HS256 signed with the RSA authority as the HMAC secret, without touching the bundle', async () => {
    const { bundles: watched, touched } = watchedBundles();
    const secret = Buffer.from(rsa.jwk.n as string);
    const jwt = token({ header: { alg: 'HS256', kid: 'rsa-a' }, key: secret });
    await expectReject(verifyJwtSvid(jwt, watched, opts()), 'ERR_JWT_ALG', /"HS256" is not allowed/);
    expect(touched()).toBe(false);
  });

  it('E2: rejects an unsecured alg:none token, without touching the bundle', async () => {
    const { bundles: watched, touched } = watchedBundles();
    const jwt = token({ header: { alg: 'none' }, key: undefined });
    expect(jwt.endsWith('.')).toBe(true);
    await expectReject(verifyJwtSvid(jwt, watched, opts()), 'ERR_JWT_ALG', /"none" is not allowed/);
    expect(touched()).toBe(false);
  });

  it('E2: rejects EdDSA', async () => {
    const jwt = token({ header: { alg: 'EdDSA' }, key: ed25519 });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_ALG', /"EdDSA" is not allowed/);
  });

  it('E2: rejects a missing or non-string alg', async () => {
    await expectReject(
      verifyJwtSvid(token({ header: { alg: undefined }, signAlg: 'ES256' }), bundles, opts()),
      'ERR_JWT_ALG',
      /missing algorithm/,
    );
    await expectReject(
      verifyJwtSvid(token({ header: { alg: ['ES256'] }, signAlg: 'ES256' }), bundles, opts()),
      'ERR_JWT_ALG',
    );
  });
});

describe('E3 the key comes from the bundle and fits the algorithm', () => {
  it('E3: rejects an RS256 header naming an EC bundle key', async () => {
    const jwt = token({ header: { alg: 'RS256', kid: 'ec-a' }, key: rsa.privateKey });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_ALG', /does not fit/);
  });

  it('E3: rejects ES384 naming a P-256 key, and ES256 naming an RSA key', async () => {
    await expectReject(
      verifyJwtSvid(token({ header: { alg: 'ES384', kid: 'ec-a' }, key: ec384.privateKey }), bundles, opts()),
      'ERR_JWT_ALG',
    );
    await expectReject(verifyJwtSvid(token({ header: { kid: 'rsa-a' } }), bundles, opts()), 'ERR_JWT_ALG');
  });

  it('E3: rejects PS256 with an authority whose JWK alg is RS256', async () => {
    const pinned = { 'example.org': { keys: [{ ...rsa.jwk, alg: 'RS256' }] } };
    const ps = token({ header: { alg: 'PS256', kid: 'rsa-a' }, key: rsa.privateKey });
    await expectReject(verifyJwtSvid(ps, pinned, opts()), 'ERR_JWT_ALG', /does not match/);
    const rs = token({ header: { alg: 'RS256', kid: 'rsa-a' }, key: rsa.privateKey });
    expect((await verifyJwtSvid(rs, pinned, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('E3: rejects a token carrying its own key in a jwk header (signed by that key)', async () => {
    const jwk = createPublicKey(attacker.privateKey).export({ format: 'jwk' });
    const jwt = token({ header: { kid: 'ec-a', jwk }, key: attacker.privateKey });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_HEADER', /"jwk"/);
  });

  it('E3: rejects jku, x5u and x5c headers even when the bundle key signed the token', async () => {
    for (const extra of [
      { jku: 'https://attacker.example/jwks.json' },
      { x5u: 'https://attacker.example/cert.pem' },
      { x5c: ['MIIB'] },
    ]) {
      await expectReject(verifyJwtSvid(token({ header: extra }), bundles, opts()), 'ERR_JWT_HEADER');
    }
  });

  it('E3: rejects an RSA authority smaller than 2048 bits', async () => {
    const weak = signer('rsa', 'weak', 'jwt-svid', 1024);
    const jwt = token({ header: { alg: 'RS256', kid: 'weak' }, key: weak.privateKey });
    await expectReject(
      verifyJwtSvid(jwt, { 'example.org': { keys: [weak.jwk] } }, opts()),
      'ERR_JWT_KEY_NOT_FOUND',
      /2048/,
    );
  });
});

describe('E4-E6 header rules', () => {
  it('E4: rejects typ "invalid" and "jwt", accepts no typ and "JOSE"', async () => {
    await expectReject(
      verifyJwtSvid(token({ header: { typ: 'invalid' } }), bundles, opts()),
      'ERR_JWT_HEADER',
      'token header type not equal to either JWT or JOSE',
    );
    await expectReject(verifyJwtSvid(token({ header: { typ: 'jwt' } }), bundles, opts()), 'ERR_JWT_HEADER');
    expect((await verifyJwtSvid(token({ header: { typ: undefined } }), bundles, opts())).spiffeId.toString()).toBe(SUB);
    expect((await verifyJwtSvid(token({ header: { typ: 'JOSE' } }), bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('E5: rejects crit ["exp"] (and an empty crit), ignores other extra headers', async () => {
    await expectReject(
      verifyJwtSvid(token({ header: { crit: ['exp'], exp: NOW_S } }), bundles, opts()),
      'ERR_JWT_HEADER',
      /crit/,
    );
    await expectReject(verifyJwtSvid(token({ header: { crit: [] } }), bundles, opts()), 'ERR_JWT_HEADER');
    const extra = token({ header: { 'x-private': 1, cty: 'JWT' } });
    expect((await verifyJwtSvid(extra, bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('E6: rejects a token without kid, or with an empty or non-string kid', async () => {
    await expectReject(
      verifyJwtSvid(token({ header: { kid: undefined } }), bundles, opts()),
      'ERR_JWT_HEADER',
      'token header missing key id',
    );
    await expectReject(verifyJwtSvid(token({ header: { kid: '' } }), bundles, opts()), 'ERR_JWT_HEADER');
    await expectReject(verifyJwtSvid(token({ header: { kid: 7 } }), bundles, opts()), 'ERR_JWT_HEADER');
  });
});

describe('E7 subject', () => {
  it('E7: rejects a token without sub', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { sub: undefined } }), bundles, opts()),
      'ERR_JWT_SUBJECT',
      'token missing subject claim',
    );
  });

  it('E7: rejects sub "invalid subject"', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { sub: 'invalid subject' } }), bundles, opts()),
      'ERR_JWT_SUBJECT',
      /scheme is missing or invalid/,
    );
  });

  it('E7: rejects a non-string sub, an invalid SPIFFE ID and a trust-domain-only SPIFFE ID', async () => {
    for (const sub of [42, 'spiffe://example.org/a/../b', 'Spiffe://example.org/x', 'spiffe://example.org']) {
      await expectReject(verifyJwtSvid(token({ claims: { sub } }), bundles, opts()), 'ERR_JWT_SUBJECT');
    }
  });
});

describe('E8 the key is looked up in the bundle of the subject trust domain only', () => {
  it('E8: rejects sub spiffe://another.domain/host when there is no bundle for it', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { sub: 'spiffe://another.domain/host' } }), bundles, opts()),
      'ERR_JWT_NO_BUNDLE',
      'no bundle found for trust domain "another.domain"',
    );
  });

  it('E8: rejects a kid valid only in trust domain B for a sub in trust domain A', async () => {
    const jwt = token({ header: { kid: 'ec-b' }, key: partner.privateKey });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_KEY_NOT_FOUND', /"ec-b".*"example.org"/);
  });

  it('E8: rejects a sub in B signed with a key of A', async () => {
    const jwt = token({ claims: { sub: PARTNER_SUB } });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_KEY_NOT_FOUND', /"partner.org"/);
  });

  it('E8/C7: a bundle with no JWT authorities ([] or x509-svid only) accepts nothing', async () => {
    await expectReject(verifyJwtSvid(token(), { 'example.org': { keys: [] } }, opts()), 'ERR_JWT_NO_BUNDLE');
    const jwt = token({ header: { kid: 'x509-a' }, key: attacker.privateKey });
    await expectReject(
      verifyJwtSvid(jwt, { 'example.org': { keys: [attacker.jwk] } }, opts()),
      'ERR_JWT_NO_BUNDLE',
      /no JWT-SVID authorities/,
    );
  });

  it('D8: a JWKS entry with use "x509-svid" is never used for a JWT', async () => {
    const jwt = token({ header: { kid: 'x509-a' }, key: attacker.privateKey });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_KEY_NOT_FOUND', /"x509-a"/);
  });

  it('D2: in a SPIFFE bundle, an entry with use "sig" or without use is ignored (Trust Domain and Bundle §4.2.2)', async () => {
    const es384 = token({ header: { alg: 'ES384', kid: 'ec384-a' }, key: ec384.privateKey });
    await expectReject(verifyJwtSvid(es384, bundles, opts()), 'ERR_JWT_KEY_NOT_FOUND', /"ec384-a".*is ignored/);
    const es512 = token({ header: { alg: 'ES512', kid: 'ec521-a' }, key: ec521.privateKey });
    await expectReject(verifyJwtSvid(es512, bundles, opts()), 'ERR_JWT_KEY_NOT_FOUND', /"ec521-a"/);
    // A bundle that says it is one (a spiffe_* member) is a SPIFFE bundle even when no entry names a use.
    const marked = { 'example.org': { keys: [ec384.jwk, ec521.jwk], spiffe_sequence: 1 } as JWKS };
    await expectReject(verifyJwtSvid(es384, marked, opts()), 'ERR_JWT_NO_BUNDLE', /2 entries ignored: in a SPIFFE/);
    const hinted = { 'example.org': { keys: [ec521.jwk], spiffe_refresh_hint: 300 } as JWKS };
    await expectReject(verifyJwtSvid(es512, hinted, opts()), 'ERR_JWT_NO_BUNDLE', /no JWT-SVID authorities/);
    // The members survive parsing (a --jwt-bundle-file, a Workload API message).
    const parsed = { 'example.org': parseJwksText(JSON.stringify({ keys: [ec521.jwk], spiffe_sequence: 7 }), 'test') };
    await expectReject(verifyJwtSvid(es512, parsed, opts()), 'ERR_JWT_NO_BUNDLE', /no JWT-SVID authorities/);
    expect(() => parseJwksText(JSON.stringify({ keys: [], spiffe_sequence: 'x' }), 'test')).toThrow(/spiffe_sequence/);
  });

  it('D2/D4: ignores entries with an unknown use or without kid, rejects two keys under one kid', async () => {
    const unknownUse = { 'example.org': { keys: [{ ...ec256.jwk, use: 'enc' }, rsa.jwk] } };
    await expectReject(verifyJwtSvid(token(), unknownUse, opts()), 'ERR_JWT_KEY_NOT_FOUND');
    const noKid = { 'example.org': { keys: [{ ...ec256.jwk, kid: undefined }, rsa.jwk] } };
    await expectReject(verifyJwtSvid(token(), noKid, opts()), 'ERR_JWT_KEY_NOT_FOUND');
    const twice = { 'example.org': { keys: [ec256.jwk, { ...attacker.jwk, kid: 'ec-a', use: 'jwt-svid' }] } };
    await expectReject(verifyJwtSvid(token(), twice, opts()), 'ERR_JWT_KEY_NOT_FOUND', /ambiguous/);
  });

  it('rejects bundles with two keys for one trust domain, an invalid key or no keys array', async () => {
    const dup = { 'example.org': bundles['example.org'], 'spiffe://example.org': bundles['example.org'] };
    await expectReject(verifyJwtSvid(token(), dup, opts()), 'ERR_CONFIG_INVALID', /more than one bundle/);
    const bad = { ...bundles, 'Bad Domain': { keys: [] } };
    await expectReject(verifyJwtSvid(token(), bad, opts()), 'ERR_CONFIG_INVALID');
    const noKeys = { 'example.org': {} as JWKS };
    await expectReject(verifyJwtSvid(token(), noKeys, opts()), 'ERR_CONFIG_INVALID', /"keys"/);
  });
});

describe('E9 signature', () => {
  it('E9: rejects a token signed with another key under the kid of a bundle key', async () => {
    const jwt = token({ header: { kid: 'ec-a' }, key: attacker.privateKey });
    await expectReject(verifyJwtSvid(jwt, bundles, opts()), 'ERR_JWT_SIGNATURE');
  });

  it('E9: rejects a changed payload and an empty signature', async () => {
    const [h, , s] = token().split('.');
    const forged = b64({ sub: 'spiffe://example.org/admin', aud: ['reports'], exp: NOW_S + 60 });
    await expectReject(verifyJwtSvid(`${h}.${forged}.${s}`, bundles, opts()), 'ERR_JWT_SIGNATURE');
    await expectReject(verifyJwtSvid(`${h}.${forged}.`, bundles, opts()), 'ERR_JWT_SIGNATURE', /empty/);
  });
});

describe('E10 expiry, with 60 s leeway', () => {
  it('E10: rejects a token without exp', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { exp: undefined } }), bundles, opts()),
      'ERR_JWT_MALFORMED',
      'token missing exp claim',
    );
  });

  it('E10: rejects exp = now-61s', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { exp: NOW_S - 61, iat: NOW_S - 600 } }), bundles, opts()),
      'ERR_JWT_EXPIRED',
      'token has expired',
    );
  });

  it('E10: accepts exp = now-30s and exp = now-60s (leeway)', async () => {
    for (const exp of [NOW_S - 30, NOW_S - 60]) {
      const result = await verifyJwtSvid(token({ claims: { exp, iat: NOW_S - 600 } }), bundles, opts());
      expect(result.expiresAt.getTime()).toBe(exp * 1000);
    }
  });

  it('E10: with clockToleranceSeconds 0, rejects exp = now-1s', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { exp: NOW_S - 1 } }), bundles, opts({ clockToleranceSeconds: 0 })),
      'ERR_JWT_EXPIRED',
    );
  });
});

describe('E11-E13 audience', () => {
  it('E11: rejects aud ["audience"] when ["another"] is expected', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { aud: ['audience'] } }), bundles, opts({ audience: ['another'] })),
      'ERR_JWT_AUDIENCE',
    );
  });

  it('E11: rejects a token without aud, or with aud []', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { aud: undefined } }), bundles, opts()),
      'ERR_JWT_AUDIENCE',
      /missing audience/,
    );
    await expectReject(verifyJwtSvid(token({ claims: { aud: [] } }), bundles, opts()), 'ERR_JWT_AUDIENCE');
  });

  it('E11: accepts when one of several expected audiences is among several aud values', async () => {
    const jwt = token({ claims: { aud: ['billing', 'reports'] } });
    const result = await verifyJwtSvid(jwt, bundles, opts({ audience: ['other', 'reports'] }));
    expect(result.spiffeId.toString()).toBe(SUB);
  });

  it('E12: an empty expected audience list is a configuration error', async () => {
    await expectReject(verifyJwtSvid(token(), bundles, opts({ audience: [] })), 'ERR_CONFIG_INVALID');
    await expectReject(verifyJwtSvid(token(), bundles, opts({ audience: [''] })), 'ERR_CONFIG_INVALID');
    await expectReject(
      verifyJwtSvid(token(), bundles, { now: NOW } as unknown as VerifyJwtOptions),
      'ERR_CONFIG_INVALID',
    );
  });

  it('E13: accepts aud as a string and as an array', async () => {
    const asString = await verifyJwtSvid(token({ claims: { aud: 'svc' } }), bundles, opts({ audience: ['svc'] }));
    expect(asString.claims.aud).toBe('svc');
    const asArray = await verifyJwtSvid(token({ claims: { aud: ['svc'] } }), bundles, opts({ audience: ['svc'] }));
    expect(asArray.claims.aud).toEqual(['svc']);
  });

  it('E13: rejects aud that is neither a string nor an array of strings', async () => {
    for (const aud of [42, ['svc', 1], { svc: true }]) {
      await expectReject(
        verifyJwtSvid(token({ claims: { aud } }), bundles, opts({ audience: ['svc'] })),
        'ERR_JWT_MALFORMED',
      );
    }
  });
});

describe('E14-E16 time claims', () => {
  it('E14: rejects nbf = now+5m', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { nbf: NOW_S + 5 * MINUTE, exp: NOW_S + 10 * MINUTE } }), bundles, opts()),
      'ERR_JWT_NOT_YET_VALID',
      /nbf/,
    );
  });

  it('E14: rejects iat = now+5m, accepts nbf and iat = now+30s (leeway)', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { iat: NOW_S + 5 * MINUTE, exp: NOW_S + 10 * MINUTE } }), bundles, opts()),
      'ERR_JWT_NOT_YET_VALID',
      /iat/,
    );
    const early = token({ claims: { nbf: NOW_S + 30, iat: NOW_S + 30 } });
    expect((await verifyJwtSvid(early, bundles, opts())).spiffeId.toString()).toBe(SUB);
  });

  it('E15: rejects exp "1700000000" (a string), and non-number nbf and iat', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { exp: String(NOW_S + 60) } }), bundles, opts()),
      'ERR_JWT_MALFORMED',
      /exp claim must be a number/,
    );
    await expectReject(verifyJwtSvid(token({ claims: { nbf: String(NOW_S) } }), bundles, opts()), 'ERR_JWT_MALFORMED');
    await expectReject(verifyJwtSvid(token({ claims: { iat: null } }), bundles, opts()), 'ERR_JWT_MALFORMED');
    await expectReject(verifyJwtSvid(token({ claims: { exp: 1e300 } }), bundles, opts()), 'ERR_JWT_MALFORMED');
  });

  it('E16: rejects exp = now+30d with a maximum lifetime of 1h, accepts now+30m', async () => {
    await expectReject(
      verifyJwtSvid(token({ claims: { exp: NOW_S + 30 * 24 * 3600 } }), bundles, opts({ maxLifetimeSeconds: 3600 })),
      'ERR_JWT_LIFETIME',
    );
    const ok = token({ claims: { exp: NOW_S + 30 * MINUTE } });
    expect((await verifyJwtSvid(ok, bundles, opts({ maxLifetimeSeconds: 3600 }))).spiffeId.toString()).toBe(SUB);
  });

  it('rejects invalid time options as configuration errors', async () => {
    for (const extra of [
      { clockToleranceSeconds: -1 },
      { maxLifetimeSeconds: 0 },
      { now: new Date(Number.NaN) },
    ] as Partial<VerifyJwtOptions>[]) {
      await expectReject(verifyJwtSvid(token(), bundles, opts(extra)), 'ERR_CONFIG_INVALID');
    }
  });
});
