// Per-identity rate limits set per rule, over real mTLS and API keys: past its burst a caller gets 429
// with Retry-After (and the app sees nothing), refills at the rule's rate, and never costs another caller
// or another rule anything. WebSocket upgrades count like any request.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { apiKey, decisions, lastAudit, scrapeMetrics, writePolicy } from '../helpers/authz.js';
import { openRaw, requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const POLICY = {
  version: 1,
  rules: [
    {
      name: 'reports-twice-a-minute',
      effect: 'allow',
      methods: ['GET'],
      path: { prefix: '/reports' },
      callers: { ids: ['spiffe://example.org'] },
      rate_limit: { requests: 1, per: '1m', burst: 2 },
    },
    {
      name: 'polling-five-a-second',
      effect: 'allow',
      path: { exact: '/poll' },
      rate_limit: { requests: 5, per: '1s', burst: 1 },
    },
    {
      name: 'scripts-once-a-minute',
      effect: 'allow',
      path: { prefix: '/jobs' },
      callers: { auth: ['api_key'] },
      rate_limit: { requests: 1, per: '1m' },
    },
    { name: 'free', effect: 'allow', path: { prefix: '/free' } },
  ],
};

const ws = useWorkspace();
let serving: ServingFiles;
let alice: IssuedCertificate;
let bob: IssuedCertificate;
let sidecar: TestSidecar;
const scriptKeyOne = apiKey('nightly');
const scriptKeyTwo = apiKey('nightly');
const otherScript = apiKey('hourly');

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'files');
  await mkdir(dir);
  serving = await writeServingFiles(dir, await issueSvid(ca, { id: 'spiffe://example.org/reports' }), ca.certPem);
  [alice, bob] = await Promise.all([
    issueSvid(ca, { id: 'spiffe://example.org/alice' }),
    issueSvid(ca, { id: 'spiffe://example.org/bob' }),
  ]);
  const keys = join(dir, 'keys.txt');
  await writeFile(keys, [scriptKeyOne.line, scriptKeyTwo.line, otherScript.line].join('\n'));
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': await writePolicy(dir, 'policy.json', POLICY),
    'api-keys-file': keys,
  });
});
afterAll(() => sidecar.close());

describe('rate limits answer 429 with Retry-After', () => {
  it('past its burst a caller gets 429, told when to come back; the app does not see the refused request', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    for (let i = 0; i < 2; i++)
      expect((await requestVia(sidecar.port, alice, { path: `/reports/${i}` })).status).toBe(200);
    const seen = ws.app.seen.length;
    const refused = await requestVia(sidecar.port, alice, { path: '/reports/2' });
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toEqual({ error: 'too_many_requests', reason: 'rate_limited' });
    // One request a minute: the next token is (almost exactly) a minute away.
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(ws.app.seen.length).toBe(seen);
    expect(await lastAudit(sidecar.logs, 'GET', '/reports/2')).toMatchObject({
      peer: 'spiffe://example.org/alice',
      auth: 'mtls',
      decision: 'deny',
      rule: 'reports-twice-a-minute',
      reason: 'rate_limited',
    });
    const after = await scrapeMetrics(sidecar.adminAddress().port);
    expect(decisions(after, 'deny', 'rate_limited') - decisions(before, 'deny', 'rate_limited')).toBe(1);
  });

  it('another caller has its own bucket; the limited caller is free on other rules', async () => {
    for (let i = 0; i < 2; i++)
      expect((await requestVia(sidecar.port, bob, { path: `/reports/b${i}` })).status).toBe(200);
    expect((await requestVia(sidecar.port, bob, { path: '/reports/b2' })).status).toBe(429);
    // Alice is still limited on reports, and not at all elsewhere.
    expect((await requestVia(sidecar.port, alice, { path: '/reports/again' })).status).toBe(429);
    expect((await requestVia(sidecar.port, alice, { path: '/free/x' })).status).toBe(200);
    expect((await requestVia(sidecar.port, alice, { path: '/poll' })).status).toBe(200);
  });

  it('the bucket refills at the rule’s rate', async () => {
    // bob has used /poll never; burst 1, then one every 200 ms.
    expect((await requestVia(sidecar.port, bob, { path: '/poll' })).status).toBe(200);
    const refused = await requestVia(sidecar.port, bob, { path: '/poll' });
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    const started = Date.now();
    await expect
      .poll(async () => (await requestVia(sidecar.port, bob, { path: '/poll' })).status, {
        timeout: 2000,
        interval: 25,
      })
      .toBe(200);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('API key callers are limited per name: two keys of one name share a bucket, another name has its own', async () => {
    const call = (key: string) =>
      requestVia(sidecar.port, undefined, { path: '/jobs/run', headers: { 'x-api-key': key } });
    expect((await call(scriptKeyOne.key)).status).toBe(200);
    const from = sidecar.logs.length;
    const second = await call(scriptKeyTwo.key);
    expect(second.status).toBe(429);
    expect(Number(second.headers['retry-after'])).toBeGreaterThanOrEqual(59);
    expect(await lastAudit(sidecar.logs, 'GET', '/jobs/run', from)).toMatchObject({
      peer: 'api-key:nightly',
      auth: 'api-key',
      reason: 'rate_limited',
    });
    expect((await call(otherScript.key)).status).toBe(200);
  });

  it('a WebSocket upgrade past the limit gets 429 with Retry-After, and no tunnel', async () => {
    const raw = await openRaw(sidecar.port, alice);
    try {
      raw.socket.write(
        'GET /reports/ws HTTP/1.1\r\nHost: sidecar.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      await expect.poll(() => raw.received(), { timeout: 3000 }).toMatch(/\r\n\r\n\{.*\}$/s);
      expect(raw.received()).toMatch(/^HTTP\/1\.1 429 /);
      expect(raw.received()).toMatch(/\r\nretry-after: (59|60)\r\n/i);
      expect(raw.received()).toContain('"reason":"rate_limited"');
    } finally {
      raw.socket.destroy();
    }
    expect(ws.app.upgrades.filter((u) => u.url === '/reports/ws')).toHaveLength(0);
  });
});
