// `--rate-limit-store` against a real redis-server: two sidecars and a `--workers 2` sidecar (a real
// process) count one set of buckets, so a limit of N per minute admits N in total, not N per replica.
// Redis killed mid-run: the documented fallback (local buckets, the limit divided by the replicas), one
// log line and a metric; shared counting again once it is back.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { sample, scrapeMetrics, waitForLog, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { fileModeArgs, type Running, startCli, waitForEvent } from '../helpers/process.js';
import { freePort } from '../helpers/free-port.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { documentedMetrics } from '../helpers/readme.js';
import { useWorkspace } from '../helpers/workspace.js';

const LIMIT = 6;
const POLICY = {
  version: 1,
  rules: [
    {
      name: 'reports',
      effect: 'allow',
      path: { prefix: '/reports' },
      rate_limit: { requests: LIMIT, per: '1m', burst: LIMIT },
    },
  ],
};

const ws = useWorkspace();
let serving: ServingFiles;
let policyFile: string;
let redis: RedisServer;
let callers: IssuedCertificate[];
const sidecars: TestSidecar[] = [];
let workers: Running | undefined;
let workersPort = 0;

function storeFlags(): Record<string, string> {
  return {
    'rate-limit-store': redis.url,
    // Generous: on a loaded CI machine a decision must not fall back by timing out.
    'rate-limit-store-timeout': '5s',
    'rate-limit-replicas': '2',
  };
}

/** A sample without labels; NaN when absent (so that a missing metric cannot pass for 0). */
function unlabelled(scrape: string, name: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

/** The stdout lines of the workers' sidecar that say rate limits count in the store, one per worker. */
function sharedLines(running: Running): number {
  return running
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"event":"rate_limit_store"') && l.includes('"mode":"shared"')).length;
}

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'files');
  await mkdir(dir);
  serving = await writeServingFiles(dir, await issueSvid(ca, { id: 'spiffe://example.org/reports' }), ca.certPem);
  callers = await Promise.all(
    ['alice', 'bob', 'carol', 'dave'].map((n) => issueSvid(ca, { id: `spiffe://example.org/${n}` })),
  );
  policyFile = await writePolicy(dir, 'policy.json', POLICY);
  redis = await startRedis(join(ws.path));
  for (let i = 0; i < 2; i++) {
    sidecars.push(
      await startTestSidecar({
        upstream: ws.app.url,
        'mtls-cert-file': serving.certFile,
        'mtls-key-file': serving.keyFile,
        'mtls-ca-file': serving.caFile,
        'policy-file': policyFile,
        ...storeFlags(),
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(sidecars.map((s) => s.close()));
  if (workers && workers.child.exitCode === null) {
    workers.child.kill('SIGTERM');
    await workers.exited;
  }
  await redis?.close();
});

describe('rate limits hold across replicas through a shared redis', () => {
  it('two sidecars and a --workers 2 sidecar admit N per minute in total, not N per replica', async () => {
    for (const s of sidecars) await waitForLog(s.logs, { event: 'rate_limit_store', mode: 'shared' }, 0, 15_000);
    workers = startCli([
      '--workers',
      '2',
      ...fileModeArgs(
        ws.app.url,
        serving,
        '--policy-file',
        policyFile,
        ...Object.entries(storeFlags()).flatMap(([k, v]) => [`--${k}`, v]),
      ),
    ]);
    const running = workers;
    // The workers' 'started' lines precede the primary's 'workers_started'.
    await waitForEvent(running, 'workers_started', 20_000);
    const started = running
      .stdout()
      .split('\n')
      .find((l) => l.includes('"event":"started"'));
    workersPort = Number((JSON.parse(started as string) as { listen: { port: number } }).listen.port);
    // Each worker counts in the store once it has connected.
    await expect.poll(() => sharedLines(running), { timeout: 20_000, interval: 50 }).toBe(2);
    expect(workersPort).toBeGreaterThan(0);

    const alice = callers[0];
    const ports = [sidecars[0].port, sidecars[1].port, workersPort];
    const statuses: number[] = [];
    // New connections each time: the workers' sidecar spreads them over both workers.
    for (let i = 0; i < 3 * LIMIT; i++)
      statuses.push((await requestVia(ports[i % 3], alice, { path: `/reports/${i}` })).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2 * LIMIT);
    // The first N were admitted, whichever replica took them: the count is one.
    expect(statuses.slice(0, LIMIT).every((s) => s === 200)).toBe(true);
    // Another caller has a bucket of its own in the same store.
    expect((await requestVia(workersPort, callers[1], { path: '/reports/b' })).status).toBe(200);
  });

  it('redis killed mid-run: local buckets with the limit divided by the replicas, then shared again when it returns', async () => {
    const [a, b] = sidecars;
    const carol = callers[2];
    const fromA = a.logs.length;
    const fromB = b.logs.length;
    await redis.kill();
    // Each replica admits its share (6 / 2 replicas = 3) of a fresh caller's minute.
    for (const s of [a, b]) {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await requestVia(s.port, carol, { path: `/reports/c${i}` })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
    }
    await waitForLog(a.logs, { event: 'rate_limit_store', mode: 'local' }, fromA);
    await waitForLog(b.logs, { event: 'rate_limit_store', mode: 'local' }, fromB);
    const down = await scrapeMetrics(a.adminAddress().port);
    // Every documented store metric is exported when a store is configured.
    for (const name of documentedMetrics().filter((m) => m.startsWith('spiffe_sidecar_rate_limit_store_')))
      expect(down).toContain(`# TYPE ${name} `);
    expect(unlabelled(down, 'spiffe_sidecar_rate_limit_store_up')).toBe(0);
    expect(sample(down, 'spiffe_sidecar_rate_limit_store_mode_changes_total', { mode: 'local' })).toBe(1);

    await redis.restart();
    await waitForLog(a.logs, { event: 'rate_limit_store', mode: 'shared' }, fromA, 15_000);
    await waitForLog(b.logs, { event: 'rate_limit_store', mode: 'shared' }, fromB, 15_000);
    const up = await scrapeMetrics(a.adminAddress().port);
    expect(unlabelled(up, 'spiffe_sidecar_rate_limit_store_up')).toBe(1);
    expect(sample(up, 'spiffe_sidecar_rate_limit_store_mode_changes_total', { mode: 'shared' })).toBe(2);

    // Shared again: a fresh caller gets N in total across both replicas.
    const dave = callers[3];
    const statuses: number[] = [];
    for (let i = 0; i < 2 * LIMIT; i++)
      statuses.push((await requestVia(sidecars[i % 2].port, dave, { path: `/reports/d${i}` })).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
  });

  it('a bucket survives a policy reload that keeps the rule’s name and limit', async () => {
    const [a] = sidecars;
    const bob = callers[1];
    // bob used 1 of 6 above (in the store, which restarted empty since): use up what is left.
    let admitted = 0;
    for (let i = 0; i < LIMIT + 1; i++)
      if ((await requestVia(a.port, bob, { path: `/reports/r${i}` })).status === 200) admitted++;
    expect(admitted).toBe(LIMIT);
    const from = a.logs.length;
    // The same rule rewritten (a description added): the file changes, the bucket stays.
    const rewritten = { ...POLICY, rules: [{ ...POLICY.rules[0], description: 'reports, six a minute' }] };
    await writeFile(policyFile, JSON.stringify(rewritten));
    await a.reload('test');
    await waitForLog(a.logs, { event: 'file_reloaded', flag: '--policy-file' }, from);
    expect((await requestVia(a.port, bob, { path: '/reports/after' })).status).toBe(429);
  });

  it('--rate-limit-store-failure deny: while the store cannot count, rate-limited routes get 503, others still pass', async () => {
    const dir = join(ws.path, 'deny');
    await mkdir(dir);
    const policy = await writePolicy(dir, 'policy.json', {
      version: 1,
      rules: [POLICY.rules[0], { name: 'free', effect: 'allow', path: { prefix: '/free' } }],
    });
    const sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'policy-file': policy,
      // Nothing listens there: the store never answers.
      'rate-limit-store': `redis://127.0.0.1:${await freePort()}`,
      'rate-limit-store-failure': 'deny',
    });
    try {
      await waitForLog(sidecar.logs, { event: 'rate_limit_store', mode: 'deny', reason: 'connecting' });
      const seen = ws.app.seen.length;
      const refused = await requestVia(sidecar.port, callers[0], { path: '/reports/x' });
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(JSON.parse(refused.body)).toEqual({ error: 'unavailable', reason: 'rate_limit_unavailable' });
      expect(ws.app.seen.length).toBe(seen);
      expect((await requestVia(sidecar.port, callers[0], { path: '/free/x' })).status).toBe(200);
    } finally {
      await sidecar.close();
    }
  });
});
