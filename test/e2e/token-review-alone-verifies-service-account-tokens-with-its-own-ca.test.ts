// --k8s-token-review-only: the real sidecar verifies Kubernetes service-account tokens by TokenReview alone,
// with no issuer keys anywhere (the issuer URL does not even resolve), trusting the API server by the CA of
// --k8s-api-ca-file only; an API server that cannot answer is a 503 of its own reason; a CA flag that cannot
// be used stops startup with the flag's name.
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';
import { createDevCa, tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, runCli, startCli, waitForEvent } from '../helpers/process.js';

/** The in-cluster issuer: never contacted (no discovery, no JWKS), so it need not resolve. */
const K8S_ISS = 'https://kubernetes.default.svc.cluster.local';
const SUBJECT = 'system:serviceaccount:agents:worker';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let kube: KubeApi;
let signingKey: CryptoKey;
let apiCaFile: string;
let tokenFile: string;
let cli: ReturnType<typeof startCli>;
let port: number;
let adminPort: number;

/** The flags of a review-only sidecar in front of the echo app, calling the fake API server. */
function reviewOnlyArgs(...extra: string[]): string[] {
  return jwtSidecarArgs(
    app.url,
    '--jwt-issuer',
    `k8s=${K8S_ISS}`,
    '--allow',
    'spiffe://cluster.local/ns/agents/sa/*',
    // --k8s-token-review-only alone should do (its help says it implies the other); today config wants both.
    '--k8s-token-review',
    '--k8s-token-review-only',
    '--k8s-api-server',
    kube.url,
    '--k8s-token-file',
    tokenFile,
    ...extra,
  );
}

async function stop(running: ReturnType<typeof startCli>) {
  running.child.kill('SIGTERM');
  await running.exited;
}

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  kube = await startKubeApi();
  // Any key: only the API server checks the signature, and our fake one knows its tokens by value.
  signingKey = (await generateKeyPair('RS256')).privateKey;
  apiCaFile = join(dir.path, 'kube-ca.crt');
  await writeFile(apiCaFile, kube.caPem);
  tokenFile = join(dir.path, 'token');
  await writeFile(tokenFile, `${kube.callerToken}\n`);
  cli = startCli(reviewOnlyArgs('--k8s-api-ca-file', apiCaFile));
  const started = await waitForEvent(cli, 'started', 15_000);
  port = (started.listen as { port: number }).port;
  adminPort = (started.admin as { port: number }).port;
});
afterAll(async () => {
  await stop(cli);
  await kube.close();
  await app.close();
  await dir.remove();
});

/** A service-account token as the cluster would mint it; `live`: the API server knows it. */
async function serviceAccountToken(live = true, expires: string | number = '10m'): Promise<string> {
  // A jti as recent clusters mint: RS256 signatures are deterministic, and two tokens must differ.
  const token = await new SignJWT({ sub: SUBJECT, jti: randomUUID() })
    .setProtectedHeader({ alg: 'RS256', kid: 'cluster-key' })
    .setIssuer(K8S_ISS)
    .setAudience('orders')
    .setIssuedAt()
    .setExpirationTime(expires)
    .sign(signingKey);
  if (live) kube.live.set(token, SUBJECT);
  return token;
}

/** The `peer_rejected` lines of a review that could not be made, so far. */
function unavailableLines(running: ReturnType<typeof startCli>): number {
  return running
    .stdout()
    .split('\n')
    .slice(0, -1) // the last piece may still be being written
    .filter((t) => t.startsWith('{'))
    .map((t) => JSON.parse(t) as Record<string, unknown>)
    .filter((l) => l.event === 'peer_rejected' && l.reason === 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE').length;
}

async function call(token: string, to = port) {
  const res = await fetch(`http://127.0.0.1:${to}/`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  return { status: res.status, body, seen: res.status === 200 ? JSON.parse(body).headers : undefined };
}

describe('TokenReview alone verifies service-account tokens, trusting the API server by its own CA', () => {
  it('is ready with no keys to wait for, and never looks for any', async () => {
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
    expect(cli.stdout()).not.toMatch(/"event":"jwks_/);
  });

  it('a live service-account token is admitted as its SPIFFE ID; a review is made once per token', async () => {
    const token = await serviceAccountToken();
    const reviews = kube.reviews;
    const res = await call(token);
    expect(res.status).toBe(200);
    expect(res.seen['x-spiffe-id']).toBe('spiffe://cluster.local/ns/agents/sa/worker');
    expect((await call(token)).status).toBe(200);
    expect(kube.reviews).toBe(reviews + 1);
  });

  it('a token the API server does not know is 401 ERR_JWT_TOKEN_REVIEW; an expired one is not even reviewed', async () => {
    const unknown = await call(await serviceAccountToken(false));
    expect(unknown.status).toBe(401);
    expect(JSON.parse(unknown.body).reason).toBe('ERR_JWT_TOKEN_REVIEW');
    const reviews = kube.reviews;
    const expired = await call(await serviceAccountToken(true, Math.floor(Date.now() / 1000) - 3600));
    expect(JSON.parse(expired.body).reason).toBe('ERR_JWT_EXPIRED');
    expect(kube.reviews).toBe(reviews);
  });

  it('--jwt-ca-file is not trusted for the API server once --k8s-api-ca-file names its CA', async () => {
    const otherCaFile = join(dir.path, 'other-ca.crt');
    await writeFile(otherCaFile, (await createDevCa({ trustDomain: 'other.test' })).certPem);
    const wrong = startCli(reviewOnlyArgs('--k8s-api-ca-file', otherCaFile, '--jwt-ca-file', apiCaFile));
    try {
      const wrongPort = ((await waitForEvent(wrong, 'started', 15_000)).listen as { port: number }).port;
      const reviews = kube.reviews;
      expect((await call(await serviceAccountToken(), wrongPort)).status).toBe(503);
      await expect.poll(() => unavailableLines(wrong)).toBe(1);
      expect(kube.reviews).toBe(reviews); // the TLS handshake failed: no review reached the API server
    } finally {
      await stop(wrong);
    }
  });

  it('an API server that answers with errors, or not at all, is 503 with reason ERR_JWT_TOKEN_REVIEW_UNAVAILABLE', async () => {
    const before = unavailableLines(cli);
    kube.up = false;
    try {
      expect((await call(await serviceAccountToken())).status).toBe(503);
    } finally {
      kube.up = true;
    }
    await expect.poll(() => unavailableLines(cli)).toBe(before + 1);
    // Down for good: nothing listens there any more.
    await kube.close();
    expect((await call(await serviceAccountToken())).status).toBe(503);
    await expect.poll(() => unavailableLines(cli)).toBe(before + 2);
  });

  it('a --k8s-api-ca-file that is missing, or holds no certificate, stops startup naming the flag and the path', async () => {
    const missing = join(dir.path, 'no-such-ca.crt');
    const notPem = join(dir.path, 'not-a-ca.crt');
    await writeFile(notPem, 'this is not a certificate\n');
    for (const file of [missing, notPem]) {
      const result = await runCli(reviewOnlyArgs('--k8s-api-ca-file', file));
      expect(result.code).toBe(1);
      expect(result.stdout).not.toContain('"event":"started"');
      const line = result.stderr.trim();
      expect(line.split('\n')).toHaveLength(1);
      expect(line).toContain('ERR_FILE_READ');
      expect(line).toContain(`--k8s-api-ca-file ${file}`);
    }
  });
});
