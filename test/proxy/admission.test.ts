// RequestAdmission, driven directly: the head checks, JWT and API-key authentication (401/503 and their
// challenges), mTLS peers over a real TLS connection, decisions (deny, dry-run, rate limit), the owned names.
// Admission logs rejections; the decision it returns is the access line's (test/proxy/access-log.test.ts).
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyFormat, type ApiKeySet, newApiKey, parseApiKeys } from '../../src/authn/api-keys.js';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { JwtAuthenticator, type OidcIssuer } from '../../src/authn/jwt.js';
import { type Authorizer, createFileAuthorizer, createFlagAuthorizer } from '../../src/authz/policy.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import type { IdentitySource, IdentityStatus } from '../../src/identity/source.js';
import {
  type Admission,
  type AdmissionOptions,
  type RequestHead,
  RequestAdmission,
} from '../../src/proxy/admission.js';
import { type HeaderPolicy, protectedNames } from '../../src/proxy/headers.js';
import { x509BundleSetFromPem } from '../../src/spiffe/bundle.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import type { JWKS } from '../../src/spiffe/jwtsvid.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { closeServer, countingMetrics, listenOn } from '../helpers/proxy-unit.js';
import { capturingLogger } from '../helpers/sidecar.js';

const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';
const STRANGER_ID = 'spiffe://example.org/ns/prod/sa/stranger';
const K8S_ISS = 'https://kubernetes.default.svc';
const KEYCLOAK_ISS = 'https://keycloak.test/realms/shop';
const DOWN_ISS = 'https://down.test';
const WEB_ID = 'spiffe://cluster.local/ns/shop/sa/web';

const POLICY = `
version: 1
rules:
  - name: no-admin
    effect: deny
    path: { prefix: /admin }
  - name: one-a-minute
    effect: allow
    path: { exact: /limited }
    rate_limit: { requests: 1, per: 1m }
  - name: partner-reads
    effect: allow
    methods: [GET]
    path: { prefix: /v1 }
    callers: { api_keys: [partner, limited] }
  - name: web-calls
    effect: allow
    path: { prefix: /v1 }
    callers: { ids: [${WEB_ID}] }
`;

let keys: { partner: string; limited: string; expired: string };
let apiKeys: ApiKeySet;
let signingKey: CryptoKey;
let jwks: JWKS;

beforeAll(async () => {
  const partner = newApiKey();
  const limited = newApiKey();
  const expired = newApiKey();
  keys = { partner: partner.key, limited: limited.key, expired: expired.key };
  apiKeys = parseApiKeys(
    [
      `sha256:${partner.sha256} partner`,
      `sha256:${limited.sha256} limited route=GET:/status/**`,
      `sha256:${expired.sha256} old expires=2020-01-01`,
    ].join('\n'),
    'test keys',
  );
  const pair = await generateKeyPair('ES256', { extractable: true });
  signingKey = pair.privateKey;
  jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] } as JWKS;
});

function sign(claims: JWTPayload, issuer: string, options: { audience?: string; expires?: string | number } = {}) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(options.audience ?? 'orders')
    .setIssuedAt()
    .setExpirationTime(options.expires ?? '10m')
    .sign(signingKey);
}

function authenticator(): JwtAuthenticator {
  const provider = (k: JWKS | undefined) => ({ current: () => k, version: 1, keyMissed: async () => {} });
  const issuers: OidcIssuer[] = [
    { name: 'k8s', issuer: K8S_ISS, kind: 'k8s', k8sTrustDomain: 'cluster.local', keys: provider(jwks) },
    { name: 'keycloak', issuer: KEYCLOAK_ISS, kind: 'oidc', keys: provider(jwks) },
    { name: 'down', issuer: DOWN_ISS, kind: 'oidc', keys: provider(undefined) },
  ];
  return new JwtAuthenticator({ audience: ['orders'], svidBundles: () => undefined, issuers });
}

function headerPolicy(extra: Partial<HeaderPolicy> = {}): HeaderPolicy {
  return {
    identityHeaders: ['x-spiffe-id'],
    xfcc: true,
    issuerHeader: 'x-jwt-issuer',
    subjectHeader: 'x-jwt-subject',
    apiKeys: true,
    self: () => parseSpiffeId('spiffe://example.org/ns/prod/sa/server'),
    ...extra,
  };
}

function build(options: Partial<AdmissionOptions> = {}) {
  const { log, logs } = capturingLogger();
  const metrics = countingMetrics();
  const admission = new RequestAdmission({
    auth: { certificates: 'off', authenticator: authenticator() },
    authorizer: createFlagAuthorizer({ allow: [CLIENT_ID, WEB_ID], allowAny: false, allowIssuers: ['keycloak'] }),
    apiKeys: () => apiKeys,
    headers: headerPolicy(),
    maxHeaderCount: 100,
    log,
    metrics,
    ...options,
  });
  return { admission, logs, metrics };
}

/** A request head as Node gives it (first field of a name wins in `headers`), on `socket`. */
function head(socket: net.Socket, method: string, url: string, raw: string[] = []): RequestHead {
  const headers: http.IncomingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) headers[raw[i].toLowerCase()] ??= raw[i + 1];
  return { socket, method, url, headers, rawHeaders: raw };
}

/** Logger lines are written asynchronously: waits (bounded) for one more line. */
async function settleLogs(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

type Refused = Admission & { admitted: false };
type Admitted = Admission & { admitted: true };

function refused(a: Admission): Refused {
  expect(a.admitted).toBe(false);
  return a as Refused;
}
function admitted(a: Admission): Admitted {
  if (!a.admitted) throw new Error(`refused: ${JSON.stringify(a)}`);
  return a;
}

/** A real loopback connection: the server side is the caller's socket as admission sees it. */
let plainServer: net.Server;
let plainPort: number;
const openSockets: net.Socket[] = [];
beforeAll(async () => {
  plainServer = net.createServer((s) => openSockets.push(s));
  plainPort = await listenOn(plainServer);
});
afterAll(async () => {
  for (const s of openSockets) s.destroy();
  await closeServer(plainServer);
});
async function callerSocket(): Promise<net.Socket> {
  const accepted = once(plainServer, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(plainPort, '127.0.0.1');
  openSockets.push(client);
  const [socket] = await accepted;
  return socket;
}

describe('the head is checked before anyone is asked', () => {
  const many = Array.from({ length: 101 }, (_, i) => [`x-f${i}`, 'v']).flat();
  const cases: [what: string, raw: string[], status: number, reason: string][] = [
    ['101 fields', many, 431, 'too_many_headers'],
    ['two Host fields', ['Host', 'a', 'Host', 'b'], 400, 'duplicate_host'],
    [
      'two Authorization fields',
      ['Authorization', 'Bearer a', 'authorization', 'Bearer b'],
      400,
      'duplicate_authorization',
    ],
    ['chunked twice', ['Transfer-Encoding', 'chunked, chunked'], 400, 'bad_transfer_encoding'],
    ['gzip, chunked', ['Transfer-Encoding', 'gzip, chunked'], 501, 'unsupported_transfer_coding'],
  ];
  it.each(cases)('%s: %i %s, logged, nothing authenticated or decided', async (_what, raw, status, reason) => {
    const { admission, logs, metrics } = build();
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/v1/x', raw)));
    expect(a.answer).toEqual({ status, reason });
    expect(a.keepAlive).toBeUndefined();
    expect(metrics.calls).toEqual([]);
    await settleLogs();
    expect(logs).toEqual([expect.objectContaining({ event: 'request_refused', reason, status, remote: '127.0.0.1' })]);
  });

  it('the same head with one field fewer is let through to authentication', async () => {
    const { admission } = build();
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/v1/x', many.slice(2))));
    expect(a.answer?.reason).toBe('ERR_JWT_MISSING');
  });

  it('a lower --max-header-count is the one applied', async () => {
    const { admission } = build({ maxHeaderCount: 2 });
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/', ['a', '1', 'b', '2', 'c', '3'])));
    expect(a.answer).toEqual({ status: 431, reason: 'too_many_headers' });
  });
});

describe('JWT mode', () => {
  it.each<[what: string, authorization: () => Promise<string | undefined>, reason: string, challenge: string]>([
    ['no token', async () => undefined, 'ERR_JWT_MISSING', 'Bearer'],
    ['not Bearer', async () => 'Basic dXNlcjpwYXNz', 'ERR_JWT_MALFORMED', 'Bearer error="invalid_token"'],
    ['not a JWT', async () => 'Bearer abc.def', 'ERR_JWT_MALFORMED', 'Bearer error="invalid_token"'],
    [
      'another audience',
      async () => `Bearer ${await sign({ sub: 'alice' }, KEYCLOAK_ISS, { audience: 'billing' })}`,
      'ERR_JWT_AUDIENCE',
      'Bearer error="invalid_token"',
    ],
    [
      'expired',
      async () =>
        `Bearer ${await sign({ sub: 'alice' }, KEYCLOAK_ISS, { expires: Math.floor(Date.now() / 1000) - 3600 })}`,
      'ERR_JWT_EXPIRED',
      'Bearer error="invalid_token"',
    ],
    [
      'an issuer we do not know',
      async () => `Bearer ${await sign({ sub: 'alice' }, 'https://elsewhere.test')}`,
      'ERR_JWT_ISSUER_UNKNOWN',
      'Bearer error="invalid_token"',
    ],
  ])(
    '%s: 401 with its reason and challenge, logged as a jwt rejection',
    async (_what, authorization, reason, challenge) => {
      const { admission, logs, metrics } = build();
      const socket = await callerSocket();
      const value = await authorization();
      const a = refused(await admission.admit(head(socket, 'GET', '/v1/x', value ? ['Authorization', value] : [])));
      expect(a.answer).toEqual({ status: 401, reason, headers: { 'www-authenticate': challenge } });
      expect(metrics.calls).toEqual([]);
      await settleLogs();
      expect(logs).toEqual([
        expect.objectContaining({ event: 'peer_rejected', auth: 'jwt', reason, remote: '127.0.0.1' }),
      ]);
    },
  );

  it('an issuer whose keys are not loaded yet: 503 no_keys, no challenge', async () => {
    const { admission, logs } = build();
    const socket = await callerSocket();
    const token = await sign({ sub: 'alice' }, DOWN_ISS);
    const a = refused(await admission.admit(head(socket, 'GET', '/v1/x', ['Authorization', `Bearer ${token}`])));
    expect(a.answer).toEqual({ status: 503, reason: 'no_keys' });
    await settleLogs();
    expect(logs).toEqual([expect.objectContaining({ event: 'peer_rejected', auth: 'jwt', reason: 'ERR_JWT_NO_KEYS' })]);
  });

  it("a valid token: admitted, counted, the decision returned; its Authorization is the app's unless stripped", async () => {
    const { admission, logs, metrics } = build();
    const socket = await callerSocket();
    const token = await sign({ sub: 'system:serviceaccount:shop:web' }, K8S_ISS);
    const a = admitted(
      await admission.admit(head(socket, 'POST', '/v1/orders?secret=1', ['Authorization', `Bearer ${token}`])),
    );
    expect(a.identity).toMatchObject({ method: 'k8s-sa', issuer: 'k8s', subject: 'system:serviceaccount:shop:web' });
    expect(a.identity.id?.toString()).toBe(WEB_ID);
    expect(a.decision).toEqual({ allow: true, rule: WEB_ID });
    expect(a.judged).toEqual({ allow: true, rule: WEB_ID });
    expect(a.owned.has('authorization')).toBe(false);
    expect([...a.owned].sort()).toEqual([...protectedNames(headerPolicy())].sort());
    expect(a.owned.has('x-request-id')).toBe(true);
    expect(metrics.calls).toEqual([['decision', 'allow', 'rule_matched', 'k8s-sa']]);
    // The access line is written when the exchange is over, by the proxy: nothing here.
    await settleLogs();
    expect(logs).toEqual([]);
  });

  it('with --jwt-forward-token off, Authorization is owned for every caller', async () => {
    const { admission } = build({ headers: headerPolicy({ stripAuthorization: true }) });
    const socket = await callerSocket();
    const token = await sign({ sub: 'alice' }, KEYCLOAK_ISS);
    const a = admitted(await admission.admit(head(socket, 'GET', '/', ['Authorization', `Bearer ${token}`])));
    expect(a.identity).toMatchObject({ method: 'oidc', issuer: 'keycloak', subject: 'alice' });
    expect(a.decision.rule).toBe('--allow-issuer keycloak');
    expect(a.owned.has('authorization')).toBe(true);
  });

  it('a valid token the rules refuse: 403, the connection kept, the denial counted and logged', async () => {
    const { admission, logs, metrics } = build({
      authorizer: createFlagAuthorizer({ allow: [CLIENT_ID], allowAny: false }),
    });
    const socket = await callerSocket();
    const token = await sign({ sub: 'alice' }, KEYCLOAK_ISS);
    const a = refused(await admission.admit(head(socket, 'GET', '/x', ['Authorization', `Bearer ${token}`])));
    expect(a).toMatchObject({ admitted: false, answer: { status: 403, reason: 'no_matching_rule' }, keepAlive: true });
    expect(a.identity).toMatchObject({ method: 'oidc', issuer: 'keycloak', subject: 'alice' });
    expect(a.judged).toEqual({ allow: false, reason: 'no_matching_rule' });
    expect(metrics.calls).toEqual([['decision', 'deny', 'no_matching_rule', 'oidc']]);
    await settleLogs();
    expect(logs).toEqual([]);
  });

  it('a rejected token: what it claimed (iss, sub) in the log line, never the token', async () => {
    const { admission, logs } = build();
    const socket = await callerSocket();
    const token = await sign({ sub: 'mallory' }, 'https://unknown.test');
    refused(await admission.admit(head(socket, 'GET', '/x', ['Authorization', `Bearer ${token}`])));
    refused(await admission.admit(head(socket, 'GET', '/y', ['Authorization', 'Bearer not-a-jws'])));
    await settleLogs();
    expect(logs).toEqual([
      expect.objectContaining({
        event: 'peer_rejected',
        auth: 'jwt',
        presented_iss: 'https://unknown.test',
        presented_sub: 'mallory',
      }),
      expect.objectContaining({ event: 'peer_rejected', auth: 'jwt' }),
    ]);
    expect(logs[1]).not.toHaveProperty('presented_iss');
    expect(JSON.stringify(logs)).not.toContain(token.split('.')[1]);
    expect(JSON.stringify(logs)).not.toContain(token.split('.')[2]);
  });
});

describe('API keys', () => {
  const fileAuthorizer = () => createFileAuthorizer(() => parsePolicy(POLICY, 'test policy'));

  it.each<
    [what: string, raw: () => string[], headers: (() => Partial<http.IncomingHttpHeaders>) | undefined, reason: string]
  >([
    ['an unknown key', () => ['x-api-key', `sk_${'A'.repeat(43)}`], undefined, 'ERR_API_KEY_UNKNOWN'],
    ['a key not in the sk_ format', () => ['x-api-key', 'sk_short'], undefined, 'ERR_API_KEY_UNKNOWN'],
    ['an expired key', () => ['x-api-key', keys.expired], undefined, 'ERR_API_KEY_EXPIRED'],
    [
      'two keys, one in each place',
      () => ['x-api-key', keys.partner, 'Authorization', `Bearer ${keys.partner}`],
      undefined,
      'ERR_API_KEY_UNKNOWN',
    ],
    [
      'two x-api-key fields (HTTP/2: a list)',
      () => ['x-api-key', keys.partner, 'x-api-key', keys.partner],
      () => ({ 'x-api-key': [keys.partner, keys.partner] }) as never,
      'ERR_API_KEY_UNKNOWN',
    ],
  ])(
    'JWT mode, %s: 401 with a Bearer challenge, logged as an api_key rejection',
    async (_what, raw, headers, reason) => {
      const { admission, logs, metrics } = build({ authorizer: fileAuthorizer() });
      const socket = await callerSocket();
      const h = head(socket, 'GET', '/v1/x', raw());
      const a = refused(await admission.admit(headers ? { ...h, headers: { ...h.headers, ...headers() } } : h));
      expect(a.answer).toEqual({ status: 401, reason, headers: { 'www-authenticate': 'Bearer' } });
      expect(metrics.calls).toEqual([]);
      await settleLogs();
      expect(logs).toEqual([expect.objectContaining({ event: 'peer_rejected', auth: 'api-key', reason })]);
    },
  );

  it.each<[what: string, raw: () => string[], authorizationOwned: boolean]>([
    ['in x-api-key', () => ['x-api-key', keys.partner], true],
    ['in Authorization', () => ['Authorization', `Bearer ${keys.partner}`], true],
    ['in Authorization, lower-case scheme', () => ['authorization', `bearer ${keys.partner}`], true],
  ])('JWT mode, a known key %s: admitted by the policy, Authorization owned', async (_what, raw, owned) => {
    const { admission, logs } = build({ authorizer: fileAuthorizer() });
    const socket = await callerSocket();
    const a = admitted(await admission.admit(head(socket, 'GET', '/v1/items', raw())));
    expect(a.identity).toEqual({ method: 'api-key', name: 'partner' });
    expect(a.decision).toEqual({ allow: true, rule: 'partner-reads' });
    expect(a.owned.has('authorization')).toBe(owned);
    expect(a.owned.has('x-api-key')).toBe(true);
    expect(a.judged).toEqual({ allow: true, rule: 'partner-reads' });
    await settleLogs();
    expect(logs).toEqual([]);
  });

  it('without --api-keys-file, an sk_ bearer is just a malformed token', async () => {
    const { admission } = build({ apiKeys: undefined });
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/', ['Authorization', `Bearer ${keys.partner}`])));
    expect(a.answer?.reason).toBe('ERR_JWT_MALFORMED');
  });

  it("a key's own routes hold whatever the rules say, even in dry-run", async () => {
    const { admission, metrics } = build({ authorizer: fileAuthorizer(), dryRun: true });
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/v1/items', ['x-api-key', keys.limited])));
    expect(a).toMatchObject({ admitted: false, answer: { status: 403, reason: 'key_route_denied' }, keepAlive: true });
    expect(a.judged).toEqual({ allow: false, reason: 'key_route_denied' });
    expect(metrics.calls).toEqual([['decision', 'deny', 'key_route_denied', 'api-key']]);
  });
});

describe('API keys under --api-key-header x-gofannon-key --api-key-prefix gak_', () => {
  const gak = newApiKey('gak_');
  const gakKeys = parseApiKeys(`sha256:${gak.sha256} partner`, 'gak keys', { prefix: 'gak_' });
  const configured = (options: Partial<AdmissionOptions> = {}) =>
    build({
      authorizer: createFileAuthorizer(() => parsePolicy(POLICY, 'test policy')),
      apiKeys: () => gakKeys,
      headers: headerPolicy({ apiKeyFormat: apiKeyFormat('x-gofannon-key', 'gak_') }),
      ...options,
    });

  it.each<[what: string, raw: () => string[], authorizationOwned: boolean]>([
    ['in X-Gofannon-Key', () => ['X-Gofannon-Key', gak.key], false],
    ['in Authorization', () => ['Authorization', `Bearer ${gak.key}`], true],
  ])('a gak_ key %s is admitted; the key header and x-api-key are owned', async (_what, raw, owned) => {
    const { admission } = configured({ auth: { certificates: 'off' } });
    const socket = await callerSocket();
    const a = admitted(await admission.admit(head(socket, 'GET', '/v1/items', raw())));
    expect(a.identity).toEqual({ method: 'api-key', name: 'partner' });
    expect(a.owned.has('x-gofannon-key')).toBe(true);
    expect(a.owned.has('x-api-key')).toBe(true);
    expect(a.owned.has('authorization')).toBe(owned);
  });

  it('JWT mode: a key in the configured header and a bearer token together are ambiguous', async () => {
    const { admission, logs } = configured();
    const socket = await callerSocket();
    const a = refused(
      await admission.admit(head(socket, 'GET', '/v1/x', ['x-gofannon-key', gak.key, 'Authorization', 'Bearer a.b.c'])),
    );
    expect(a.answer).toEqual({
      status: 401,
      reason: 'ERR_CREDENTIALS_AMBIGUOUS',
      headers: { 'www-authenticate': 'Bearer' },
    });
    await settleLogs();
    expect(logs).toEqual([
      expect.objectContaining({ event: 'peer_rejected', auth: 'api-key', reason: 'ERR_CREDENTIALS_AMBIGUOUS' }),
    ]);
  });

  it('JWT mode: x-api-key is no credential here, and an sk_ bearer is a (malformed) token, not a key', async () => {
    const { admission } = configured();
    const socket = await callerSocket();
    const inOldHeader = refused(await admission.admit(head(socket, 'GET', '/v1/x', ['x-api-key', gak.key])));
    expect(inOldHeader.answer?.reason).toBe('ERR_JWT_MISSING');
    const sk = refused(
      await admission.admit(head(socket, 'GET', '/v1/x', ['Authorization', `Bearer ${keys.partner}`])),
    );
    expect(sk.answer?.reason).toBe('ERR_JWT_MALFORMED');
  });

  it('certificates optional, no certificate: a key in x-api-key is missing, an sk_ key in the header unknown', async () => {
    const { admission } = configured({ auth: { certificates: 'off' } });
    const socket = await callerSocket();
    const old = refused(await admission.admit(head(socket, 'GET', '/v1/x', ['x-api-key', gak.key])));
    expect(old.answer?.reason).toBe('ERR_API_KEY_MISSING');
    const sk = refused(await admission.admit(head(socket, 'GET', '/v1/x', ['x-gofannon-key', keys.partner])));
    expect(sk.answer?.reason).toBe('ERR_API_KEY_UNKNOWN');
  });
});

describe('decisions', () => {
  const fileAuthorizer = () => createFileAuthorizer(() => parsePolicy(POLICY, 'test policy'));
  const partnerKey = () => ['x-api-key', keys.partner];

  it('a deny rule: 403 with the rule in the decision returned, the connection kept', async () => {
    const { admission } = build({ authorizer: fileAuthorizer() });
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/admin/users', partnerKey())));
    expect(a).toMatchObject({ admitted: false, answer: { status: 403, reason: 'rule_denied' }, keepAlive: true });
    expect(a.judged).toEqual({ allow: false, rule: 'no-admin', reason: 'rule_denied' });
    expect(a.identity).toEqual({ method: 'api-key', name: 'partner' });
  });

  it('dry-run: a denial is let through, counted as dry_run_deny, and returned as the denial it was', async () => {
    const { admission, metrics } = build({ authorizer: fileAuthorizer(), dryRun: true });
    const socket = await callerSocket();
    const a = admitted(await admission.admit(head(socket, 'DELETE', '/admin/users', partnerKey())));
    expect(a.decision).toEqual({ allow: true, rule: 'dry-run (no-admin)' });
    expect(a.judged).toEqual({ allow: false, rule: 'no-admin', reason: 'rule_denied' });
    const b = admitted(await admission.admit(head(socket, 'PUT', '/nowhere', partnerKey())));
    expect(b.decision).toEqual({ allow: true, rule: 'dry-run (no_matching_rule)' });
    expect(b.judged).toEqual({ allow: false, reason: 'no_matching_rule' });
    expect(metrics.calls).toEqual([
      ['decision', 'dry_run_deny', 'rule_denied', 'api-key'],
      ['decision', 'dry_run_deny', 'no_matching_rule', 'api-key'],
    ]);
  });

  it('dry-run does not lift a path without a normal form: 400', async () => {
    const { admission, metrics } = build({ authorizer: fileAuthorizer(), dryRun: true });
    const socket = await callerSocket();
    const a = refused(await admission.admit(head(socket, 'GET', '/v1/%2e%2e/admin', partnerKey())));
    expect(a).toMatchObject({
      admitted: false,
      answer: { status: 400, reason: 'path_not_normalized' },
      keepAlive: true,
    });
    expect(metrics.calls).toEqual([['decision', 'deny', 'path_not_normalized', 'api-key']]);
  });

  it('rate limited: 429 with Retry-After, the connection kept', async () => {
    const { admission, metrics } = build({ authorizer: fileAuthorizer() });
    const socket = await callerSocket();
    admitted(await admission.admit(head(socket, 'GET', '/limited', partnerKey())));
    const a = refused(await admission.admit(head(socket, 'GET', '/limited', partnerKey())));
    expect(a.answer?.status).toBe(429);
    expect(a.answer?.reason).toBe('rate_limited');
    expect(Number(a.answer?.headers?.['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(a.keepAlive).toBe(true);
    expect(metrics.calls).toEqual([
      ['decision', 'allow', 'rule_matched', 'api-key'],
      ['decision', 'deny', 'rate_limited', 'api-key'],
    ]);
  });
});

describe('mTLS connections', () => {
  let ca: Awaited<ReturnType<typeof createDevCa>>;
  let serverCert: Awaited<ReturnType<typeof issueSvid>>;
  let clientCert: Awaited<ReturnType<typeof issueSvid>>;
  let strangerCert: Awaited<ReturnType<typeof issueSvid>>;
  let foreignCert: Awaited<ReturnType<typeof issueSvid>>;
  let server: tls.Server | undefined;
  const clients: tls.TLSSocket[] = [];

  beforeAll(async () => {
    ca = await createDevCa({ trustDomain: 'example.org' });
    const otherCa = await createDevCa({ trustDomain: 'example.org' });
    serverCert = await issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/server' });
    clientCert = await issueSvid(ca, { id: CLIENT_ID });
    strangerCert = await issueSvid(ca, { id: STRANGER_ID });
    foreignCert = await issueSvid(otherCa, { id: CLIENT_ID });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await closeServer(server);
  });

  function identity(status: { value: IdentityStatus }): IdentitySource {
    const bundles = x509BundleSetFromPem({ 'example.org': ca.certPem });
    // What admission reads of an identity source: its status and its bundles.
    const source: Pick<IdentitySource, 'kind' | 'current' | 'status' | 'onUpdate' | 'close'> = {
      kind: 'file',
      current: () => ({ svid: {} as never, bundles }),
      status: () => status.value,
      onUpdate: () => () => {},
      close: async () => {},
    };
    return source as IdentitySource;
  }

  /**
   * A TLS listener that hands each connection to admission.connect, as inbound.ts does; resolves with the
   * server's socket once connect() has run, and the client's.
   */
  async function connectWith(
    options: Partial<AdmissionOptions>,
    cert: { chainPem: string; keyPem: string } | undefined,
    status = { value: { ready: true } as IdentityStatus },
  ) {
    // As the app configures it: a certificate is required unless API keys are accepted too.
    const certificates = 'apiKeys' in options && options.apiKeys === undefined ? 'required' : 'optional';
    const built = build({ auth: { certificates }, identity: identity(status), ...options });
    server = tls.createServer({
      cert: serverCert.chainPem,
      key: serverCert.keyPem,
      ca: [ca.certPem],
      requestCert: true,
      rejectUnauthorized: false,
    });
    const connected = new Promise<tls.TLSSocket>((resolve) =>
      server!.once('secureConnection', (socket: tls.TLSSocket) => {
        built.admission.connect(socket, undefined);
        resolve(socket);
      }),
    );
    const port = await listenOn(server);
    const client = tls.connect({
      host: '127.0.0.1',
      port,
      ca: [ca.certPem],
      checkServerIdentity: () => undefined,
      ...(cert ? { cert: cert.chainPem, key: cert.keyPem } : {}),
    });
    client.on('error', () => {});
    clients.push(client);
    return { ...built, socket: await connected, client, status };
  }

  it('a verified peer: the handshake counted, its requests admitted as its SPIFFE ID', async () => {
    const { admission, socket, metrics, logs } = await connectWith({}, clientCert);
    expect(socket.destroyed).toBe(false);
    const a = admitted(await admission.admit(head(socket, 'GET', '/anything', [])));
    expect(a.identity).toMatchObject({ method: 'mtls' });
    expect(a.identity.id?.toString()).toBe(CLIENT_ID);
    expect(a.decision).toEqual({ allow: true, rule: CLIENT_ID });
    expect(a.owned.has('authorization')).toBe(false);
    expect(metrics.calls).toEqual([
      ['handshake', 'success', 'verified'],
      ['decision', 'allow', 'rule_matched', 'mtls'],
    ]);
    expect(a.judged).toEqual({ allow: true, rule: CLIENT_ID });
    await settleLogs();
    expect(logs).toEqual([]);
  });

  it('with allow flags the decision is made once per connection', async () => {
    let decided = 0;
    const flags = createFlagAuthorizer({ allow: [CLIENT_ID], allowAny: false });
    const counting: Authorizer = {
      perRequest: false,
      decide: (...args) => {
        decided++;
        return flags.decide(...args);
      },
    };
    const { admission, socket, metrics } = await connectWith({ authorizer: counting }, clientCert);
    for (let i = 0; i < 3; i++) admitted(await admission.admit(head(socket, 'GET', `/r${i}`, [])));
    expect(decided).toBe(1);
    expect(metrics.count('decision', 'allow')).toBe(3);
  });

  it('a verified peer the rules refuse: 403, the connection kept', async () => {
    const { admission, socket } = await connectWith({}, strangerCert);
    const a = refused(await admission.admit(head(socket, 'GET', '/', [])));
    expect(a).toMatchObject({ admitted: false, answer: { status: 403, reason: 'no_matching_rule' }, keepAlive: true });
    expect(a.identity?.id?.toString()).toBe(STRANGER_ID);
    expect(socket.destroyed).toBe(false);
  });

  it('a certificate of another CA: refused at connect, logged, counted, disconnected', async () => {
    const { socket, client, metrics, logs } = await connectWith({}, foreignCert);
    expect(socket.destroyed).toBe(true);
    await once(client, 'close');
    expect(metrics.calls).toHaveLength(1);
    expect(metrics.calls[0].slice(0, 2)).toEqual(['handshake', 'failure']);
    await settleLogs();
    expect(logs).toEqual([
      expect.objectContaining({
        event: 'peer_rejected',
        remote: '127.0.0.1',
        // What the certificate claims, unverified: the SPIFFE ID in its URI SAN, its serial and hash.
        presented_id: CLIENT_ID,
        serial: foreignCert.serialNumber,
        fingerprint_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      }),
    ]);
    expect(logs[0].reason).toBe(metrics.calls[0][2]);
  });

  it('no certificate, API keys not accepted: ERR_NO_CLIENT_CERT, disconnected', async () => {
    const { socket, client, metrics } = await connectWith({ apiKeys: undefined }, undefined);
    expect(socket.destroyed).toBe(true);
    await once(client, 'close');
    expect(metrics.calls).toEqual([['handshake', 'failure', 'ERR_NO_CLIENT_CERT']]);
  });

  it('no certificate, API keys accepted: each request must carry one', async () => {
    const authorizer = createFlagAuthorizer({ allow: [], allowAny: true });
    const { admission, socket, metrics } = await connectWith({ authorizer }, undefined);
    expect(socket.destroyed).toBe(false);
    expect(metrics.calls).toEqual([['handshake', 'success', 'no_client_cert']]);
    const none = refused(await admission.admit(head(socket, 'GET', '/', [])));
    expect(none.answer).toEqual({
      status: 401,
      reason: 'ERR_API_KEY_MISSING',
      headers: { 'www-authenticate': 'Bearer' },
    });
    const inHeader = admitted(await admission.admit(head(socket, 'GET', '/', ['x-api-key', keys.partner])));
    expect(inHeader.identity).toEqual({ method: 'api-key', name: 'partner' });
    expect(inHeader.owned.has('authorization')).toBe(false);
    const inAuthorization = admitted(
      await admission.admit(head(socket, 'GET', '/', ['Authorization', `Bearer ${keys.partner}`])),
    );
    expect(inAuthorization.owned.has('authorization')).toBe(true);
  });

  it('a peer with a certificate that also sends an sk_ bearer: Authorization is owned', async () => {
    const { admission, socket } = await connectWith({}, clientCert);
    const a = admitted(await admission.admit(head(socket, 'GET', '/', ['Authorization', `Bearer ${keys.partner}`])));
    expect(a.identity.method).toBe('mtls');
    expect(a.owned.has('authorization')).toBe(true);
    const other = admitted(await admission.admit(head(socket, 'GET', '/', ['Authorization', 'Bearer eyJ.not.key'])));
    expect(other.owned.has('authorization')).toBe(false);
  });

  it('our identity revoked: new connections dropped, requests on open ones get 503', async () => {
    const status = { value: { ready: true } as IdentityStatus };
    const open = await connectWith({}, clientCert, status);
    status.value = { ready: false, reason: 'identity_revoked' };
    const a = refused(await open.admission.admit(head(open.socket, 'GET', '/', [])));
    expect(a.answer).toEqual({ status: 503, reason: 'identity_revoked' });
    for (const c of clients.splice(0)) c.destroy();
    open.socket.destroy();
    await closeServer(server);
    const fresh = await connectWith({}, clientCert, status);
    expect(fresh.socket.destroyed).toBe(true);
    expect(fresh.metrics.calls).toEqual([['handshake', 'failure', 'identity_revoked']]);
    await settleLogs();
    expect(fresh.logs).toEqual([expect.objectContaining({ event: 'connection_refused', reason: 'identity_revoked' })]);
  });

  it('a request on a connection that never passed connect(): refused without an answer (fail closed)', async () => {
    const { admission } = build({ auth: { certificates: 'required' }, identity: identity({ value: { ready: true } }) });
    const socket = await callerSocket();
    expect(await admission.admit(head(socket, 'GET', '/', []))).toEqual({ admitted: false });
  });
});

describe('a request as Node parses it', () => {
  let server: http.Server | undefined;
  afterEach(() => closeServer(server));

  it('an IncomingMessage is a RequestHead: admitted with the key it carries', async () => {
    const { admission } = build({ authorizer: createFlagAuthorizer({ allow: [], allowAny: true }) });
    const results: Admission[] = [];
    server = http.createServer(async (req, res) => {
      results.push(await admission.admit(req));
      res.end();
    });
    const port = await listenOn(server);
    const response = await fetch(`http://127.0.0.1:${port}/v1/items?x=1`, {
      headers: { authorization: `Bearer ${keys.partner}` },
    });
    await response.arrayBuffer();
    expect(results).toHaveLength(1);
    const a = admitted(results[0]);
    expect(a.identity).toEqual({ method: 'api-key', name: 'partner' } satisfies PeerIdentity);
    expect(a.owned.has('authorization')).toBe(true);
  });
});
