// Issue 15, finding 4. `--no-watch` only turns off the file watcher: SIGHUP and `--reload-interval` still
// re-read every file the sidecar reads, the JWT key files (`--jwt-bundle-file`, `--jwt-jwks NAME=FILE`)
// included, and the SIGHUP log line says what was re-read instead of blaming the Workload API.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
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
let bundleFile: string;
let jwksFile: string;

interface Key {
  kid: string;
  privateKey: CryptoKey;
}

let generation = 0;
/** Writes a new key to each file (the old ones are gone): a rotation. */
async function rotate(): Promise<{ svid: Key; ci: Key }> {
  generation++;
  const write = async (file: string, kid: string, use: string) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, use }] }));
    return { kid, privateKey };
  };
  return {
    svid: await write(bundleFile, `svid-${generation}`, 'jwt-svid'),
    ci: await write(jwksFile, `ci-${generation}`, 'sig'),
  };
}

function svidToken(key: Key): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setSubject('spiffe://example.org/frontend')
    .setAudience('orders')
    .setExpirationTime('5m')
    .sign(key.privateKey);
}

function ciToken(key: Key): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject('pipeline')
    .setAudience('orders')
    .setExpirationTime('5m')
    .sign(key.privateKey);
}

async function status(port: number, token: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } })).status;
}

async function startSidecar(...extra: string[]): Promise<{ cli: Running; port: number }> {
  const cli = startCli(
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
      ...extra,
    ),
  );
  const started = await waitForEvent(cli, 'started', 15_000);
  return { cli, port: (started.listen as { port: number }).port };
}

async function stop(cli: Running | undefined) {
  if (!cli) return;
  cli.child.kill('SIGTERM');
  await cli.exited;
}

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  bundleFile = join(dir.path, 'example.org.jwks.json');
  jwksFile = join(dir.path, 'ci.jwks.json');
});
afterAll(async () => {
  await app?.close();
  await dir?.remove();
});

describe('with --no-watch, SIGHUP reloads the JWT key files and says so', () => {
  let cli: Running | undefined;
  afterAll(() => stop(cli));

  it('new keys in both files are accepted after SIGHUP; the old ones are not', async () => {
    const first = await rotate();
    const s = await startSidecar();
    cli = s.cli;
    expect(await status(s.port, await svidToken(first.svid))).toBe(200);
    expect(await status(s.port, await ciToken(first.ci))).toBe(200);

    const next = await rotate();
    const from = cli.stdout().length;
    cli.child.kill('SIGHUP');
    // The one line a SIGHUP always ends with: what was reloaded (or why nothing was).
    const summary = await loggedSince(cli, from, (l) => l.event === 'reload_done' || l.event === 'reload_ignored');
    expect(summary).toMatchObject({ event: 'reload_done', trigger: 'SIGHUP' });
    expect(summary.files).toEqual(expect.arrayContaining(['--jwt-bundle-file', '--jwt-jwks']));
    expect(String(summary.msg)).not.toContain('SPIRE');
    const updates = logLinesSince(cli, from).filter((l) => l.event === 'jwt_bundles_updated' && l.trigger === 'SIGHUP');
    expect(updates.map((l) => l.trust_domains)).toEqual(expect.arrayContaining([['example.org'], ['ci']]));

    expect(await status(s.port, await svidToken(next.svid))).toBe(200);
    expect(await status(s.port, await ciToken(next.ci))).toBe(200);
    expect(await status(s.port, await svidToken(first.svid))).toBe(401);
    expect(await status(s.port, await ciToken(first.ci))).toBe(401);
  });
});

describe('with --no-watch, --reload-interval reloads the JWT key files', () => {
  let cli: Running | undefined;
  afterAll(() => stop(cli));

  it('new keys in both files are picked up by the interval', async () => {
    const first = await rotate();
    const s = await startSidecar('--reload-interval', '1s');
    cli = s.cli;
    expect(await status(s.port, await svidToken(first.svid))).toBe(200);

    const from = cli.stdout().length;
    const next = await rotate();
    for (const td of ['example.org', 'ci']) {
      await loggedSince(
        cli,
        from,
        (l) =>
          l.event === 'jwt_bundles_updated' && l.trigger === 'interval' && (l.trust_domains as string[]).includes(td),
      );
    }
    expect(await status(s.port, await svidToken(next.svid))).toBe(200);
    expect(await status(s.port, await ciToken(next.ci))).toBe(200);
  });
});

describe('with --no-watch, a token naming a key not yet read re-reads the --jwt-jwks file', () => {
  let cli: Running | undefined;
  afterAll(() => stop(cli));

  it('the first token of the new key is admitted (the request waits for the re-read), once per cool-down', async () => {
    const first = await rotate();
    const s = await startSidecar();
    cli = s.cli;
    expect(await status(s.port, await ciToken(first.ci))).toBe(200);

    const next = await rotate();
    const from = cli.stdout().length;
    // No signal, no interval, no watcher: only the key miss re-reads the file, before this request is judged.
    expect(await status(s.port, await ciToken(next.ci))).toBe(200);
    await loggedSince(cli, from, (l) => l.event === 'jwt_bundles_updated' && l.trigger === 'key_miss');

    // Within the cool-down, another unknown key is refused at once: no second re-read.
    const third = await rotate();
    expect(await status(s.port, await ciToken(third.ci))).toBe(401);
    expect(
      logLinesSince(cli, from).filter((l) => l.trigger === 'key_miss' && l.event === 'jwt_bundles_updated'),
    ).toHaveLength(1);
  });
});
