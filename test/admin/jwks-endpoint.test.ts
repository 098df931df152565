// The admin listener's /.well-known/jwks.json: served (GET and HEAD, cacheable for a minute) only when
// identity assertions are on, and an app that fetches it over HTTP verifies the sidecar's assertions.
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { assertedCaller, createIdentityAssertion } from '../../src/proxy/identity-assertion.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { useAdminServers } from '../helpers/admin-server.js';

const PATH = '/.well-known/jwks.json';

const admin = useAdminServers();

describe('GET /.well-known/jwks.json', () => {
  const assertion = createIdentityAssertion({ issuer: 'spiffe://example.org/app', audience: 'app', ttlSeconds: 60 });

  it('serves the JWKS as JSON, cacheable for a minute, and it verifies our assertions', async () => {
    const base = await admin({ assertionJwks: () => assertion.jwks() });
    const res = await fetch(`${base}${PATH}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('max-age=60');
    expect(await res.json()).toEqual(assertion.jwks());
    // As an app would: jose fetches the key set by URL.
    const jwt = assertion.token(
      assertedCaller({ method: 'mtls', id: parseSpiffeId('spiffe://example.org/caller'), leafSha256: '00' }),
    );
    const { payload } = await jwtVerify(jwt, createRemoteJWKSet(new URL(`${base}${PATH}`)), {
      issuer: 'spiffe://example.org/app',
      audience: 'app',
    });
    expect(payload.sub).toBe('spiffe://example.org/caller');
  });

  it('answers HEAD with the headers and no body; other methods get 405', async () => {
    const base = await admin({ assertionJwks: () => assertion.jwks() });
    const head = await fetch(`${base}${PATH}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('cache-control')).toBe('max-age=60');
    expect(await head.text()).toBe('');
    expect((await fetch(`${base}${PATH}`, { method: 'POST' })).status).toBe(405);
  });

  it('is 404 like any unknown path when assertions are off, and only then', async () => {
    const off = await admin();
    const res = await fetch(`${off}${PATH}`);
    expect(res.status).toBe(404);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({ error: 'not_found', endpoints: ['/healthz', '/readyz', '/metrics', '/certs'] });
    const on = await admin({ assertionJwks: () => assertion.jwks() });
    expect(((await (await fetch(`${on}/nowhere`)).json()) as { endpoints: string[] }).endpoints).toContain(PATH);
  });
});
