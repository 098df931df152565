// --k8s-token-review: a valid-looking service-account token is confirmed with the API server's TokenReview
// (HTTPS, its own CA); after its pod is "deleted" the next review refuses it; an API server that cannot
// answer fails closed.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, startCli, waitForEvent } from '../helpers/process.js';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let issuer: OidcIssuer;
let kube: KubeApi;
let cli: ReturnType<typeof startCli>;
let port: number;

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  issuer = await startOidcIssuer();
  kube = await startKubeApi();
  const ca = join(dir.path, 'ca.pem');
  await writeFile(ca, issuer.caPem + kube.caPem);
  const tokenFile = join(dir.path, 'token');
  await writeFile(tokenFile, `${kube.callerToken}\n`);
  cli = startCli(
    jwtSidecarArgs(
      app.url,
      '--jwt-issuer',
      `k8s=${issuer.url}`,
      '--jwt-ca-file',
      ca,
      '--allow',
      'spiffe://cluster.local/ns/agents/sa/*',
      '--k8s-token-review',
      '--k8s-api-server',
      kube.url,
      '--k8s-token-file',
      tokenFile,
      '--k8s-token-review-interval',
      '1s',
    ),
  );
  port = ((await waitForEvent(cli, 'started', 15_000)).listen as { port: number }).port;
});
afterAll(async () => {
  cli.child.kill('SIGTERM');
  await cli.exited;
  await kube.close();
  await issuer.close();
  await app.close();
  await dir.remove();
});

async function call(token: string) {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
}

describe("Kubernetes TokenReview stops a deleted pod's token", () => {
  it('accepts a live token, reviewed once per interval; refuses it after the pod is deleted', async () => {
    const subject = 'system:serviceaccount:agents:worker';
    const token = await issuer.sign({ sub: subject });
    kube.live.set(token, subject);
    expect((await call(token)).status).toBe(200);
    const reviews = kube.reviews;
    expect((await call(token)).status).toBe(200);
    expect(kube.reviews).toBe(reviews); // cached: no second review within the interval
    kube.live.delete(token);
    await expect.poll(async () => (await call(token)).status, { timeout: 5000 }).toBe(401);
    expect(JSON.parse((await call(token)).body).reason).toBe('ERR_JWT_TOKEN_REVIEW');
  });

  it('a token the API server never issued is refused even though its signature is valid', async () => {
    const res = await call(await issuer.sign({ sub: 'system:serviceaccount:agents:ghost' }));
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).reason).toBe('ERR_JWT_TOKEN_REVIEW');
  });

  it('an API server that cannot answer fails closed with 503', async () => {
    const subject = 'system:serviceaccount:agents:during-outage';
    const token = await issuer.sign({ sub: subject });
    kube.live.set(token, subject);
    kube.up = false;
    try {
      expect((await call(token)).status).toBe(503);
    } finally {
      kube.up = true;
    }
    expect((await call(token)).status).toBe(200);
  });
});
