// The bench's trust domain, made at bench time in a temporary directory (never committed): a dev CA and
// SVIDs from the sidecar's own `certs init` / `certs issue`, and an ES256 key whose JWKS is the JWT bundle
// of the JWT row, with one JWT-SVID signed by it.
import { Buffer } from 'node:buffer';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import process from 'node:process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const TRUST_DOMAIN = 'bench.test';
export const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/server`;
export const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/client`;
export const JWT_AUDIENCE = 'bench';

/**
 * @param {string} cli path of dist/main.js
 * @param {string[]} args
 */
async function cliCommand(cli, args) {
  await run(process.execPath, [cli, ...args]);
}

/**
 * @typedef {object} Pki
 * @property {string} caDir ca.crt, ca.key
 * @property {string} serverDir tls.crt, tls.key, ca.crt: the SVID of every proxy under test
 * @property {string} clientDir the load generator's SVID
 * @property {string[]} rotationDirs more server SVIDs, rotated through by the rotation row
 * @property {string} jwksFile the JWT bundle (JWKS) of the trust domain
 * @property {string} jwtToken a JWT-SVID for CLIENT_ID, audience JWT_AUDIENCE, valid for 2 hours
 */

/**
 * @param {string} cli
 * @param {string} dir
 * @param {number} rotationSvids
 * @returns {Promise<Pki>}
 */
export async function makePki(cli, dir, rotationSvids) {
  const caDir = join(dir, 'ca');
  await cliCommand(cli, ['certs', 'init', '--trust-domain', TRUST_DOMAIN, '--out', caDir]);
  const issue = (/** @type {string} */ id, /** @type {string} */ out) =>
    cliCommand(cli, ['certs', 'issue', '--ca', caDir, '--id', id, '--out', out, '--lifetime', '6h']).then(() => out);
  const [serverDir, clientDir, ...rotationDirs] = await Promise.all([
    issue(SERVER_ID, join(dir, 'server')),
    issue(CLIENT_ID, join(dir, 'client')),
    ...Array.from({ length: rotationSvids }, (_, i) => issue(SERVER_ID, join(dir, `rotation-${i}`))),
  ]);
  const { jwksFile, jwtToken } = await makeJwt(dir);
  return { caDir, serverDir, clientDir, rotationDirs, jwksFile, jwtToken };
}

/** @param {object} value */
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * An ES256 key, its JWKS file, and a JWT-SVID signed with it.
 * @param {string} dir
 */
async function makeJwt(dir) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  // A directory of its own: the sidecar watches the bundle's directory, and nothing else may change there.
  const jwtDir = join(dir, 'jwt');
  await mkdir(jwtDir, { recursive: true });
  const kid = 'bench-key-1';
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'jwt-svid' };
  const jwksFile = join(jwtDir, 'jwt-bundle.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
  const now = Math.floor(Date.now() / 1000);
  const signingInput = `${b64url({ alg: 'ES256', kid, typ: 'JWT' })}.${b64url({
    sub: CLIENT_ID,
    aud: [JWT_AUDIENCE],
    iat: now,
    exp: now + 2 * 3600,
  })}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return { jwksFile, jwtToken: `${signingInput}.${signature.toString('base64url')}` };
}
