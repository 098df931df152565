// A trust domain's JWT-SVID signing key for tests: its public half written as a bundle file (a JWKS, as
// --jwt-bundle-file reads it), and JWT-SVIDs signed with it.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export interface JwtSvidKeys {
  /** The bundle file (`--jwt-bundle-file TD=FILE`). */
  file: string;
  /** A JWT-SVID for `sub` and `audience`, with more claims if given; `lifetime` as jose reads it (`5m`). */
  sign(sub: string, audience: string, claims?: Record<string, unknown>, lifetime?: string): Promise<string>;
}

export async function jwtSvidKeys(dir: string, trustDomain = 'example.org', kid = 'k1'): Promise<JwtSvidKeys> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const file = join(dir, `${trustDomain}.jwks.json`);
  await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' }] }));
  return {
    file,
    sign: (sub, audience, claims = {}, lifetime = '5m') =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setSubject(sub)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(lifetime)
        .sign(privateKey),
  };
}
