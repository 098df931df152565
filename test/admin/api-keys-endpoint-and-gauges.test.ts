// The admin listener's /api-keys (only with --api-keys-file; a document that cannot be had is a 503) and
// the two key gauges, which exist only with --api-keys-file and which a --workers worker leaves out of the
// primary's sum (the primary counts the merged document itself).
import { AggregatorRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/admin/metrics.js';
import { useAdminServers } from '../helpers/admin-server.js';

const admin = useAdminServers();

const DOC = { since: '2026-05-01T00:00:00.000Z', unused_after_seconds: 60, keys: [] };

describe('GET /api-keys', () => {
  it('serves the document as JSON, not cached; HEAD has no body', async () => {
    const base = await admin({ apiKeys: () => DOC });
    const res = await fetch(`${base}/api-keys`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual(DOC);
    const head = await fetch(`${base}/api-keys`, { method: 'HEAD' });
    expect([head.status, await head.text()]).toEqual([200, '']);
  });

  it('asked of workers: their answer, or 503 when they do not give one (a throw or a rejection)', async () => {
    expect(await (await fetch(`${await admin({ apiKeys: async () => DOC })}/api-keys`)).json()).toEqual(DOC);
    for (const apiKeys of [
      () => Promise.reject(new Error('worker 2 did not answer')),
      () => {
        throw new Error('no worker is serving');
      },
    ]) {
      const res = await fetch(`${await admin({ apiKeys })}/api-keys`);
      expect(res.status).toBe(503);
      expect((await res.json()).error).toMatch(/worker/);
    }
  });

  it('is 404 without --api-keys-file, and listed among the endpoints with it', async () => {
    const without = await fetch(`${await admin()}/api-keys`);
    expect(without.status).toBe(404);
    expect((await without.json()).endpoints).not.toContain('/api-keys');
    const listed = await fetch(`${await admin({ apiKeys: () => DOC })}/nope`);
    expect((await listed.json()).endpoints).toContain('/api-keys');
  });
});

describe('the API key gauges', () => {
  const names = (text: string) => [...text.matchAll(/^# TYPE (spiffe_sidecar_api_keys\S*) gauge$/gm)].map((m) => m[1]);

  it('exist only with --api-keys-file, and are counted at scrape time', async () => {
    expect(names(await createMetrics(undefined).registry.metrics())).toEqual([]);
    let counts = { listed: 3, unused: 1 };
    const { registry } = createMetrics(undefined, undefined, undefined, undefined, {
      apiKeys: { counts: () => counts },
    });
    let text = await registry.metrics();
    expect(names(text)).toEqual(['spiffe_sidecar_api_keys', 'spiffe_sidecar_api_keys_unused']);
    expect(text).toMatch(/^spiffe_sidecar_api_keys 3$/m);
    expect(text).toMatch(/^spiffe_sidecar_api_keys_unused 1$/m);
    counts = { listed: 2, unused: 0 };
    text = await registry.metrics();
    expect(text).toMatch(/^spiffe_sidecar_api_keys 2$/m);
    expect(text).toMatch(/^spiffe_sidecar_api_keys_unused 0$/m);
  });

  it('a count that cannot be had keeps the last one instead of failing the scrape', async () => {
    let fail = false;
    const counts = async () => {
      if (fail) throw new Error('a worker did not answer');
      return { listed: 4, unused: 2 };
    };
    const { registry } = createMetrics(undefined, undefined, undefined, undefined, { apiKeys: { counts } });
    await registry.metrics();
    fail = true;
    expect(await registry.metrics()).toMatch(/^spiffe_sidecar_api_keys_unused 2$/m);
  });

  it('a worker’s gauges are left out of the primary’s sum', async () => {
    const worker = (perWorker: boolean) =>
      createMetrics(undefined, undefined, undefined, undefined, {
        apiKeys: { counts: () => ({ listed: 3, unused: 1 }), perWorker },
      }).registry.getMetricsAsJSON();
    const summed = await AggregatorRegistry.aggregate([await worker(true), await worker(true)]).metrics();
    expect(names(summed)).toEqual([]);
    const alone = await AggregatorRegistry.aggregate([await worker(false)]).metrics();
    expect(alone).toMatch(/^spiffe_sidecar_api_keys 3$/m);
  });
});
