// The development JWT signing key of a directory: one ES256 key, made once and kept in
// `jwt-signing-key.jwk` (0600), shared by `dev issuer`, `dev token`, `dev jwt-bundle` and `dev workload-api`
// (in a `certs init` directory it is the trust domain's JWT-SVID authority). Development only: a plain file.
import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { SidecarError } from '../errors.js';

export const SIGNING_KEY_FILE = 'jwt-signing-key.jwk';
const ALG = 'ES256';

/**
 * Writes a file of a dev directory; a failure is one ERR_FILE_WRITE line naming the flag and the file.
 * Through a new temporary file (exclusive create: never through a planted symlink) renamed over the old
 * one, so a private key gets its mode even when it replaces a file.
 */
export async function writeDevFile(flag: string, path: string, data: string, mode = 0o644): Promise<void> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temporary, data, { mode, flag: 'wx' });
    await rename(temporary, path);
  } catch (err) {
    await unlink(temporary).catch(() => {});
    const e = err as NodeJS.ErrnoException;
    throw new SidecarError('ERR_FILE_WRITE', `${flag}: cannot write ${path} (${e.code ?? e.message})`);
  }
}

/**
 * Makes a dev directory (0700 when it is new). An existing one must be ours and writable by nobody else:
 * whoever can write it can plant the signing key our tokens are then signed with.
 */
export async function makeDevDir(flag: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    throw new SidecarError('ERR_FILE_WRITE', `${flag} ${dir}: cannot make the directory (${err.code ?? err.message})`);
  });
  const stats = await stat(dir);
  const uid = process.getuid?.();
  if ((uid !== undefined && stats.uid !== uid) || (stats.mode & 0o022) !== 0)
    throw new SidecarError(
      'ERR_FILE_WRITE',
      `${flag} ${dir}: the directory must be yours and writable by you alone (chmod go-w ${dir}): whoever can write it can plant the signing key`,
    );
}

export interface DevSigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** The public half: kty, crv, x, y, kid, alg. */
  readonly publicJwk: JWK;
}

/** The key of `dir`, made (atomically: two processes starting at once agree on one key) if there is none. */
export async function loadOrCreateSigningKey(dir: string, flag = '--dir'): Promise<DevSigningKey> {
  const file = join(dir, SIGNING_KEY_FILE);
  let text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new SidecarError('ERR_FILE_READ', `${flag} ${dir}: cannot read ${SIGNING_KEY_FILE} (${err.code})`);
  });
  if (text === undefined) {
    await makeDevDir(flag, dir);
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
    const fresh = `${JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: ALG, use: 'sig' })}\n`;
    const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
    await writeDevFile(flag, tmp, fresh, 0o600);
    try {
      await link(tmp, file);
      text = fresh;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new SidecarError('ERR_FILE_WRITE', `${flag}: cannot write ${file} (${code})`);
      text = await readFile(file, 'utf8');
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }
  return parseSigningKey(text, `${flag} ${dir}: ${SIGNING_KEY_FILE}`);
}

async function parseSigningKey(text: string, source: string): Promise<DevSigningKey> {
  const bad = (why: string): never => {
    throw new SidecarError('ERR_KEY_PARSE', `${source} ${why}; remove it to make a new key`);
  };
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    return bad('is not JSON');
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d || !jwk.x || !jwk.y || typeof jwk.kid !== 'string')
    bad('is not an ES256 (P-256) private JWK with a kid');
  let privateKey: CryptoKey;
  try {
    privateKey = (await importJWK(jwk, ALG)) as CryptoKey;
  } catch (err) {
    return bad(`cannot be imported (${(err as Error).message})`);
  }
  const { kty, crv, x, y, kid } = jwk;
  return { kid: kid as string, privateKey, publicJwk: { kty, crv, x, y, kid, alg: ALG } };
}

/** An OIDC issuer's JWKS: the public key, for signatures. */
export function jwksOf(key: DevSigningKey): { keys: JWK[] } {
  return { keys: [{ ...key.publicJwk, use: 'sig' }] };
}

/** A SPIFFE bundle (Trust Domain and Bundle §4) holding the key as a JWT-SVID authority. */
export function spiffeJwtBundleOf(key: DevSigningKey): { keys: JWK[]; spiffe_refresh_hint: number } {
  return { keys: [{ ...key.publicJwk, use: 'jwt-svid' }], spiffe_refresh_hint: 300 };
}

export interface TokenRequest {
  sub: string;
  aud: readonly string[];
  ttlMs: number;
  /** The `iss` claim; none for a JWT-SVID (its trust domain is the sub's). */
  issuer?: string;
  claims?: Record<string, unknown>;
}

/** Signs a compact JWT: header `ES256`, the key's `kid`, `typ: JWT`; `iat`, `exp`, `jti`, then the claims. */
export function signToken(key: DevSigningKey, request: TokenRequest): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ ...request.claims })
    .setProtectedHeader({ alg: ALG, kid: key.kid, typ: 'JWT' })
    .setSubject(request.sub)
    .setAudience(request.aud.length === 1 ? request.aud[0] : [...request.aud])
    .setIssuedAt(now)
    .setExpirationTime(now + Math.max(1, Math.round(request.ttlMs / 1000)))
    .setJti(randomUUID());
  if (request.issuer !== undefined) jwt.setIssuer(request.issuer);
  return jwt.sign(key.privateKey);
}
