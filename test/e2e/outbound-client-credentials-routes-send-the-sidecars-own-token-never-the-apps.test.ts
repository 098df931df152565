// auth=client-credentials (RFC 6749 §4.4): the sidecar gets its own access token from the token endpoint and
// sends it as the bearer token; the app's own Authorization never goes on. One token serves many requests
// and is refreshed before it expires; when there is no usable token (endpoint down, slow, refusing, or
// answering an expired token) the app gets 503 token_unavailable and the remote sees nothing. HTTP/1.1 and
// HTTP/2 routes alike, and over mTLS to a remote sidecar that verifies who we are.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { h2cJson } from '../helpers/http2-fixture.js';
import { issued, type OAuthTokenEndpoint, refused, startOAuthTokenEndpoint } from '../helpers/oauth-token-endpoint.js';
import { createDevCa, servingOptions, tempDir } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/ns/shop/sa/checkout';
const B = 'spiffe://example.org/ns/shop/sa/orders';
const SECRET = 'cc-secret-0f9e8d7c';

let dir: { path: string; remove: () => Promise<void> };
let secretFile: string;
let app: EchoApp;
let endpoint: OAuthTokenEndpoint;
const endpoints: OAuthTokenEndpoint[] = [];
const sidecars: TestSidecar[] = [];

/** A fresh token endpoint, the one `route()` names from now on. */
async function newEndpoint(): Promise<OAuthTokenEndpoint> {
  endpoint = await startOAuthTokenEndpoint();
  endpoints.push(endpoint);
  return endpoint;
}

beforeAll(async () => {
  dir = await tempDir();
  secretFile = join(dir.path, 'client-secret');
  await writeFile(secretFile, `${SECRET}\n`);
  app = await startEchoApp();
});
afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.close();
  for (const e of endpoints.splice(0)) await e.close();
});
afterAll(async () => {
  await app.close();
  await dir.remove();
});

function route(remote: string, extra = ''): string {
  return (
    `127.0.0.1:0=${remote},auth=client-credentials,token-endpoint=${endpoint.url},client-id=checkout,` +
    `client-secret-file=${secretFile},scope=orders.read+orders.write,audience=orders,resource=https://orders.example/${extra}`
  );
}

/** An outbound-only sidecar in front of the echo app (a loopback http remote: no identity needed). */
async function sidecar(options: Record<string, unknown> = {}): Promise<TestSidecar> {
  const s = await startTestSidecar({ outbound: [route(app.url)], ...options });
  sidecars.push(s);
  return s;
}

async function call(s: TestSidecar, authorization = 'Bearer the-apps-own-token') {
  const res = await fetch(`http://127.0.0.1:${s.outboundAddresses()[0].port}/orders/7`, {
    headers: { authorization },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function seenAuthorizations(from: number): string[] {
  return app.seen
    .slice(from)
    .map((r) => r.rawHeaders.filter((_, i, raw) => i % 2 === 1 && /^authorization$/i.test(raw[i - 1])).join('|'));
}

describe('client-credentials routes send the sidecar’s own token, never the app’s', () => {
  it('the remote gets the endpoint’s token in place of the app’s; one token fetch for many requests', async () => {
    await newEndpoint();
    const s = await sidecar();
    const from = app.seen.length;
    const results = await Promise.all(Array.from({ length: 12 }, () => call(s)));
    for (let i = 0; i < 5; i++) results.push(await call(s, 'Basic YXBwOnNlY3JldA=='));
    expect(results.map((r) => r.status)).toEqual(Array(17).fill(200));
    expect(seenAuthorizations(from)).toEqual(Array(17).fill('Bearer at-1'));
    expect(endpoint.requests).toHaveLength(1);
    const [request] = endpoint.requests;
    expect(request.basic).toEqual({ clientId: 'checkout', secret: SECRET });
    expect(Object.fromEntries(request.form)).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read orders.write',
      audience: 'orders',
      resource: 'https://orders.example/',
    });
    // Not a line says the secret or the token.
    expect(JSON.stringify(s.logs)).not.toContain(SECRET);
    expect(JSON.stringify(s.logs)).not.toContain('at-1');
  });

  it('a token is refreshed before it expires, without a failed request', async () => {
    await newEndpoint();
    endpoint.answer = (_r, n) => issued(`at-${n}`, { expires_in: 1 });
    const s = await sidecar();
    const from = app.seen.length;
    const statuses: number[] = [];
    // Calls go on until the refreshed token reaches the remote: none of them may fail meanwhile.
    await expect
      .poll(
        async () => {
          const res = await call(s);
          statuses.push(res.status);
          return res.status === 200 ? (res.body.headers as Record<string, string>).authorization : res.status;
        },
        { timeout: 5000, interval: 50 },
      )
      .toBe('Bearer at-2');
    expect(new Set(statuses)).toEqual(new Set([200]));
    expect(seenAuthorizations(from)[0]).toBe('Bearer at-1');
    expect(endpoint.requests.length).toBeGreaterThanOrEqual(2);
  });

  it('an endpoint answering 5xx, or gone: 503 token_unavailable, a warning, and the remote sees nothing', async () => {
    await newEndpoint();
    endpoint.answer = () => ({ status: 503, body: { error: 'temporarily_unavailable' } });
    const s = await sidecar();
    const from = app.seen.length;
    expect(await call(s)).toEqual({ status: 503, body: { error: 'unavailable', reason: 'token_unavailable' } });
    expect(s.logs.find((l) => l.event === 'token_endpoint_failed')).toMatchObject({
      level: 'warn',
      remote: app.url,
      token_endpoint: endpoint.url,
      grant: 'client_credentials',
      status: 503,
      error: 'http_503',
      refused: false,
    });
    expect(s.logs.find((l) => l.event === 'outbound_rejected')).toMatchObject({
      reason: 'token_unavailable',
      path: '/orders/7',
    });
    await endpoint.close();
    expect((await call(s)).body.reason).toBe('token_unavailable');
    expect(s.logs.filter((l) => l.event === 'token_endpoint_failed').at(-1)).toMatchObject({ error: 'ECONNREFUSED' });
    expect(app.seen.length).toBe(from);
    expect(JSON.stringify(s.logs)).not.toContain(SECRET);
  });

  it('a refusal of our client, an answer without a Bearer token, or an expired one: 503, nothing sent', async () => {
    await newEndpoint();
    const s = await sidecar();
    const from = app.seen.length;
    const { privateKey } = await generateKeyPair('ES256');
    const stale = await new SignJWT({ sub: 'checkout' })
      .setProtectedHeader({ alg: 'ES256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(privateKey);
    const answers = [
      [refused('invalid_client', 401), 'invalid_client'],
      [refused('invalid_scope'), 'invalid_scope'],
      [{ status: 200, body: { token_type: 'Bearer', expires_in: 60 } }, 'no_access_token'],
      [issued('at-mac', { token_type: 'mac' }), 'not_bearer'],
      [issued('at-0', { expires_in: 0 }), 'token_expired'],
      [issued(stale, { expires_in: 3600 }), 'token_expired'],
    ] as const;
    for (const [answer, error] of answers) {
      endpoint.answer = () => answer;
      expect(await call(s), error).toEqual({
        status: 503,
        body: { error: 'unavailable', reason: 'token_unavailable' },
      });
      expect(s.logs.filter((l) => l.event === 'token_endpoint_failed').at(-1)?.error).toBe(error);
    }
    expect(app.seen.length).toBe(from);
    // Once the endpoint issues a token again, requests go.
    endpoint.answer = () => issued('at-good');
    expect((await call(s)).status).toBe(200);
    expect(seenAuthorizations(from)).toEqual(['Bearer at-good']);
  });

  it('a slow endpoint: 503 at the deadline (--upstream-timeout, at most 5 s), the remote sees nothing', async () => {
    await newEndpoint();
    endpoint.answer = () => 'hang';
    const s = await sidecar({ 'upstream-timeout': '1s' });
    const from = app.seen.length;
    const started = performance.now();
    expect((await call(s)).body.reason).toBe('token_unavailable');
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(s.logs.find((l) => l.event === 'token_endpoint_failed')).toMatchObject({ error: 'timeout' });
    expect(app.seen.length).toBe(from);
  });
});

describe('over mTLS to a remote sidecar, HTTP/1.1 and HTTP/2', () => {
  let ca: CertificateAuthority;
  let b: TestSidecar;
  let appB: EchoApp;

  beforeAll(async () => {
    ca = await createDevCa({ trustDomain: 'example.org' });
    appB = await startEchoApp();
    b = await startTestSidecar({
      upstream: appB.url,
      allow: [A],
      ...(await servingOptions(join(dir.path, 'b'), ca, B)),
    });
  });
  afterAll(async () => {
    await b.close();
    await appB.close();
  });

  async function sidecarA(protocol: 'h1' | 'h2'): Promise<TestSidecar> {
    await newEndpoint();
    const s = await startTestSidecar({
      outbound: [route(`https://127.0.0.1:${b.port}`, `,id=${B},protocol=${protocol}`)],
      ...(await servingOptions(join(dir.path, `a-${protocol}`), ca, A)),
    });
    sidecars.push(s);
    return s;
  }

  const h2Get = (port: number) => h2cJson(port, { ':path': '/stock/3', authorization: 'Bearer the-apps-own-token' });

  it('HTTP/1.1: B verifies our SVID and its app gets the endpoint’s token, not the app’s', async () => {
    const a = await sidecarA('h1');
    const res = await call(a);
    expect(res.status).toBe(200);
    const seen = res.body.headers as Record<string, string>;
    expect(seen['x-spiffe-id']).toBe(A);
    expect(seen.authorization).toBe('Bearer at-1');
  });

  it('HTTP/2: the same, per stream; a failing endpoint answers the stream 503 and B sees nothing', async () => {
    const a = await sidecarA('h2');
    const port = a.outboundAddresses()[0].port;
    const ok = await h2Get(port);
    expect(ok.status).toBe(200);
    expect((ok.body.headers as Record<string, string>).authorization).toBe('Bearer at-1');
    expect((ok.body.headers as Record<string, string>)['x-spiffe-id']).toBe(A);
    expect((await h2Get(port)).status).toBe(200);
    expect(endpoint.requests).toHaveLength(1);

    const a2 = await sidecarA('h2');
    endpoint.answer = () => ({ status: 500, body: {} });
    const before = appB.seen.length;
    expect(await h2Get(a2.outboundAddresses()[0].port)).toEqual({
      status: 503,
      body: { error: 'unavailable', reason: 'token_unavailable' },
    });
    expect(appB.seen.length).toBe(before);
    expect(a2.logs.find((l) => l.event === 'outbound_rejected')).toMatchObject({
      reason: 'token_unavailable',
      path: '/stock/3',
    });
  });
});
