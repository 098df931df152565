// A `--jwt-bundle-file` that is a SPIFFE bundle (a `spiffe_*` member, or an entry naming an SVID use) takes only
// its `use: "jwt-svid"` entries as keys (Trust Domain and Bundle §4.2.2). A hand-made bundle whose keys say `sig`
// loads, and then refuses every token they signed: the sidecar says so when it reads the file (at start and on
// each reload), naming the file and the ignored kids, not only in each refusal. A plain JWK Set, and an issuer's
// `--jwt-jwks` file, whose entries need no use, are not warned of.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { tempDir } from '../helpers/pki.js';
import {
  jwtSidecarArgs,
  logLinesSince,
  loggedSince,
  type Running,
  startCli,
  waitForEvent,
} from '../helpers/process.js';

const ISSUER = 'https://ci.example';
let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let cli: Running | undefined;
let port: number;
let bundleFile: string;
let jwksFile: string;

interface Key {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function newKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid } };
}

function svidToken(key: Key): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setSubject('spiffe://example.org/frontend')
    .setAudience('orders')
    .setExpirationTime('5m')
    .sign(key.privateKey);
}

async function status(token: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } })).status;
}

const ignoredWarnings = (from: number) =>
  logLinesSince(cli!, from).filter((l) => l.event === 'jwt_bundle_entries_ignored');

/** SIGHUP, then the lines of that reload, up to its `jwt_bundles_updated` (a reload warns before it logs that). */
async function reload(): Promise<Record<string, unknown>[]> {
  const from = cli!.stdout().length;
  cli!.child.kill('SIGHUP');
  await loggedSince(cli!, from, (l) => l.event === 'jwt_bundles_updated');
  return logLinesSince(cli!, from);
}

let sigKey: Key;
let svidKey: Key;

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  bundleFile = join(dir.path, 'example.org.bundle.json');
  jwksFile = join(dir.path, 'ci.jwks.json');
  sigKey = await newKey('made-for-oidc');
  svidKey = await newKey('svid-1');
  // A SPIFFE bundle (spiffe_sequence) with one key marked for JWT-SVIDs and one marked `sig`.
  await writeFile(
    bundleFile,
    JSON.stringify({
      spiffe_sequence: 1,
      keys: [
        { ...sigKey.jwk, use: 'sig' },
        { ...svidKey.jwk, use: 'jwt-svid' },
      ],
    }),
  );
  // An issuer's JWKS: `sig` entries are its keys.
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await newKey('ci-1')).jwk, use: 'sig' }] }));
  cli = startCli(
    jwtSidecarArgs(
      app.url,
      '--no-watch',
      '--jwt-bundle-file',
      `example.org=${bundleFile}`,
      '--jwt-issuer',
      `ci=${ISSUER}`,
      '--jwt-jwks',
      `ci=${jwksFile}`,
      '--allow',
      'spiffe://example.org/frontend',
      '--allow-issuer',
      'ci',
    ),
  );
  port = ((await waitForEvent(cli, 'started', 15_000)).listen as { port: number }).port;
});
afterAll(async () => {
  if (cli) {
    cli.child.kill('SIGTERM');
    await cli.exited;
  }
  await app?.close();
  await dir?.remove();
});

describe('a SPIFFE bundle file with entries that lack use "jwt-svid"', () => {
  it('is warned of once when read at start, naming the file, the trust domain and the ignored kid', async () => {
    // `started` is logged after every key file was read: the warnings are all there by then.
    const warnings = ignoredWarnings(0);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      level: 'warn',
      flag: '--jwt-bundle-file',
      file: bundleFile,
      trust_domain: 'example.org',
      kids: ['made-for-oidc'],
    });
    expect(warnings[0].msg).toMatch(/1 key entries are ignored.*"use": "jwt-svid"/);
  });

  it('and the warning says what happens: the ignored key is refused, the jwt-svid one accepted', async () => {
    expect(await status(await svidToken(sigKey))).toBe(401);
    expect(await status(await svidToken(svidKey))).toBe(200);
  });

  it('a reload of the file as a plain JWK Set is not warned of, and its `sig` key is then a key', async () => {
    await writeFile(bundleFile, JSON.stringify({ keys: [{ ...sigKey.jwk, use: 'sig' }] }));
    const lines = await reload();
    expect(lines.filter((l) => l.event === 'jwt_bundle_entries_ignored')).toEqual([]);
    expect(await status(await svidToken(sigKey))).toBe(200);
  });

  it('a reload back to a SPIFFE bundle with ignored entries is warned of again', async () => {
    const other = await newKey('also-sig');
    await writeFile(
      bundleFile,
      JSON.stringify({ keys: [{ ...other.jwk }, { ...sigKey.jwk, use: 'sig' }, { ...svidKey.jwk, use: 'jwt-svid' }] }),
    );
    const warnings = (await reload()).filter((l) => l.event === 'jwt_bundle_entries_ignored');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ file: bundleFile, kids: ['also-sig', 'made-for-oidc'] });
    expect(warnings[0].msg).toMatch(/2 key entries are ignored/);
    expect(await status(await svidToken(sigKey))).toBe(401);
    expect(await status(await svidToken(svidKey))).toBe(200);
  });
});
