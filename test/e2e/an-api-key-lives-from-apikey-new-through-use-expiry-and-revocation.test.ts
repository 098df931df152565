// Issue 19: API keys with a life story, end to end over real TLS through the real sidecar, with the
// Gofannon header and prefix (--api-key-header x-gofannon-key --api-key-prefix gak_): a key made by
// `apikey new --prefix gak_` is used in X-Gofannon-Key (the app sees its name, never the key), its last
// use appears in /api-keys, keys nobody uses are counted as unused, and the key ends by expiry and then by
// revocation (its line removed, a reload), which also forgets its last use.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../../src/authn/api-keys.js';
import { printedApiKey, scrapeMetrics, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, servingOptions } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

/** --api-key-unused-after: short, so that a test can watch a key become unused. */
const UNUSED_AFTER_MS = 3000;

const ws = useWorkspace();
let sidecar: TestSidecar;
let keysFile: string;
let startedAt: number;

const agentA = printedApiKey({ name: 'agent-a', prefix: 'gak_', route: ['*:/agents/a/**'] });
/** A key from before created= existed, and one made long ago: neither is ever used here. */
const legacy = newApiKey('gak_');
const idleLine = `sha256:${legacy.sha256} idle-agent created=2020-01-01T00:00:00Z`;
const issued = [agentA.key, legacy.key];

async function writeKeys(...lines: string[]) {
  await writeFile(keysFile, `${lines.join('\n')}\n`);
  await sidecar.reload('SIGHUP');
}

interface KeyReport {
  name: string;
  id: string;
  created_at: string | null;
  expires_at: string | null;
  last_used_at: string | null;
  routes: string[];
  expired: boolean;
  unused: boolean;
}

async function apiKeys(): Promise<{ since: string; unused_after_seconds: number; keys: KeyReport[] }> {
  const res = await fetch(`http://127.0.0.1:${sidecar.adminAddress().port}/api-keys`);
  expect(res.status).toBe(200);
  const text = await res.text();
  for (const key of issued) expect(text).not.toContain(key.slice(4));
  expect(text).not.toMatch(/[0-9a-f]{64}/);
  return JSON.parse(text);
}
const report = async (name: string) => (await apiKeys()).keys.find((k) => k.name === name);

async function gauges(): Promise<{ listed: number; unused: number }> {
  const text = await scrapeMetrics(sidecar.adminAddress().port);
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  return { listed: value('spiffe_sidecar_api_keys'), unused: value('spiffe_sidecar_api_keys_unused') };
}

async function call(headers: Record<string, string>, path = '/agents/a/invoke') {
  const res = await requestVia(sidecar.port, undefined, { method: 'POST', path, headers });
  const body = JSON.parse(res.body) as { reason?: string; headers?: Record<string, string> };
  return { status: res.status, reason: body.reason, headers: body.headers, raw: res.body };
}

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'gofannon');
  const serving = await servingOptions(dir, ca, 'spiffe://example.org/gateway');
  keysFile = join(dir, 'api-keys.txt');
  await writeFile(keysFile, `${agentA.line}\n${idleLine}\n`);
  startedAt = Date.now();
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    ...serving,
    'policy-file': await writePolicy(dir, 'policy.json', {
      version: 1,
      rules: [{ name: 'agents', effect: 'allow', path: { prefix: '/agents' }, callers: { auth: ['api_key'] } }],
    }),
    'api-keys-file': keysFile,
    'api-key-header': 'x-gofannon-key',
    'api-key-prefix': 'gak_',
    'api-key-unused-after': `${UNUSED_AFTER_MS}ms`,
  });
});
afterAll(() => sidecar?.close());

describe('an API key lives from apikey new through use, expiry and revocation', () => {
  it('created: apikey new --prefix gak_ prints a gak_ key and a line with created=; /api-keys lists it, unused by nobody yet', async () => {
    expect(agentA.key).toMatch(/^gak_[A-Za-z0-9_-]{43}$/);
    expect(agentA.line).toMatch(
      /^sha256:[0-9a-f]{64} agent-a created=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ route=\*:\/agents\/a\/\*\*$/,
    );
    const doc = await apiKeys();
    expect(doc.unused_after_seconds).toBe(3);
    expect(Date.parse(doc.since)).toBeGreaterThanOrEqual(startedAt);
    const created = /created=(\S+)/.exec(agentA.line)?.[1] as string;
    expect(doc.keys).toEqual([
      {
        name: 'agent-a',
        id: agentA.line.slice('sha256:'.length, 'sha256:'.length + 8),
        created_at: new Date(created).toISOString(),
        expires_at: null,
        last_used_at: null,
        routes: ['*:/agents/a/**'],
        expired: false,
        unused: false,
      },
      {
        name: 'idle-agent',
        id: legacy.sha256.slice(0, 8),
        created_at: '2020-01-01T00:00:00.000Z',
        expires_at: null,
        last_used_at: null,
        routes: [],
        expired: false,
        // Made years ago, but this process has not run --api-key-unused-after yet.
        unused: false,
      },
    ]);
    expect(await gauges()).toEqual({ listed: 2, unused: 0 });
  });

  it('used: in X-Gofannon-Key or as a gak_ bearer; the app sees the name, never the key or its header', async () => {
    const before = Date.now();
    const ways: Record<string, string>[] = [
      { 'X-Gofannon-Key': agentA.key },
      { Authorization: `Bearer ${agentA.key}` },
    ];
    for (const headers of ways) {
      const res = await call(headers);
      expect(res.status).toBe(200);
      expect(res.headers?.['x-api-key-name']).toBe('agent-a');
      expect(res.headers?.['x-gofannon-key']).toBeUndefined();
      expect(res.headers?.authorization).toBeUndefined();
      expect(res.raw).not.toContain(agentA.key);
    }
    // Not in the old header, nor with the old prefix.
    expect(await call({ 'x-api-key': agentA.key })).toMatchObject({ status: 401, reason: 'ERR_API_KEY_MISSING' });
    expect(await call({ 'X-Gofannon-Key': `sk_${agentA.key.slice(4)}` })).toMatchObject({
      status: 401,
      reason: 'ERR_API_KEY_UNKNOWN',
    });
    const used = await report('agent-a');
    expect(Date.parse(used?.last_used_at as string)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(used?.last_used_at as string)).toBeLessThanOrEqual(Date.now());
    expect((await report('idle-agent'))?.last_used_at).toBeNull();
  });

  it('unused: a key not used for --api-key-unused-after is counted, and a use takes it off the count', async () => {
    await expect.poll(async () => (await gauges()).unused, { timeout: 10_000, interval: 100 }).toBe(2);
    expect((await apiKeys()).keys.map((k) => [k.name, k.unused])).toEqual([
      ['agent-a', true],
      ['idle-agent', true],
    ]);
    expect((await call({ 'X-Gofannon-Key': agentA.key })).status).toBe(200);
    expect(await gauges()).toEqual({ listed: 2, unused: 1 });
    expect((await report('agent-a'))?.unused).toBe(false);
  });

  it('expired: expires= in the past, a reload, and the key gets 401 ERR_API_KEY_EXPIRED; its last use is kept', async () => {
    const lastUse = (await report('agent-a'))?.last_used_at;
    await writeKeys(`${agentA.line} expires=2020-01-01T00:00:00Z`, idleLine);
    expect(await call({ 'X-Gofannon-Key': agentA.key })).toMatchObject({ status: 401, reason: 'ERR_API_KEY_EXPIRED' });
    expect(await report('agent-a')).toMatchObject({
      expires_at: '2020-01-01T00:00:00.000Z',
      expired: true,
      last_used_at: lastUse,
    });
  });

  it('revoked: its line removed and a reload, the key gets 401 ERR_API_KEY_UNKNOWN and leaves /api-keys and the count', async () => {
    await writeKeys(idleLine);
    expect(await call({ 'X-Gofannon-Key': agentA.key })).toMatchObject({ status: 401, reason: 'ERR_API_KEY_UNKNOWN' });
    expect((await apiKeys()).keys.map((k) => k.name)).toEqual(['idle-agent']);
    expect((await gauges()).listed).toBe(1);
  });

  it('listed again, it starts a new story: its last use was forgotten with its line', async () => {
    await writeKeys(agentA.line, idleLine);
    expect((await report('agent-a'))?.last_used_at).toBeNull();
    expect((await call({ 'X-Gofannon-Key': agentA.key })).status).toBe(200);
    expect((await report('agent-a'))?.last_used_at).not.toBeNull();
  });

  it('no key ever appears in the logs', () => {
    const text = JSON.stringify(sidecar.logs);
    for (const key of issued) expect(text).not.toContain(key);
    expect(sidecar.logs.filter((l) => l.event === 'reload_failed')).toEqual([]);
  });
});
