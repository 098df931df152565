// A token request to a real local endpoint, with each client authentication: client_secret_basic from a file
// read at each request, a JWT-SVID from a real Workload API as RFC 7523 assertion, our SVID as the RFC 8705
// client certificate. And every answer judged: only a live Bearer access token is ever a token.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevCa, issueCertificate } from '../../src/certs/dev-ca.js';
import { WorkloadApiClient } from '../../src/identity/workload-api-client.js';
import { parseWorkloadEndpoint } from '../../src/identity/workload-endpoint.js';
import {
  judgeTokenAnswer,
  requestToken,
  type TokenEndpoint,
  type TokenOutcome,
} from '../../src/outbound/token-endpoint.js';
import { issued, type OAuthTokenEndpoint, refused, startOAuthTokenEndpoint } from '../helpers/oauth-token-endpoint.js';
import { issueSvid, tempDir } from '../helpers/pki.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const A = 'spiffe://example.org/ns/shop/sa/a';
const NOW = 1_700_000_000_000;

let dir: { path: string; remove: () => Promise<void> };
let plain: OAuthTokenEndpoint;
let secretFile: string;

beforeAll(async () => {
  dir = await tempDir();
  plain = await startOAuthTokenEndpoint();
  secretFile = join(dir.path, 'secret');
  await writeFile(secretFile, 'p@ss:wörd &+\n');
});
afterAll(async () => {
  await plain.close();
  await dir.remove();
});

function secretEndpoint(url = plain.url, timeoutMs = 5000): TokenEndpoint {
  return { url: new URL(url), client: { method: 'secret', clientId: 'orders client', secretFile }, timeoutMs };
}

function failed(outcome: TokenOutcome) {
  if (outcome.ok) throw new Error(`expected a failure, got a token`);
  return outcome;
}

async function jwt(claims: Record<string, unknown>): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
}

describe('client_secret_basic', () => {
  it('sends the form and Basic credentials, each part form-encoded; the secret trimmed', async () => {
    plain.answer = (_r, n) => issued(`at-${n}`);
    const outcome = await requestToken(secretEndpoint(), {
      grant_type: 'client_credentials',
      scope: 'orders.read orders.write',
      audience: 'orders',
      resource: undefined,
    });
    expect(outcome).toMatchObject({ ok: true, accessToken: `at-${plain.requests.length}` });
    const seen = plain.requests.at(-1)!;
    expect(seen.method).toBe('POST');
    expect(seen.contentType).toBe('application/x-www-form-urlencoded');
    expect(seen.basic).toEqual({ clientId: 'orders client', secret: 'p@ss:wörd &+' });
    // RFC 6749 §2.3.1: the parts are form-encoded, then base64: a `:` in the secret cannot split it.
    expect(Buffer.from(seen.authorization!.slice(6), 'base64').toString()).toBe(
      'orders+client:p%40ss%3Aw%C3%B6rd+%26%2B',
    );
    expect(Object.fromEntries(seen.form)).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read orders.write',
      audience: 'orders',
    });
  });

  it('re-reads the secret file at each request', async () => {
    const file = join(dir.path, 'rotating');
    await writeFile(file, 'first');
    const endpoint: TokenEndpoint = {
      url: new URL(plain.url),
      client: { method: 'secret', clientId: 'c', secretFile: file },
      timeoutMs: 5000,
    };
    await requestToken(endpoint, { grant_type: 'client_credentials' });
    expect(plain.requests.at(-1)!.basic?.secret).toBe('first');
    await writeFile(file, 'second\n');
    await requestToken(endpoint, { grant_type: 'client_credentials' });
    expect(plain.requests.at(-1)!.basic?.secret).toBe('second');
  });

  it('an unreadable or empty secret file: no request, and the failure names the file, not a secret', async () => {
    const before = plain.requests.length;
    const endpoint = (f: string): TokenEndpoint => ({
      url: new URL(plain.url),
      client: { method: 'secret', clientId: 'c', secretFile: f },
      timeoutMs: 5000,
    });
    const missing = failed(await requestToken(endpoint(join(dir.path, 'nope')), { grant_type: 'client_credentials' }));
    expect(missing).toMatchObject({ error: 'client_secret_unreadable', refused: false });
    expect(missing.message).toContain('ENOENT');
    const emptyFile = join(dir.path, 'empty');
    await writeFile(emptyFile, ' \n');
    expect(failed(await requestToken(endpoint(emptyFile), { grant_type: 'client_credentials' })).error).toBe(
      'client_secret_unreadable',
    );
    expect(plain.requests.length).toBe(before);
  });
});

describe('private_key_jwt: a JWT-SVID from the Workload API (RFC 7523)', () => {
  it('asks for a JWT-SVID for the token endpoint URL and sends it as client_assertion, with client_id', async () => {
    const api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
    const client = new WorkloadApiClient(parseWorkloadEndpoint(api.address, 'test'));
    try {
      const svid = await jwt({ sub: A, aud: [plain.url], exp: Math.floor(Date.now() / 1000) + 300 });
      api.jwtSvids = (audience) => (audience.includes(plain.url) ? [{ spiffe_id: A, svid, hint: '' }] : []);
      const { fetchOwnJwtSvid } = await import('../../src/outbound/own-jwt-svid.js');
      const endpoint: TokenEndpoint = {
        url: new URL(plain.url),
        client: {
          method: 'private-key-jwt',
          clientId: A,
          assertion: async (audience) => (await fetchOwnJwtSvid(client, audience, undefined)).token,
        },
        timeoutMs: 5000,
      };
      expect((await requestToken(endpoint, { grant_type: 'client_credentials' })).ok).toBe(true);
      const seen = plain.requests.at(-1)!;
      expect(seen.authorization).toBeUndefined();
      expect(Object.fromEntries(seen.form)).toEqual({
        grant_type: 'client_credentials',
        client_id: A,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: svid,
      });
      expect(decodeJwt(seen.form.get('client_assertion')!).aud).toEqual([plain.url]);
      expect(api.calls.filter((c) => c.method === 'FetchJWTSVID')).toHaveLength(1);

      // No JWT-SVID for that audience: no request at all.
      api.jwtSvids = () => [];
      const before = plain.requests.length;
      const none = failed(await requestToken(endpoint, { grant_type: 'client_credentials' }));
      expect(none).toMatchObject({ error: 'no_client_assertion', refused: false });
      expect(plain.requests.length).toBe(before);
    } finally {
      client.close();
      await api.close();
    }
  });
});

describe('tls_client_auth: our SVID as the client certificate (RFC 8705 §2)', () => {
  let spiffeCa: Awaited<ReturnType<typeof createDevCa>>;
  let serverCa: Awaited<ReturnType<typeof createDevCa>>;
  let secure: OAuthTokenEndpoint;

  beforeAll(async () => {
    spiffeCa = await createDevCa({ trustDomain: 'example.org' });
    serverCa = await createDevCa({ trustDomain: 'idp.test' });
    const tls = await issueCertificate(serverCa, {
      dnsNames: ['localhost'],
      keyUsage: 1,
      extKeyUsage: ['1.3.6.1.5.5.7.3.1'],
    });
    secure = await startOAuthTokenEndpoint({
      tls: { cert: tls.chainPem, key: tls.keyPem, clientCa: spiffeCa.certPem },
    });
  });
  afterAll(() => secure.close());

  it('presents the SVID over TLS, sends client_id in the form, and checks the endpoint against the CA given', async () => {
    const svid = await issueSvid(spiffeCa, { id: A });
    const endpoint: TokenEndpoint = {
      url: new URL(secure.url),
      client: { method: 'mtls', clientId: 'a', certificate: () => ({ cert: svid.chainPem, key: svid.keyPem }) },
      ca: [serverCa.certPem],
      timeoutMs: 5000,
    };
    expect(await requestToken(endpoint, { grant_type: 'client_credentials' })).toMatchObject({ ok: true });
    const seen = secure.requests.at(-1)!;
    expect(seen.clientCertificateUri).toBe(A);
    expect(seen.authorization).toBeUndefined();
    expect(Object.fromEntries(seen.form)).toEqual({ grant_type: 'client_credentials', client_id: 'a' });
  });

  it('no SVID yet: no request; an endpoint the system roots and the CA given do not vouch for: a failure', async () => {
    const before = secure.requests.length;
    const none = failed(
      await requestToken(
        {
          url: new URL(secure.url),
          client: { method: 'mtls', clientId: 'a', certificate: () => undefined },
          timeoutMs: 5000,
        },
        { grant_type: 'client_credentials' },
      ),
    );
    expect(none.error).toBe('no_identity');
    const svid = await issueSvid(spiffeCa, { id: A });
    const untrusted = failed(
      await requestToken(
        {
          url: new URL(secure.url),
          client: { method: 'mtls', clientId: 'a', certificate: () => ({ cert: svid.chainPem, key: svid.keyPem }) },
          timeoutMs: 5000,
        },
        { grant_type: 'client_credentials' },
      ),
    );
    expect(untrusted).toMatchObject({ refused: false });
    expect(untrusted.error).toMatch(/CERT|SIGNATURE|ISSUER/);
    expect(secure.requests.length).toBe(before);
  });
});

describe('an endpoint that fails', () => {
  it('5xx, a refusal of the grant, and a refusal of our client are told apart', async () => {
    plain.answer = () => ({ status: 503, body: { error: 'temporarily_unavailable' } });
    expect(failed(await requestToken(secretEndpoint(), { grant_type: 'client_credentials' }))).toMatchObject({
      refused: false,
      status: 503,
      error: 'http_503',
    });
    plain.answer = () => refused('invalid_grant');
    expect(failed(await requestToken(secretEndpoint(), { grant_type: 'client_credentials' }))).toMatchObject({
      refused: true,
      status: 400,
      error: 'invalid_grant',
    });
    plain.answer = () => refused('invalid_client', 401);
    expect(failed(await requestToken(secretEndpoint(), { grant_type: 'client_credentials' }))).toMatchObject({
      refused: false,
      error: 'invalid_client',
    });
    plain.answer = () => refused('unauthorized_client');
    expect(failed(await requestToken(secretEndpoint(), { grant_type: 'client_credentials' })).refused).toBe(false);
  });

  it('no complete answer by the deadline: timeout', async () => {
    plain.answer = () => 'hang';
    const seen = plain.nextRequest();
    const started = performance.now();
    const outcome = failed(await requestToken(secretEndpoint(plain.url, 300), { grant_type: 'client_credentials' }));
    await seen;
    expect(outcome).toMatchObject({ error: 'timeout', refused: false });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('nobody listening: the socket error code', async () => {
    const gone = await startOAuthTokenEndpoint();
    await gone.close();
    expect(failed(await requestToken(secretEndpoint(gone.url), { grant_type: 'client_credentials' })).error).toBe(
      'ECONNREFUSED',
    );
  });
});

describe('the answer judged (RFC 6749 §5.1, RFC 8693 §2.2)', () => {
  const judge = (body: unknown, status = 200) =>
    judgeTokenAnswer(status, typeof body === 'string' ? body : JSON.stringify(body), NOW);
  const errorOf = (body: unknown, status = 200) => {
    const outcome = judge(body, status);
    return outcome.ok ? 'ok' : outcome.error;
  };

  it('an absurd expires_in is held to a day: a token revoked since is not kept for the life of the process', () => {
    expect(judge({ access_token: 'at', token_type: 'Bearer', expires_in: 1e300 })).toMatchObject({
      ok: true,
      expiresAt: NOW + 24 * 3_600_000,
    });
  });

  it('a Bearer token (the type compared case-insensitively) lives expires_in seconds', () => {
    expect(judge({ access_token: 'at', token_type: 'bearer', expires_in: 300 })).toEqual({
      ok: true,
      accessToken: 'at',
      issuedAt: NOW,
      expiresAt: NOW + 300_000,
    });
    expect(judge({ access_token: 'at', token_type: 'BEARER', expires_in: '300' })).toMatchObject({ ok: true });
  });

  it('a JWT without expires_in lives until its exp; with both, until the sooner', async () => {
    const exp = Math.floor(NOW / 1000) + 120;
    const token = await jwt({ exp });
    expect(judge({ access_token: token, token_type: 'Bearer' })).toMatchObject({ expiresAt: exp * 1000 });
    expect(judge({ access_token: token, token_type: 'Bearer', expires_in: 3600 })).toMatchObject({
      expiresAt: exp * 1000,
    });
  });

  it('an opaque token with no lifetime at all is kept for a minute', () => {
    expect(judge({ access_token: 'at', token_type: 'Bearer' })).toMatchObject({ expiresAt: NOW + 60_000 });
  });

  it('refuses what must not be sent as a bearer token', async () => {
    expect(errorOf({ token_type: 'Bearer' })).toBe('no_access_token');
    expect(errorOf({ access_token: '', token_type: 'Bearer' })).toBe('no_access_token');
    expect(errorOf({ access_token: 'a b\r\nx-injected: 1', token_type: 'Bearer' })).toBe('bad_access_token');
    expect(errorOf({ access_token: 'at', token_type: 'mac' })).toBe('not_bearer');
    expect(errorOf({ access_token: 'at', token_type: 'DPoP' })).toBe('not_bearer');
    expect(errorOf({ access_token: 'at' })).toBe('not_bearer');
    expect(
      errorOf({
        access_token: 'at',
        token_type: 'Bearer',
        issued_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      }),
    ).toBe('not_an_access_token');
    expect(errorOf({ access_token: 'at', token_type: 'Bearer', expires_in: 0 })).toBe('token_expired');
    expect(errorOf({ access_token: 'at', token_type: 'Bearer', expires_in: -5 })).toBe('token_expired');
    expect(errorOf({ access_token: 'at', token_type: 'Bearer', expires_in: 'soon' })).toBe('bad_response');
    const stale = await jwt({ exp: Math.floor(NOW / 1000) - 1 });
    expect(errorOf({ access_token: stale, token_type: 'Bearer', expires_in: 3600 })).toBe('token_expired');
    expect(errorOf('<html>')).toBe('bad_response');
    expect(errorOf([1])).toBe('bad_response');
    expect(errorOf({ access_token: 'at', token_type: 'Bearer' }, 302)).toBe('http_302');
  });

  it('an error code is kept only when it is one (RFC 6749 §5.2 charset, bounded)', () => {
    expect(errorOf({ error: 'invalid_target' }, 400)).toBe('invalid_target');
    expect(errorOf({ error: 'x"y' }, 400)).toBe('http_400');
    expect(errorOf({ error: 'e'.repeat(65) }, 400)).toBe('http_400');
    expect(errorOf('not json', 400)).toBe('http_400');
  });
});
