// Issue 15, finding 3. An issuer's JWKS endpoint that answers `{"keys":[]}` (a broken deploy, a proxy
// error page turned JSON) or only keys nobody can verify with, must not wipe the keys the sidecar has:
// the last good set stays in force, the refusal is logged (`jwks_fetch_failed`, reason `empty`) and
// counted (spiffe_sidecar_jwks_fetch_failures_total).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { tempDir } from '../helpers/pki.js';
import { type ScriptableIssuer, startScriptableIssuer } from '../helpers/scriptable-oidc-issuer.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let issuer: ScriptableIssuer;
let sidecar: TestSidecar;

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  issuer = await startScriptableIssuer();
  const issuerCa = join(dir.path, 'issuer-ca.pem');
  await writeFile(issuerCa, issuer.caPem);
  sidecar = await startTestSidecar({
    upstream: app.url,
    'auth-mode': 'jwt',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`ci=${issuer.url}`],
    'jwt-ca-file': issuerCa,
    'allow-issuer': ['ci'],
    'allow-any': true,
  });
});
afterAll(async () => {
  await sidecar?.close();
  await issuer?.close();
  await app?.close();
  await dir?.remove();
});

async function call(token: string): Promise<{ status: number; reason?: string }> {
  const res = await fetch(`http://127.0.0.1:${sidecar.port}/x`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  return {
    status: res.status,
    reason: res.status === 200 ? undefined : (JSON.parse(body) as { reason: string }).reason,
  };
}

/** The first log line after `from` that reports what the sidecar made of a JWKS answer of `keys` keys. */
async function nextKeysVerdict(from: number, keys: number): Promise<Record<string, unknown>> {
  const verdict = () =>
    sidecar.logs
      .slice(from)
      .find((l) => (l.event === 'jwks_updated' || l.event === 'jwks_fetch_failed') && l.keys === keys);
  await expect.poll(verdict, { timeout: 20_000 }).toBeDefined();
  return verdict() as Record<string, unknown>;
}

async function failuresMetric(reason: string): Promise<number> {
  const scrape = await (await fetch(`http://127.0.0.1:${sidecar.adminAddress().port}/metrics`)).text();
  const m = new RegExp(
    `^spiffe_sidecar_jwks_fetch_failures_total\\{issuer="ci",reason="${reason}"\\} (\\d+)$`,
    'm',
  ).exec(scrape);
  return Number(m?.[1] ?? 0);
}

describe('an issuer answering no usable key keeps the last good keys', () => {
  it('{"keys":[]} after a good set: the old token and new tokens signed by the kept key are still admitted', async () => {
    const before = await issuer.sign({ sub: 'pipeline-1' });
    expect((await call(before)).status).toBe(200);

    issuer.serve({ keys: [] });
    const fetched = issuer.nextFetch();
    const from = sidecar.logs.length;
    // A kid the sidecar does not know makes it refetch at once (the key-miss refresh).
    const miss = await call(await issuer.sign({ sub: 'pipeline-1' }, { kid: 'rotated-maybe' }));
    expect(miss).toEqual({ status: 401, reason: 'ERR_JWT_KEY_NOT_FOUND' });
    await fetched;
    const verdict = await nextKeysVerdict(from, 0);
    expect(verdict).toMatchObject({ event: 'jwks_fetch_failed', issuer: 'ci', reason: 'empty', stale: true });
    expect(verdict.level).toBe('warn');

    expect((await call(before)).status).toBe(200);
    expect((await call(await issuer.sign({ sub: 'pipeline-2' }))).status).toBe(200);
    expect(await failuresMetric('empty')).toBeGreaterThanOrEqual(1);
  });

  it('a set with only unusable keys (an HMAC secret, an encryption key, no kid) is refused the same way', async () => {
    const [good] = issuer.goodJwks.keys;
    issuer.serve({
      keys: [
        { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' },
        { ...good, use: 'enc', kid: 'for-encryption' },
        { ...good, kid: undefined },
      ],
    });
    const from = sidecar.logs.length;
    const counted = await failuresMetric('empty');
    // The failed refresh above retries on its own soon (backoff), so no key miss is needed here.
    await issuer.nextFetch();
    const verdict = await nextKeysVerdict(from, 3);
    expect(verdict).toMatchObject({ event: 'jwks_fetch_failed', issuer: 'ci', reason: 'empty', stale: true });
    expect((await call(await issuer.sign({ sub: 'pipeline-3' }))).status).toBe(200);
    expect(await failuresMetric('empty')).toBeGreaterThan(counted);
  });
});
