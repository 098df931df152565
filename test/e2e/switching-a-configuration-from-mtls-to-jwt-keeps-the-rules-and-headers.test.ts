// One SPIRE-mode configuration, served as mTLS and then with `--auth-mode jwt --jwt-audience orders`
// added: the same --allow rules admit the same caller, and the app sees the same x-spiffe-id. JWT-SVID
// keys come from the Workload API's JWT bundles stream.
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { type SpireTestSidecar, startSpireTestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const SERVER_ID = 'spiffe://example.org/orders';
const CALLER_ID = 'spiffe://example.org/frontend';
const OTHER_ID = 'spiffe://example.org/batch';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let app: EchoApp;
let api: TestWorkloadApi;
let signingKey: CryptoKey;

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  app = await startEchoApp();
  api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
  api.setX509({
    svids: [{ spiffeId: SERVER_ID, svid: await issueSvid(ca, { id: SERVER_ID }), bundlePem: ca.certPem }],
  });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  signingKey = privateKey;
  api.setJwtBundles({
    'spiffe://example.org': { keys: [{ ...(await exportJWK(publicKey)), kid: 'spire-1', use: 'jwt-svid' }] },
  });
});
afterAll(async () => {
  await api.close();
  await app.close();
  await dir.remove();
});

/** The configuration a user runs; JWT mode adds exactly two flags. */
const CONFIG = () => ({ upstream: app.url, 'workload-api-socket': api.address, allow: [CALLER_ID] });

function jwtSvid(sub: string, audience = 'orders', kid = 'spire-1') {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
    .setSubject(sub)
    .setAudience(audience)
    .setExpirationTime('5m')
    .sign(signingKey);
}

async function get(port: number, token?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/orders`, {
    headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe('switching a configuration from mTLS to JWT keeps the rules and headers', () => {
  let mtls: SpireTestSidecar;
  let jwt: SpireTestSidecar;
  beforeAll(async () => {
    mtls = await startSpireTestSidecar(CONFIG());
    jwt = await startSpireTestSidecar({ ...CONFIG(), 'auth-mode': 'jwt', 'jwt-audience': ['orders'] });
    // Ready once the JWT bundles have streamed in.
    for (let i = 0; i < 100; i++) {
      if ((await fetch(`http://127.0.0.1:${jwt.adminAddress().port}/readyz`)).status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    await mtls.close();
    await jwt.close();
  });

  it('the same caller gets the same identity header through both', async () => {
    const viaMtls = await requestVia(mtls.port, await issueSvid(ca, { id: CALLER_ID }), { path: '/orders' });
    expect(viaMtls.status).toBe(200);
    expect(JSON.parse(viaMtls.body).headers['x-spiffe-id']).toBe(CALLER_ID);

    const viaJwt = await get(jwt.port, await jwtSvid(CALLER_ID), { 'x-spiffe-id': 'spiffe://example.org/admin' });
    expect(viaJwt.status).toBe(200);
    const seen = JSON.parse(viaJwt.body).headers;
    expect(seen['x-spiffe-id']).toBe(CALLER_ID);
    expect(seen.authorization).toBeUndefined();
    expect(seen['x-forwarded-client-cert']).toBeUndefined();
  });

  it('the same rules deny the same callers', async () => {
    expect((await requestVia(mtls.port, await issueSvid(ca, { id: OTHER_ID }))).status).toBe(403);
    const denied = await get(jwt.port, await jwtSvid(OTHER_ID));
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toEqual({ error: 'forbidden', reason: 'no_matching_rule' });
  });

  it('no token: 401 with a Bearer challenge; a bad token: 401 invalid_token with the reason', async () => {
    const seen = app.seen.length;
    const none = await get(jwt.port);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(JSON.parse(none.body)).toEqual({ error: 'unauthorized', reason: 'ERR_JWT_MISSING' });
    const cases: [string, string][] = [
      [await jwtSvid(CALLER_ID, 'payments'), 'ERR_JWT_AUDIENCE'],
      [await jwtSvid(CALLER_ID, 'orders', 'unknown-kid'), 'ERR_JWT_KEY_NOT_FOUND'],
      [await jwtSvid('spiffe://partner.org/x'), 'ERR_JWT_NO_BUNDLE'],
      ['not.a.token', 'ERR_JWT_MALFORMED'],
    ];
    for (const [token, reason] of cases) {
      const res = await get(jwt.port, token);
      expect(res.status, reason).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
      expect(JSON.parse(res.body).reason).toBe(reason);
    }
    expect(app.seen.length).toBe(seen);
  });

  let cachedToken = '';
  it('a token is verified once, then served from the cache', async () => {
    const token = await jwtSvid(CALLER_ID);
    cachedToken = token;
    for (let i = 0; i < 5; i++) expect((await get(jwt.port, token)).status).toBe(200);
    const scrape = await (await fetch(`http://127.0.0.1:${jwt.adminAddress().port}/metrics`)).text();
    expect(Number(/^spiffe_sidecar_jwt_cache_hits_total (\d+)$/m.exec(scrape)?.[1])).toBeGreaterThanOrEqual(4);
  });

  it('a new JWT bundle from the Workload API replaces the old one: the old key stops working', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    api.setJwtBundles({
      'spiffe://example.org': { keys: [{ ...(await exportJWK(publicKey)), kid: 'spire-2', use: 'jwt-svid' }] },
    });
    const fresh = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'spire-2', typ: 'JWT' })
      .setSubject(CALLER_ID)
      .setAudience('orders')
      .setExpirationTime('5m')
      .sign(privateKey);
    await expect.poll(async () => (await get(jwt.port, fresh)).status).toBe(200);
    // The token verified (and cached) with the old key: the cache must not outlive the key set.
    expect(cachedToken).not.toBe('');
    expect((await get(jwt.port, cachedToken)).status).toBe(401);
    expect((await get(jwt.port, await jwtSvid(CALLER_ID))).status).toBe(401);
  });
});
