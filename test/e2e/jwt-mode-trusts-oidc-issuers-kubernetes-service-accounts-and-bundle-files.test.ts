// JWT mode against real issuers: a local HTTPS OIDC issuer (own CA, discovery, rotating JWKS that can go
// down), Kubernetes service-account tokens mapped to SPIFFE IDs, and hot-reloaded JWT bundle files.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, startCli, waitForEvent } from '../helpers/process.js';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let k8s: OidcIssuer;
let keycloak: OidcIssuer;
let caFile: string;
let port: number;
let adminPort: number;
let cli: ReturnType<typeof startCli>;
let bundleFile: string;
let svidKey: { kid: string; privateKey: CryptoKey };

async function bundleWithNewKey(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  await writeFile(bundleFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' }] }));
  return { kid, privateKey };
}

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  k8s = await startOidcIssuer();
  keycloak = await startOidcIssuer();
  caFile = join(dir.path, 'issuers-ca.pem');
  await writeFile(caFile, k8s.caPem + keycloak.caPem);
  bundleFile = join(dir.path, 'example.org.jwks.json');
  svidKey = await bundleWithNewKey('file-1');
  cli = startCli(
    jwtSidecarArgs(
      app.url,
      '--jwt-issuer',
      `k8s=${k8s.url}`,
      '--jwt-issuer',
      `keycloak=${keycloak.url}`,
      '--jwt-ca-file',
      caFile,
      '--jwt-bundle-file',
      `example.org=${bundleFile}`,
      '--allow',
      'spiffe://cluster.local/ns/agents/sa/*',
      '--allow',
      'spiffe://example.org/frontend',
      '--allow-issuer',
      'keycloak',
    ),
  );
  const started = await waitForEvent(cli, 'started', 15_000);
  port = (started.listen as { port: number }).port;
  adminPort = (started.admin as { port: number }).port;
});
afterAll(async () => {
  cli.child.kill('SIGTERM');
  await cli.exited;
  await k8s.close();
  await keycloak.close();
  await app.close();
  await dir.remove();
});

async function call(token: string) {
  const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  return { status: res.status, body, seen: res.status === 200 ? JSON.parse(body).headers : undefined };
}

const serviceAccount = (ns: string, sa: string) => ({ sub: `system:serviceaccount:${ns}:${sa}` });

describe('JWT mode trusts OIDC issuers, Kubernetes service accounts and bundle files', () => {
  it('a Kubernetes service-account token becomes a SPIFFE ID; a namespace wildcard admits every SA in it', async () => {
    for (const sa of ['sandbox-1', 'sandbox-2']) {
      const res = await call(await k8s.sign(serviceAccount('agents', sa)));
      expect(res.status).toBe(200);
      expect(res.seen['x-spiffe-id']).toBe(`spiffe://cluster.local/ns/agents/sa/${sa}`);
      expect(res.seen['x-jwt-issuer']).toBe('k8s');
      expect(res.seen['x-jwt-subject']).toBe(`system:serviceaccount:agents:${sa}`);
    }
    expect((await call(await k8s.sign(serviceAccount('kube-system', 'admin')))).status).toBe(403);
    expect(JSON.parse((await call(await k8s.sign({ sub: 'alice' }))).body).reason).toBe('ERR_JWT_SUBJECT');
  });

  it('a subject that is not a string is refused, never coerced into a SPIFFE ID', async () => {
    const res = await call(await k8s.sign({ sub: ['system:serviceaccount:agents:a'] } as never));
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).reason).toMatch(/ERR_JWT_(SUBJECT|CLAIM|INVALID)/);
  });

  it('issuer and audience are always checked', async () => {
    const wrongAud = await call(await k8s.sign(serviceAccount('agents', 'a'), { audience: 'payments' }));
    expect(JSON.parse(wrongAud.body).reason).toBe('ERR_JWT_AUDIENCE');
    // A token claiming the keycloak issuer but signed with k8s's key: its kid is unknown there.
    const forged = await k8s.sign(serviceAccount('agents', 'a'), { issuer: keycloak.url });
    const res = await call(forged);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).reason).toBe('ERR_JWT_KEY_NOT_FOUND');
  });

  it('another OIDC issuer: admitted by --allow-issuer, with issuer and subject headers and no SPIFFE ID', async () => {
    const res = await call(await keycloak.sign({ sub: 'ci-pipeline-42' }));
    expect(res.status).toBe(200);
    expect(res.seen['x-jwt-issuer']).toBe('keycloak');
    expect(res.seen['x-jwt-subject']).toBe('ci-pipeline-42');
    expect(res.seen['x-spiffe-id']).toBeUndefined();
  });

  it('the issuer rotates its keys: the first token of the new kid is admitted, after one refresh', async () => {
    await k8s.rotate();
    const before = k8s.fetches;
    const token = await k8s.sign(serviceAccount('agents', 'rotated'));
    // The new kid misses; the request waits for the one refresh that miss starts, and is verified against it.
    expect((await call(token)).status).toBe(200);
    expect(k8s.fetches - before).toBeGreaterThanOrEqual(1);
  });

  it('a flood of tokens with made-up kids triggers at most one refresh per cool-down', async () => {
    const before = k8s.fetches;
    for (let i = 0; i < 20; i++) {
      const res = await call(await k8s.sign(serviceAccount('agents', 'a'), { kid: `made-up-${i}` }));
      expect(JSON.parse(res.body).reason).toBe('ERR_JWT_KEY_NOT_FOUND');
    }
    expect(k8s.fetches - before).toBeLessThanOrEqual(1);
  });

  it('the issuer goes down: cached keys keep working', async () => {
    const token = await k8s.sign(serviceAccount('agents', 'during-outage'));
    k8s.up = false;
    try {
      expect((await call(token)).status).toBe(200);
    } finally {
      k8s.up = true;
    }
  });

  it('JWT-SVIDs verified with a bundle file, which is hot-reloaded', async () => {
    const sign = (key: typeof svidKey) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
        .setSubject('spiffe://example.org/frontend')
        .setAudience('orders')
        .setExpirationTime('5m')
        .sign(key.privateKey);
    const first = await sign(svidKey);
    expect((await call(first)).seen['x-spiffe-id']).toBe('spiffe://example.org/frontend');
    const next = await bundleWithNewKey('file-2');
    const second = await sign(next);
    await expect.poll(async () => (await call(second)).status, { timeout: 5000 }).toBe(200);
    expect((await call(first)).status).toBe(401);
  });

  it('metrics count verifications and cache hits', async () => {
    const token = await k8s.sign(serviceAccount('agents', 'metrics'));
    for (let i = 0; i < 3; i++) await call(token);
    const scrape = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(
      Number(/^spiffe_sidecar_jwt_verifications_total\{result="verified"\} (\d+)$/m.exec(scrape)?.[1]),
    ).toBeGreaterThan(0);
    expect(Number(/^spiffe_sidecar_jwt_cache_hits_total (\d+)$/m.exec(scrape)?.[1])).toBeGreaterThanOrEqual(2);
  });
});

describe('an issuer that was never reachable', () => {
  it('answers 503 (no keys), not 401, and /readyz says why', async () => {
    const down = await startOidcIssuer();
    down.up = false;
    const ca = join(dir.path, 'down-ca.pem');
    await writeFile(ca, down.caPem);
    const sidecar = startCli(
      jwtSidecarArgs(app.url, '--jwt-issuer', `k8s=${down.url}`, '--jwt-ca-file', ca, '--allow-any'),
    );
    try {
      const started = await waitForEvent(sidecar, 'started', 15_000);
      const res = await fetch(`http://127.0.0.1:${(started.listen as { port: number }).port}/`, {
        headers: { authorization: `Bearer ${await down.sign(serviceAccount('agents', 'a'))}` },
      });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: 'unavailable', reason: 'no_keys' });
      const ready = await fetch(`http://127.0.0.1:${(started.admin as { port: number }).port}/readyz`);
      expect(await ready.json()).toEqual({ ready: false, reason: 'waiting_for_jwt_keys' });
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
      await down.close();
    }
  });
});
