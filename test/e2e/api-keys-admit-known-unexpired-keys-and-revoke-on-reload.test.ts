// Static API keys for callers that hold neither an SVID nor a token, over real TLS and through the real
// proxy: a listed, unexpired key is admitted as its name (the app sees the name, never the key); an
// unknown, expired or removed key gets 401; the policy decides what each name may call; a key line's own
// routes limit it further. In mTLS mode a client without a certificate may connect and must send a key
// with every request; a bad certificate is still refused.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import {
  apiKey,
  lastAudit,
  onOneConnection,
  sample,
  scrapeMetrics,
  waitForLog,
  writePolicy,
} from '../helpers/authz.js';
import { expectRejected, requestVia, type Response } from '../helpers/client.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, HOUR, issueSvid, type ServingFiles, svidWith, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const SERVER_ID = 'spiffe://example.org/ns/prod/sa/reports';
const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';

const POLICY = {
  version: 1,
  rules: [
    {
      name: 'partner-a-reads-orders',
      effect: 'allow',
      methods: ['GET'],
      path: { prefix: '/orders' },
      callers: { api_keys: ['partner-a'] },
    },
    {
      name: 'scripts-run-reports',
      effect: 'allow',
      path: { prefix: '/reports' },
      callers: { api_keys: ['script-b', 'reporter'] },
    },
    { name: 'client-does-everything', effect: 'allow', callers: { ids: [CLIENT_ID] } },
  ],
};

const ws = useWorkspace();
let ca: CertificateAuthority;
let serving: ServingFiles;
let client: IssuedCertificate;
let sidecar: TestSidecar;
let keysFile: string;
const partnerA = apiKey('partner-a');
const scriptB = apiKey('script-b');
const expired = apiKey('partner-a', 'expires=2020-01-01T00:00:00Z');
const reporter = apiKey('reporter', 'route=GET:/reports/daily/**');
/** Every key these tests send: none may ever be logged. */
const issuedKeys = [partnerA, scriptB, expired, reporter].map((k) => k.key);

async function writeKeys(...lines: string[]) {
  await writeFile(keysFile, `# --api-keys-file, made with 'spiffe-sidecar apikey new'\n${lines.join('\n')}\n`);
}

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'mtls');
  await mkdir(dir);
  serving = await writeServingFiles(dir, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  client = await issueSvid(ca, { id: CLIENT_ID });
  keysFile = join(dir, 'api-keys.txt');
  await writeKeys(partnerA.line, scriptB.line, expired.line, reporter.line);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': await writePolicy(dir, 'policy.json', POLICY),
    'api-keys-file': keysFile,
  });
});
afterAll(() => sidecar.close());

/** A request without a client certificate. */
function call(path: string, headers: Record<string, string> = {}, method = 'GET') {
  return requestVia(sidecar.port, undefined, { method, path, headers });
}

const body = (res: Response) => JSON.parse(res.body) as Record<string, unknown>;
const seenHeaders = (res: Response) => body(res).headers as Record<string, string | undefined>;

describe('API keys in mTLS mode: a client without a certificate authenticates with a key', () => {
  it('a valid key in x-api-key is admitted; the app sees its name and not the key', async () => {
    const res = await call('/orders/o-1', { 'x-api-key': partnerA.key });
    expect(res.status).toBe(200);
    const headers = seenHeaders(res);
    expect(headers['x-api-key-name']).toBe('partner-a');
    expect(headers['x-api-key']).toBeUndefined();
    expect(headers['x-spiffe-id']).toBeUndefined();
    expect(headers['x-forwarded-client-cert']).toBeUndefined();
    expect(res.body).not.toContain(partnerA.key);
    expect(await lastAudit(sidecar.logs, 'GET', '/orders/o-1')).toMatchObject({
      auth: 'api-key',
      peer: 'api-key:partner-a',
      decision: 'allow',
      rule: 'partner-a-reads-orders',
    });
  });

  it('a valid key as Authorization: Bearer sk_… is admitted, and the header does not reach the app', async () => {
    const res = await call('/orders/o-2', { authorization: `Bearer ${partnerA.key}` });
    expect(res.status).toBe(200);
    expect(seenHeaders(res)['x-api-key-name']).toBe('partner-a');
    expect(seenHeaders(res).authorization).toBeUndefined();
    expect(res.body).not.toContain(partnerA.key);
  });

  it('unknown, malformed, expired, missing or doubled keys get 401 and the app sees nothing', async () => {
    const seen = ws.app.seen.length;
    const cases: [string, Record<string, string>, string][] = [
      ['an unknown key', { 'x-api-key': apiKey('partner-a').key }, 'ERR_API_KEY_UNKNOWN'],
      ['an unknown key as a bearer', { authorization: `Bearer ${apiKey('x').key}` }, 'ERR_API_KEY_UNKNOWN'],
      ['a malformed key', { 'x-api-key': 'sk_short' }, 'ERR_API_KEY_UNKNOWN'],
      ['the hash from the file', { 'x-api-key': partnerA.line.split(' ')[0] }, 'ERR_API_KEY_UNKNOWN'],
      ['an empty x-api-key', { 'x-api-key': '' }, 'ERR_API_KEY_UNKNOWN'],
      ['an expired key', { 'x-api-key': expired.key }, 'ERR_API_KEY_EXPIRED'],
      ['no key at all', {}, 'ERR_API_KEY_MISSING'],
      ['a JWT instead of a key', { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig' }, 'ERR_API_KEY_MISSING'],
      ['two keys', { 'x-api-key': partnerA.key, authorization: `Bearer ${scriptB.key}` }, 'ERR_API_KEY_UNKNOWN'],
    ];
    for (const [what, headers, reason] of cases) {
      const res = await call('/orders', headers);
      expect({ what, status: res.status, body: body(res) }).toEqual({
        what,
        status: 401,
        body: { error: 'unauthorized', reason },
      });
      expect(res.headers['www-authenticate']).toBe('Bearer');
    }
    expect(ws.app.seen.length).toBe(seen);
    const rejected = sidecar.logs.filter((l) => l.event === 'peer_rejected' && l.auth === 'api-key');
    expect(rejected.map((l) => l.reason)).toEqual(expect.arrayContaining(cases.map((c) => c[2])));
  });

  it('a connection without a certificate must send a key with every request', async () => {
    const answers = await onOneConnection(sidecar.port, undefined, [
      { path: '/orders', headers: { 'x-api-key': partnerA.key } },
      { path: '/orders' },
      { path: '/reports/x', headers: { 'x-api-key': scriptB.key } },
    ]);
    // A refused caller's connection is closed after the 401: the next request needs a new connection.
    expect(answers.map((a) => [a.status, a.reused])).toEqual([
      [200, false],
      [401, true],
      [200, false],
    ]);
    expect(body(answers[1]).reason).toBe('ERR_API_KEY_MISSING');
    expect(seenHeaders(answers[2])['x-api-key-name']).toBe('script-b');
  });

  it('the policy decides per name: key A is refused where only B may call, and the other way round', async () => {
    const aOnB = await call('/reports/daily', { 'x-api-key': partnerA.key });
    expect([aOnB.status, body(aOnB)]).toEqual([403, { error: 'forbidden', reason: 'no_matching_rule' }]);
    const bOnA = await call('/orders', { 'x-api-key': scriptB.key });
    expect([bOnA.status, body(bOnA).reason]).toEqual([403, 'no_matching_rule']);
    // B on its own route, and A with a method its rule does not list.
    expect((await call('/reports/daily', { 'x-api-key': scriptB.key }, 'POST')).status).toBe(200);
    expect((await call('/orders', { 'x-api-key': partnerA.key }, 'DELETE')).status).toBe(403);
    expect(await lastAudit(sidecar.logs, 'DELETE', '/orders')).toMatchObject({
      auth: 'api-key',
      decision: 'deny',
      reason: 'no_matching_rule',
    });
  });

  it('a key line with routes is limited to them, whatever the rules allow', async () => {
    expect((await call('/reports/daily/2026-05-01', { 'x-api-key': reporter.key })).status).toBe(200);
    for (const [method, path] of [
      ['GET', '/reports/monthly'],
      ['GET', '/reports/dailyx'],
      ['POST', '/reports/daily/2026-05-01'],
      ['GET', '/reports/daily/../monthly'],
    ]) {
      const res = await call(path, { 'x-api-key': reporter.key }, method);
      const reason = path.includes('..') ? 'path_not_normalized' : 'key_route_denied';
      expect({ method, path, status: res.status, reason: body(res).reason }).toEqual({
        method,
        path,
        status: reason === 'path_not_normalized' ? 400 : 403,
        reason,
      });
    }
    expect(await lastAudit(sidecar.logs, 'GET', '/reports/monthly')).toMatchObject({
      auth: 'api-key',
      peer: 'api-key:reporter',
      decision: 'deny',
      reason: 'key_route_denied',
    });
  });

  it('a spoofed x-api-key-name never reaches the app, from a key caller or a certificate caller', async () => {
    const byKey = await requestVia(sidecar.port, undefined, {
      path: '/orders/spoof',
      headers: [
        'host',
        'sidecar.test',
        'x-api-key',
        partnerA.key,
        'x-api-key-name',
        'admin',
        'X_Api_Key_Name',
        'partner-b',
      ],
    });
    expect(byKey.status).toBe(200);
    const raw = body(byKey).rawHeaders as string[];
    const names = raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replaceAll('_', '-'));
    expect(names.filter((n) => n === 'x-api-key-name')).toHaveLength(1);
    expect(seenHeaders(byKey)['x-api-key-name']).toBe('partner-a');

    const byCert = await requestVia(sidecar.port, client, {
      path: '/spoof',
      headers: { 'x-api-key-name': 'partner-a', 'x-api-key': partnerA.key },
    });
    expect(byCert.status).toBe(200);
    expect(seenHeaders(byCert)['x-api-key-name']).toBeUndefined();
    expect(seenHeaders(byCert)['x-api-key']).toBeUndefined();
    expect(seenHeaders(byCert)['x-spiffe-id']).toBe(CLIENT_ID);
  });

  it('a caller with a certificate is still an mTLS caller; a key it sends in Authorization is not passed on', async () => {
    const res = await requestVia(sidecar.port, client, {
      path: '/cert-caller',
      headers: { authorization: `Bearer ${scriptB.key}` },
    });
    expect(res.status).toBe(200);
    expect(seenHeaders(res)['x-spiffe-id']).toBe(CLIENT_ID);
    expect(await lastAudit(sidecar.logs, 'GET', '/cert-caller')).toMatchObject({ auth: 'mtls', peer: CLIENT_ID });
    // An API key is a credential of the sidecar's: it never reaches the app, whoever sends it.
    expect(seenHeaders(res).authorization).toBeUndefined();
  });

  it('the auth scheme is case-insensitive (RFC 9110 §11.1): "bearer sk_…" is a key', async () => {
    const res = await call('/orders/lower', { authorization: `bearer ${partnerA.key}` });
    expect([res.status, res.status === 200 ? seenHeaders(res)['x-api-key-name'] : body(res)]).toEqual([
      200,
      'partner-a',
    ]);
  });

  it('a key in Authorization under any spelling of the scheme never reaches the app', async () => {
    for (const scheme of ['bearer', 'BEARER']) {
      const res = await requestVia(sidecar.port, client, {
        path: `/cert-caller-${scheme}`,
        headers: { authorization: `${scheme} ${scriptB.key}` },
      });
      expect(res.status).toBe(200);
      expect({ scheme, leaked: res.body.includes(scriptB.key) }).toEqual({ scheme, leaked: false });
    }
  });

  it('a bad certificate is still refused, key or not', async () => {
    const rogue = await issueSvid(await createDevCa({ trustDomain: 'example.org' }), { id: CLIENT_ID });
    const lapsed = await svidWith(ca, CLIENT_ID, {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const seen = ws.app.seen.length;
    for (const cert of [rogue, lapsed]) {
      await expectRejected(sidecar.port, cert, { path: '/orders', headers: { 'x-api-key': partnerA.key } });
    }
    expect(ws.app.seen.length).toBe(seen);
  });

  it('certificate-less connections are counted as such', async () => {
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(
      sample(scrape, 'spiffe_sidecar_tls_handshakes_total', { result: 'success', reason: 'no_client_cert' }),
    ).toBeGreaterThan(0);
  });

  it('removing a line revokes its key on reload; a new line admits a new key; a broken file changes nothing', async () => {
    expect((await call('/reports/r', { 'x-api-key': scriptB.key })).status).toBe(200);
    const fresh = apiKey('script-b');
    issuedKeys.push(fresh.key);
    await writeKeys(partnerA.line, expired.line, reporter.line, fresh.line);
    await expect
      .poll(async () => body(await call('/reports/r', { 'x-api-key': scriptB.key })).reason, {
        timeout: 5000,
        interval: 50,
      })
      .toBe('ERR_API_KEY_UNKNOWN');
    expect((await call('/reports/r', { 'x-api-key': fresh.key })).status).toBe(200);
    expect((await call('/orders', { 'x-api-key': partnerA.key })).status).toBe(200);

    const mark = sidecar.logs.length;
    await writeKeys(partnerA.line, scriptB.line, `${fresh.line} expires=soon`);
    const failed = await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--api-keys-file' }, mark);
    expect(failed.reason).toBe('ERR_API_KEYS_INVALID');
    expect(failed.msg).toContain('line 4');
    // The last good keys stay: the revoked key stays revoked, the others work.
    expect((await call('/reports/r', { 'x-api-key': scriptB.key })).status).toBe(401);
    expect((await call('/reports/r', { 'x-api-key': fresh.key })).status).toBe(200);
    expect((await call('/orders', { 'x-api-key': partnerA.key })).status).toBe(200);
  });

  it('a key expires while the sidecar runs', async () => {
    const soon = apiKey('partner-a', `expires=${new Date(Date.now() + 1500).toISOString()}`);
    issuedKeys.push(soon.key);
    await writeKeys(partnerA.line, soon.line);
    await expect
      .poll(async () => (await call('/orders', { 'x-api-key': soon.key })).status, { timeout: 5000, interval: 50 })
      .toBe(200);
    await expect
      .poll(async () => body(await call('/orders', { 'x-api-key': soon.key })).reason, { timeout: 5000, interval: 100 })
      .toBe('ERR_API_KEY_EXPIRED');
  });

  it('no key ever appears in the logs', () => {
    const text = JSON.stringify(sidecar.logs);
    for (const key of issuedKeys) expect(text).not.toContain(key);
  });
});

describe('API keys in JWT mode, next to tokens', () => {
  let k8s: OidcIssuer;
  let jwtSidecar: TestSidecar;
  const agentKey = apiKey('ci-script');

  beforeAll(async () => {
    k8s = await startOidcIssuer();
    const dir = join(ws.path, 'jwt');
    await mkdir(dir);
    const caFile = join(dir, 'issuer-ca.pem');
    await writeFile(caFile, k8s.caPem);
    const keys = join(dir, 'keys.txt');
    await writeFile(keys, `${agentKey.line}\n`);
    const policy = await writePolicy(dir, 'policy.yaml', {
      version: 1,
      rules: [
        { name: 'ci-script-reads', effect: 'allow', methods: ['GET'], callers: { api_keys: ['ci-script'] } },
        { name: 'prod-agents', effect: 'allow', callers: { ids: ['spiffe://cluster.local/ns/prod/sa/*'] } },
      ],
    });
    jwtSidecar = await startTestSidecar({
      upstream: ws.app.url,
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-issuer': [`k8s=${k8s.url}`],
      'jwt-ca-file': caFile,
      'policy-file': policy,
      'api-keys-file': keys,
    });
  });
  afterAll(async () => {
    await jwtSidecar?.close();
    await k8s?.close();
  });

  async function get(path: string, headers: Record<string, string>, method = 'GET') {
    const res = await fetch(`http://127.0.0.1:${jwtSidecar.port}${path}`, { method, headers });
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  }

  it('a key caller and a token caller, each audited with how it authenticated', async () => {
    const byKey = await get('/jobs/by-key', { 'x-api-key': agentKey.key, 'x-api-key-name': 'spoofed' });
    expect(byKey.status).toBe(200);
    expect((byKey.body.headers as Record<string, string>)['x-api-key-name']).toBe('ci-script');
    expect(await lastAudit(jwtSidecar.logs, 'GET', '/jobs/by-key')).toMatchObject({
      auth: 'api-key',
      decision: 'allow',
    });

    const token = await k8s.sign({ sub: 'system:serviceaccount:prod:agent' });
    const byToken = await get('/jobs/by-token', { authorization: `Bearer ${token}`, 'x-api-key-name': 'ci-script' });
    expect(byToken.status).toBe(200);
    const headers = byToken.body.headers as Record<string, string>;
    expect(headers['x-spiffe-id']).toBe('spiffe://cluster.local/ns/prod/sa/agent');
    expect(headers['x-api-key-name']).toBeUndefined();
    expect(await lastAudit(jwtSidecar.logs, 'GET', '/jobs/by-token')).toMatchObject({
      auth: 'k8s-sa',
      decision: 'allow',
      rule: 'prod-agents',
    });
  });

  it('a key in Authorization is a key; an unknown key is a key error, not a token error', async () => {
    expect((await get('/jobs', { authorization: `Bearer ${agentKey.key}` })).status).toBe(200);
    expect(await get('/jobs', { 'x-api-key': apiKey('ci-script').key })).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'ERR_API_KEY_UNKNOWN' },
    });
    expect((await get('/jobs', {})).body.reason).toBe('ERR_JWT_MISSING');
    expect(await get('/jobs', { 'x-api-key': agentKey.key }, 'POST')).toEqual({
      status: 403,
      body: { error: 'forbidden', reason: 'no_matching_rule' },
    });
  });
});
