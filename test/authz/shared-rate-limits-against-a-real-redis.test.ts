// The shared rate-limit store against a real redis-server: the Lua bucket counts like the local
// RateLimiter and is shared by every client of the store; keys name the rule, its limit and the caller
// (never a secret) and expire; a store that is down, slow or refuses our password never makes a decision
// wait, switches to the failure mode once (one log line) and back to shared counting when it answers.
import { mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePeer } from '../../src/authn/identity.js';
import { type Admission, type RateLimit, RateLimiter } from '../../src/authz/rate-limiter.js';
import { RedisRateStore } from '../../src/authz/redis-rate-store.js';
import { type RateStore, SharedRateLimits, type StoreFailureMode } from '../../src/authz/shared-rate-limits.js';
import { waitForLog } from '../helpers/authz.js';
import { tempDir } from '../helpers/pki.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { capturingLogger } from '../helpers/sidecar.js';

/** Generous: on a loaded machine a healthy store must not time out (the slow-store test sets its own). */
const TIMEOUT_MS = 5000;
/** Fast probing so a returning store is noticed quickly (the default is a second). */
const PROBE_MS = 50;

let dir: string;
let removeDir: () => Promise<void>;
/** Everything a test opened, closed after the file whatever happened. */
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const made = await tempDir();
  dir = made.path;
  removeDir = made.remove;
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await removeDir?.();
});

async function redisServer(options: { password?: string } = {}): Promise<RedisServer> {
  const own = join(dir, `redis-${cleanups.length}`);
  await mkdir(own);
  const redis = await startRedis(own, options);
  cleanups.push(() => redis.close());
  return redis;
}

async function openStore(port: number, options: { password?: string; timeoutMs?: number } = {}) {
  const store = await RedisRateStore.open({
    host: '127.0.0.1',
    port,
    db: 0,
    password: options.password,
    timeoutMs: options.timeoutMs ?? TIMEOUT_MS,
  });
  cleanups.push(() => store.close());
  return store;
}

/** A real store with its probes counted: how a test sees that a probe cycle ran and failed. */
function countingProbes(store: RateStore) {
  const probes = { ok: 0, failed: 0 };
  const observed: RateStore = {
    take: (key, limit) => store.take(key, limit),
    probe: () =>
      store.probe().then(
        () => void probes.ok++,
        (err: unknown) => {
          probes.failed++;
          throw err;
        },
      ),
    onReady: (l) => store.onReady(l),
    onError: (l) => store.onError(l),
    close: () => store.close(),
  };
  return { store: observed, probes };
}

function sharedLimits(store: RateStore, failure: StoreFailureMode, countingProcesses = 1, scope = '') {
  const { log, logs } = capturingLogger('debug');
  const limits = new SharedRateLimits({
    scope: () => scope,
    store,
    failure,
    countingProcesses,
    storeName: 'redis://test',
    log,
    probeIntervalMs: PROBE_MS,
  });
  cleanups.push(() => limits.close());
  /** Resolves once every line logged before it has been captured (the stream keeps order). */
  const settled = async () => {
    const marker = `marker-${logs.length}-${Math.random()}`;
    log.info({ event: 'test_marker', marker });
    await waitForLog(logs, { event: 'test_marker', marker });
  };
  return { limits, logs, settled };
}

/** The `rate_limit_store` lines logged since `from` that enter `mode` (the startup line excluded). */
function switches(logs: readonly Record<string, unknown>[], mode: string, from: number) {
  return logs.slice(from).filter((l) => l.event === 'rate_limit_store' && l.mode === mode && l.reason !== 'connecting');
}

/** A decision counted in the store: it comes as a promise (one round trip). */
async function fromStore(answer: Admission | Promise<Admission>): Promise<Admission> {
  expect(answer).toBeInstanceOf(Promise);
  return answer;
}

/** A decision made without the store: it comes at once. */
function atOnce(answer: Admission | Promise<Admission>): Admission {
  if (answer instanceof Promise) throw new Error('a decision waited on the store while it was failing');
  return answer;
}

/**
 * A TCP proxy between the store client and redis that can hold what redis sends back (the client's
 * commands still reach redis): a store that has become slow, without closing anything.
 */
async function holdingProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let holding = false;
  let released = 0;
  let heldBytes = 0;
  const held: { to: Socket; chunk: Buffer }[] = [];
  const server: Server = createServer((client) => {
    const upstream = netConnect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (!holding) return void client.write(chunk);
      heldBytes += chunk.length;
      held.push({ to: client, chunk });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    port: (server.address() as { port: number }).port,
    hold() {
      holding = true;
    },
    /** Sends on what was held and forwards again. */
    release() {
      holding = false;
      released++;
      for (const { to, chunk } of held.splice(0)) if (!to.destroyed) to.write(chunk);
    },
    get holding() {
      return holding;
    },
    get released() {
      return released;
    },
    get heldBytes() {
      return heldBytes;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  cleanups.push(() => proxy.close());
  return proxy;
}

describe('the store counts like the local bucket, shared by every client of the store', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await redisServer();
  });

  it('admits the burst at once, refuses the next with about one interval to wait, and refills', async () => {
    // One request a second, a burst of three: the local RateLimiter's answers are the reference.
    const limit: RateLimit = { requests: 1, perMs: 1000, burst: 3 };
    const store = await openStore(redis.port);
    // `open` does not wait for the connection; until it is ready, a take fails at once.
    await expect
      .poll(() =>
        store.probe().then(
          () => true,
          () => false,
        ),
      )
      .toBe(true);
    const local = new RateLimiter(limit);
    const stored: Admission[] = [];
    const locally: Admission[] = [];
    for (let i = 0; i < 4; i++) {
      stored.push(await store.take('bucket-semantics', limit));
      locally.push(local.take('bucket-semantics', Date.now()));
    }
    expect(stored.map((a) => a.ok)).toEqual([true, true, true, false]);
    expect(stored.map((a) => a.ok)).toEqual(locally.map((a) => a.ok));
    for (const refusal of [stored[3], locally[3]]) {
      if (refusal.ok) throw new Error('expected a refusal');
      expect(refusal.retryAfterMs).toBeGreaterThan(0);
      expect(refusal.retryAfterMs).toBeLessThanOrEqual(1000);
      expect(refusal.unavailable).toBeUndefined();
    }
    // A refusal costs nothing: the bucket refills and admits again (one token: then it refuses again).
    await expect.poll(async () => (await store.take('bucket-semantics', limit)).ok, { timeout: 5000 }).toBe(true);
    expect((await store.take('bucket-semantics', limit)).ok).toBe(false);
  });

  it('two replicas (two store clients) count one bucket per caller; other callers have their own', async () => {
    const limit: RateLimit = { requests: 3, perMs: 60_000, burst: 3 };
    const replicas = [];
    for (let i = 0; i < 2; i++) {
      const replica = sharedLimits(await openStore(redis.port), 'local');
      await waitForLog(replica.logs, { event: 'rate_limit_store', mode: 'shared' });
      replicas.push(replica.limits.limiterFor('reports', limit));
    }
    const [a, b] = replicas;
    const oks: boolean[] = [];
    for (const limiter of [a, b, a, b, a])
      oks.push((await fromStore(limiter.take('spiffe://example.org/alice', 0))).ok);
    expect(oks).toEqual([true, true, true, false, false]);
    // Another caller, same rule, either replica: a full bucket of its own.
    expect((await fromStore(b.take('spiffe://example.org/bob', 0))).ok).toBe(true);
    expect((await fromStore(a.take('spiffe://example.org/bob', 0))).ok).toBe(true);
  });

  it('two services (their own SPIFFE IDs) with the same rule name and limit count apart', async () => {
    const limit: RateLimit = { requests: 1, perMs: 60_000, burst: 1 };
    const services = [];
    for (const scope of ['spiffe://example.org/ns/a/sa/orders', 'spiffe://example.org/ns/b/sa/billing']) {
      const service = sharedLimits(await openStore(redis.port), 'local', 1, scope);
      await waitForLog(service.logs, { event: 'rate_limit_store', mode: 'shared' });
      services.push(service.limits.limiterFor('callers', limit));
    }
    const [orders, billing] = services;
    expect((await fromStore(orders.take('spiffe://example.org/client', 0))).ok).toBe(true);
    expect((await fromStore(orders.take('spiffe://example.org/client', 0))).ok).toBe(false);
    // The caller's minute at orders costs it nothing at billing.
    expect((await fromStore(billing.take('spiffe://example.org/client', 0))).ok).toBe(true);
  });

  it('a changed limit is a new bucket; the same rule name and limit again (a reload) is the same bucket', async () => {
    const { limits, logs } = sharedLimits(await openStore(redis.port), 'local');
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' });
    const before: RateLimit = { requests: 2, perMs: 60_000, burst: 2 };
    const old = limits.limiterFor('exports', before);
    expect((await fromStore(old.take('carol', 0))).ok).toBe(true);
    expect((await fromStore(old.take('carol', 0))).ok).toBe(true);
    expect((await fromStore(old.take('carol', 0))).ok).toBe(false);

    const reloaded = limits.limiterFor('exports', { ...before });
    expect((await fromStore(reloaded.take('carol', 0))).ok).toBe(false);

    const changed = limits.limiterFor('exports', { requests: 3, perMs: 60_000, burst: 3 });
    expect((await fromStore(changed.take('carol', 0))).ok).toBe(true);
    const renamed = limits.limiterFor('exports-v2', before);
    expect((await fromStore(renamed.take('carol', 0))).ok).toBe(true);
  });

  it('keys hold the rule, its limit and the caller’s name, never a key; they expire once the bucket is full', async () => {
    const { limits, logs } = sharedLimits(await openStore(redis.port), 'local');
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' });
    // One a second: one request leaves a bucket that is full again within a second.
    const limit: RateLimit = { requests: 1, perMs: 1000, burst: 5 };
    const rule = 'nightly-batch';
    const reader = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
    cleanups.push(async () => reader.disconnect());
    await reader.connect();
    // What the rule engine passes for a caller that presented an API key: the name its line gives it.
    const caller = describePeer({ method: 'api-key', name: 'nightly' });
    expect(caller).toBe('api-key:nightly');
    expect((await fromStore(limits.limiterFor(rule, limit).take(caller, 0))).ok).toBe(true);
    const expected = `spiffe-sidecar:rl:${JSON.stringify(['', rule, 1, 1000, 5])}:api-key:nightly`;
    const [keys, pttl] = await Promise.all([reader.keys('*nightly*'), reader.pttl(expected)]);
    expect(keys).toEqual([expected]);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(1000);
    await expect.poll(() => reader.exists(expected), { timeout: 5000 }).toBe(0);
  });
});

describe('a store that is down: the failure mode, switched to once, and shared counting again when it returns', () => {
  const limit: RateLimit = { requests: 4, perMs: 60_000, burst: 4 };
  const cases: { failure: StoreFailureMode; expected: Admission[] }[] = [
    { failure: 'allow', expected: Array<Admission>(6).fill({ ok: true }) },
    {
      failure: 'deny',
      expected: Array<Admission>(6).fill({ ok: false, retryAfterMs: 1000, unavailable: true }),
    },
    // Two counting processes: each admits its half of the burst.
    {
      failure: 'local',
      expected: [{ ok: true }, { ok: true }, ...Array<Admission>(4).fill({ ok: false, retryAfterMs: 30_000 })],
    },
  ];

  it.each(cases)('--rate-limit-store-failure $failure', async ({ failure, expected }) => {
    const redis = await redisServer();
    const { limits, logs, settled } = sharedLimits(await openStore(redis.port), failure, 2);
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' });
    const limiter = limits.limiterFor('reports', limit);
    expect((await fromStore(limiter.take('alice', 0))).ok).toBe(true);

    const from = logs.length;
    await redis.kill();
    // The client has seen the store go (its reconnection is refused): that alone switches to the failure
    // mode, before any rate-limited request (so the metric and the log tell an outage without traffic).
    await waitForLog(logs, { event: 'rate_limit_store_error' }, from);
    expect(switches(logs, failure, from)).toHaveLength(1);
    expect(limits.stats().up).toBe(false);
    // No take asks the store while it is down.
    const answers: Admission[] = [];
    for (let i = 0; i < expected.length; i++) answers.push(atOnce(limiter.take('dave', Date.now())));
    expect(answers.map((a) => a.ok)).toEqual(expected.map((a) => a.ok));
    for (const [i, a] of answers.entries()) {
      if (expected[i].ok || a.ok) continue;
      expect(a.unavailable).toBe(expected[i].unavailable);
      if (failure === 'local') {
        // Half the rate too: the next token within 30 s (2 a minute).
        expect(a.retryAfterMs).toBeGreaterThan(0);
        expect(a.retryAfterMs).toBeLessThanOrEqual(30_000);
      } else expect(a.retryAfterMs).toBe(expected[i].retryAfterMs);
    }

    await settled();
    const entered = switches(logs, failure, from);
    expect(entered).toHaveLength(1);
    expect(entered[0]).toMatchObject({ level: 'warn', reason: 'error' });
    expect(limits.stats()).toMatchObject({ up: false, modeChanges: { [failure]: 1, shared: 1 } });

    await redis.restart();
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' }, from, 15_000);
    expect(limits.stats()).toMatchObject({ up: true, modeChanges: { [failure]: 1, shared: 2 } });
    // Counting in the store again (it restarted empty: a fresh bucket).
    expect((await fromStore(limiter.take('erin', Date.now()))).ok).toBe(true);
    await settled();
    expect(switches(logs, failure, from)).toHaveLength(1);
  });
});

describe('a slow store never makes a decision wait past the timeout', () => {
  it('a held reply is answered by the failure mode at the timeout, once; shared again when replies flow', async () => {
    const redis = await redisServer();
    const proxy = await holdingProxy(redis.port);
    // Short enough for a test, long enough that a healthy round trip through the proxy never times out.
    const { limits, logs, settled } = sharedLimits(await openStore(proxy.port, { timeoutMs: 1000 }), 'deny');
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' });
    const limiter = limits.limiterFor('reports', { requests: 3, perMs: 60_000, burst: 3 });
    // Through the proxy, the store counts (and has loaded its script).
    expect(await fromStore(limiter.take('alice', Date.now()))).toEqual({ ok: true });

    const from = logs.length;
    proxy.hold();
    const answer = await fromStore(limiter.take('alice', Date.now()));
    // Resolved while redis's reply was still held back: the decision did not wait for the store.
    expect(proxy.holding).toBe(true);
    expect(proxy.released).toBe(0);
    // `deny`'s answer, not the store's (alice had two requests left).
    expect(answer).toEqual({ ok: false, retryAfterMs: 1000, unavailable: true });
    // redis did answer; the proxy held it.
    await expect.poll(() => proxy.heldBytes).toBeGreaterThan(0);

    // While failing, decisions come at once, without asking the store.
    for (let i = 0; i < 5; i++) expect(atOnce(limiter.take('alice', Date.now()))).toMatchObject({ unavailable: true });
    await settled();
    const entered = switches(logs, 'deny', from);
    expect(entered).toHaveLength(1);
    expect(entered[0]).toMatchObject({ reason: 'timeout' });
    expect(limits.stats().up).toBe(false);
    expect(limits.stats().errors.timeout).toBeGreaterThanOrEqual(1);
    expect(limits.stats().modeChanges.deny).toBe(1);
    expect(switches(logs, 'shared', from)).toHaveLength(0);

    proxy.release();
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' }, from, 15_000);
    expect(limits.stats().up).toBe(true);
    // The held request was counted by redis: alice has one left, then none.
    expect(await fromStore(limiter.take('alice', Date.now()))).toEqual({ ok: true });
    expect((await fromStore(limiter.take('alice', Date.now()))).ok).toBe(false);
  });
});

describe('a store that requires a password', () => {
  const PASSWORD = 'correct horse battery staple';
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await redisServer({ password: PASSWORD });
  });

  it('the right password counts in the store', async () => {
    const { limits, logs } = sharedLimits(await openStore(redis.port, { password: PASSWORD }), 'deny');
    await waitForLog(logs, { event: 'rate_limit_store', mode: 'shared' });
    expect(await fromStore(limits.limiterFor('r', { requests: 1, perMs: 60_000, burst: 1 }).take('a', 0))).toEqual({
      ok: true,
    });
  });

  it('a wrong password never reaches shared counting: the failure mode stays, the error is logged once', async () => {
    const wrong = 'not-the-password-7f3a';
    const { store, probes } = countingProbes(await openStore(redis.port, { password: wrong }));
    const { limits, logs, settled } = sharedLimits(store, 'deny');
    const error = await waitForLog(logs, { event: 'rate_limit_store_error' });
    expect(error.error).toMatch(/WRONGPASS/);
    expect(JSON.stringify(logs)).not.toContain(wrong);
    // Probe cycles after the refusal: each failed.
    const failedBefore = probes.failed;
    await expect.poll(() => probes.failed, { timeout: 10_000 }).toBeGreaterThanOrEqual(failedBefore + 3);
    await settled();
    expect(probes.ok).toBe(0);
    expect(logs.filter((l) => l.event === 'rate_limit_store' && l.mode === 'shared')).toHaveLength(0);
    expect(logs.filter((l) => l.event === 'rate_limit_store_error')).toHaveLength(1);
    expect(limits.stats()).toMatchObject({ up: false, modeChanges: { shared: 0 } });
    expect(atOnce(limits.limiterFor('r', { requests: 1, perMs: 60_000, burst: 1 }).take('a', 0))).toMatchObject({
      ok: false,
      unavailable: true,
    });
  });
});
