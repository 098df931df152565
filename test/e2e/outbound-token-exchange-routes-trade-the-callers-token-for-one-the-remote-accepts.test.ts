// auth=token-exchange (RFC 8693), three sidecars' worth: a user calls A (JWT mode, --jwt-forward-token) with
// a token for A; app A calls its outbound route with that token; A exchanges it at the token endpoint for one
// meant for orders, and B (JWT mode, trusting the same issuer) admits the exchanged token: app B sees the
// user. One exchange per user token; a refused exchange is 403 and B sees nothing; no token, 401.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { issued, type OAuthTokenEndpoint, refused, startOAuthTokenEndpoint } from '../helpers/oauth-token-endpoint.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { tempDir } from '../helpers/pki.js';
import { type RelayingApp, startRelayingApp } from '../helpers/relaying-app.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const SECRET = 'te-secret-5a4b3c2d';

let dir: { path: string; remove: () => Promise<void> };
let issuer: OidcIssuer;
let endpoint: OAuthTokenEndpoint;
let appB: EchoApp;
let appA: RelayingApp;
let a: TestSidecar;
let b: TestSidecar;

/** The issuer's exchange: a token for the requested audience, for the subject token's user, acting as A. */
async function exchange(form: URLSearchParams) {
  if (form.get('grant_type') !== TOKEN_EXCHANGE) return refused('unsupported_grant_type');
  const subject = decodeJwt(form.get('subject_token') ?? '');
  const token = await issuer.sign(
    { sub: subject.sub, act: { sub: 'checkout' } },
    { audience: form.get('audience') ?? undefined },
  );
  return issued(token, { issued_token_type: ACCESS_TOKEN, expires_in: 300 });
}

beforeAll(async () => {
  dir = await tempDir();
  issuer = await startOidcIssuer();
  const caFile = join(dir.path, 'issuer-ca.pem');
  await writeFile(caFile, issuer.caPem);
  const secretFile = join(dir.path, 'client-secret');
  await writeFile(secretFile, SECRET);
  endpoint = await startOAuthTokenEndpoint();
  endpoint.answer = (r) => exchange(r.form);
  appB = await startEchoApp();
  const trustIssuer = { 'jwt-issuer': [`kc=${issuer.url}`], 'jwt-ca-file': caFile, 'allow-issuer': ['kc'] };
  b = await startTestSidecar({
    upstream: appB.url,
    'auth-mode': 'jwt',
    'jwt-audience': ['orders'],
    'jwt-forward-token': true,
    ...trustIssuer,
  });
  // App A: whatever it is asked, it asks orders through its outbound route, passing the caller's token on.
  appA = await startRelayingApp();
  a = await startTestSidecar({
    upstream: appA.url,
    'auth-mode': 'jwt',
    'jwt-audience': ['checkout'],
    'jwt-forward-token': true,
    ...trustIssuer,
    outbound: [
      `127.0.0.1:0=http://127.0.0.1:${b.port},auth=token-exchange,audience=orders,token-endpoint=${endpoint.url},` +
        `client-id=checkout,client-secret-file=${secretFile}`,
    ],
  });
  appA.outboundPort = a.outboundAddresses()[0].port;
});
afterAll(async () => {
  await a.close();
  await b.close();
  await appA.close();
  await appB.close();
  await endpoint.close();
  await issuer.close();
  await dir.remove();
});

async function asUser(token: string | undefined, path = '/orders/1') {
  const res = await fetch(`http://127.0.0.1:${a.port}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function direct(authorization: string | undefined) {
  const res = await fetch(`http://127.0.0.1:${a.outboundAddresses()[0].port}/orders/1`, {
    headers: authorization ? { authorization } : {},
  });
  return { status: res.status, challenge: res.headers.get('www-authenticate'), body: await res.json() };
}

describe('token-exchange routes trade the caller’s token for one the remote accepts', () => {
  it('app B sees the user, admitted by a token for orders that A got in exchange for the user’s', async () => {
    const alice = await issuer.sign({ sub: 'alice' }, { audience: 'checkout' });
    // The user's token is for A: B would not take it.
    const refusedByB = await fetch(`http://127.0.0.1:${b.port}/orders/1`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    expect(refusedByB.status).toBe(401);
    const before = endpoint.requests.length;
    const res = await asUser(alice);
    expect(res.status).toBe(200);
    const seen = res.body.headers as Record<string, string>;
    expect(seen['x-jwt-subject']).toBe('alice');
    expect(seen['x-jwt-issuer']).toBe('kc');
    const sent = seen.authorization.slice('Bearer '.length);
    expect(sent).not.toBe(alice);
    expect(decodeJwt(sent)).toMatchObject({ sub: 'alice', aud: 'orders', act: { sub: 'checkout' } });
    const request = endpoint.requests[before];
    expect(request.basic).toEqual({ clientId: 'checkout', secret: SECRET });
    expect(Object.fromEntries(request.form)).toEqual({
      grant_type: TOKEN_EXCHANGE,
      subject_token: alice,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: ACCESS_TOKEN,
      audience: 'orders',
    });
    for (const line of [...a.logs, ...b.logs]) expect(JSON.stringify(line)).not.toContain(SECRET);
  });

  it('one exchange per user token, shared by concurrent calls; another user gets an exchange of their own', async () => {
    const bob = await issuer.sign({ sub: 'bob' }, { audience: 'checkout' });
    const carol = await issuer.sign({ sub: 'carol' }, { audience: 'checkout' });
    const before = endpoint.requests.length;
    const results = await Promise.all([...Array(6).fill(bob), ...Array(3).fill(carol)].map((t) => asUser(t)));
    expect(results.map((r) => (r.body.headers as Record<string, string>)['x-jwt-subject'])).toEqual([
      ...Array(6).fill('bob'),
      ...Array(3).fill('carol'),
    ]);
    expect((await asUser(bob)).status).toBe(200);
    expect(endpoint.requests.length - before).toBe(2);
  });

  it('an exchange the endpoint refuses: 403 token_exchange_refused, and B sees nothing', async () => {
    const mallory = await issuer.sign({ sub: 'mallory' }, { audience: 'checkout' });
    const seenByB = appB.seen.length;
    endpoint.answer = () => refused('invalid_request');
    try {
      expect(await asUser(mallory)).toEqual({
        status: 403,
        body: { error: 'forbidden', reason: 'token_exchange_refused' },
      });
    } finally {
      endpoint.answer = (r) => exchange(r.form);
    }
    expect(appB.seen.length).toBe(seenByB);
    expect(a.logs.filter((l) => l.event === 'token_endpoint_failed').at(-1)).toMatchObject({
      level: 'warn',
      grant: 'token_exchange',
      status: 400,
      error: 'invalid_request',
      refused: true,
    });
    // The refusal is not remembered: the same token is exchanged again once the endpoint agrees.
    expect((await asUser(mallory)).status).toBe(200);
  });

  it('our client refused, or the endpoint down: 503 token_unavailable (not the caller’s fault)', async () => {
    const dave = await issuer.sign({ sub: 'dave' }, { audience: 'checkout' });
    const seenByB = appB.seen.length;
    for (const answer of [refused('invalid_client', 401), { status: 502, body: {} }]) {
      endpoint.answer = () => answer;
      expect(await asUser(dave)).toEqual({ status: 503, body: { error: 'unavailable', reason: 'token_unavailable' } });
    }
    endpoint.answer = (r) => exchange(r.form);
    expect(appB.seen.length).toBe(seenByB);
  });

  it('no caller token: 401 subject_token_missing; a malformed one: 401 subject_token_invalid; nothing asked', async () => {
    const before = endpoint.requests.length;
    const seenByB = appB.seen.length;
    expect(await direct(undefined)).toEqual({
      status: 401,
      challenge: 'Bearer',
      body: { error: 'unauthorized', reason: 'subject_token_missing' },
    });
    expect((await direct('Basic dXNlcjpwYXNz')).body.reason).toBe('subject_token_missing');
    expect((await direct('Bearer two tokens')).body.reason).toBe('subject_token_invalid');
    expect(endpoint.requests.length).toBe(before);
    expect(appB.seen.length).toBe(seenByB);
    expect(a.logs.filter((l) => l.event === 'outbound_rejected').map((l) => l.reason)).toEqual(
      expect.arrayContaining(['subject_token_missing', 'subject_token_invalid']),
    );
  });
});
