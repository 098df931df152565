// A real signed token in every place a client can put one, real keys on disk, debug logging, both log
// formats: no log line may contain the token or any private key material.
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejected, requestVia } from '../helpers/client.js';
import { startCli } from '../helpers/process.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** An ES256 JWT-SVID, signed for real. */
function realToken(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'k1' }));
  const payload = b64url(
    JSON.stringify({ sub: ALLOWED_ID, aud: ['orders'], exp: Math.floor(Date.now() / 1000) + 300 }),
  );
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(signature)}`;
}

/** Distinctive pieces of a PEM private key: its base64 lines, and the raw scalar. */
function keyFragments(pem: string): string[] {
  const lines = pem.split('\n').filter((l) => l && !l.startsWith('-----'));
  const d = createPrivateKey(pem).export({ format: 'jwk' }).d as string;
  return [...lines.filter((l) => l.length >= 40), d];
}

let s: Scenario;
let token: string;
beforeAll(async () => {
  s = await startScenario({ 'log-level': 'trace' });
  token = realToken();
});
afterAll(() => s.close());

function expectClean(text: string) {
  expect(text.length).toBeGreaterThan(200);
  expect(text).not.toContain(token);
  expect(text).not.toContain(token.split('.')[2]);
  for (const pem of [s.allowed.keyPem, s.denied.keyPem]) {
    for (const fragment of keyFragments(pem)) expect(text).not.toContain(fragment);
  }
}

describe('logs never contain a token or a key', () => {
  it('in-process, json, trace level', async () => {
    const headers = { authorization: `Bearer ${token}`, cookie: `session=${token}`, 'x-api-token': token };
    await requestVia(s.sidecar.port, s.allowed, { path: `/a?access_token=${token}`, headers });
    await requestVia(s.sidecar.port, s.denied, { path: `/b?access_token=${token}`, headers });
    await expectRejected(s.sidecar.port, undefined, { path: `/c?access_token=${token}`, headers });
    // A failed reload (the key of another certificate) logs about key files: never their content.
    const original = await readFile(s.files.keyFile, 'utf8');
    await writeFile(s.files.keyFile, s.denied.keyPem);
    expect((await s.sidecar.identity.reload('test')).outcome).toBe('failed');
    await writeFile(s.files.keyFile, original);
    expect((await s.sidecar.identity.reload('test')).outcome).not.toBe('failed');
    expectClean(JSON.stringify(s.sidecar.logs));
  });

  it('the real process, pretty format, trace level', async () => {
    const keyPem = await readFile(s.files.keyFile, 'utf8');
    const ownKey = join(s.dir, 'own.key');
    await writeFile(ownKey, keyPem);
    const cli = startCli([
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      s.app.url,
      '--log-format',
      'pretty',
      '--log-level',
      'trace',
      '--mtls-cert-file',
      s.files.certFile,
      '--mtls-key-file',
      ownKey,
      '--mtls-ca-file',
      s.files.caFile,
      '--allow',
      ALLOWED_ID,
    ]);
    try {
      await expect.poll(() => cli.stdout(), { timeout: 10_000 }).toContain('sidecar started');
      const port = Number(/"port":(\d+)/.exec(cli.stdout())?.[1]);
      const headers = { authorization: `Bearer ${token}` };
      expect((await requestVia(port, s.allowed, { path: `/p?access_token=${token}`, headers })).status).toBe(200);
      expect((await requestVia(port, s.denied, { headers })).status).toBe(403);
      await expect.poll(() => cli.stdout(), { timeout: 5000 }).toContain('decision=deny');
    } finally {
      cli.child.kill('SIGTERM');
    }
    const done = await cli.exited;
    expect(done.stdout).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}authorization decision /m);
    const everything = done.stdout + done.stderr;
    expectClean(everything);
    for (const fragment of keyFragments(keyPem)) expect(everything).not.toContain(fragment);
  });
});
