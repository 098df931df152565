// The route's token cache on a clock the test moves: one request per key however many callers wait, a
// background refresh from 80% of the lifetime, never sent past 95%, a refusal drops the token, bounded.
import { describe, expect, it } from 'vitest';
import { AccessTokenCache, MAX_TOKEN_REQUESTS_IN_FLIGHT } from '../../src/outbound/access-tokens.js';
import type { TokenOutcome } from '../../src/outbound/token-endpoint.js';

const T0 = 1_000_000;

/** A fetch the test settles by hand: each call is one pending request to the endpoint. */
function scriptedFetch() {
  const pending: ((o: TokenOutcome) => void)[] = [];
  let n = 0;
  const fetch = () => new Promise<TokenOutcome>((resolve) => pending.push(resolve));
  return {
    fetch,
    get calls() {
      return pending.length;
    },
    /** Settles the oldest request with a token issued at `at` for `lifetimeMs`. */
    issue(at: number, lifetimeMs = 100_000) {
      n++;
      pending.shift()!({ ok: true, accessToken: `t${n}`, issuedAt: at, expiresAt: at + lifetimeMs });
    },
    fail(refused: boolean) {
      pending.shift()!({ ok: false, refused, error: refused ? 'invalid_grant' : 'http_503', message: 'no' });
    },
  };
}

/** Lets a settled request finish its bookkeeping (promise callbacks), as the next event would. */
const settled = () => new Promise((resolve) => setImmediate(resolve));

function tokenOf(outcome: TokenOutcome): string {
  return outcome.ok ? outcome.accessToken : `failed:${outcome.error}`;
}

/** A cache of `maxEntries` keys on a clock the test moves (`clock.now`, from T0), and its scripted endpoint. */
function cacheOnClock(maxEntries = 10) {
  const clock = { now: T0 };
  const cache = new AccessTokenCache(maxEntries, () => clock.now);
  return { clock, cache, f: scriptedFetch() };
}

/** The same, once key `k` holds `t1`, issued at T0 for 100 s (`notAfter` as the route gives it). */
async function cacheHoldingT1(notAfter?: () => number) {
  const held = cacheOnClock();
  const first = held.cache.get('k', held.f.fetch, notAfter);
  held.f.issue(held.clock.now);
  await first;
  return held;
}

describe('the access token cache', () => {
  it('one request for every caller waiting on a key; then hits cost no request', async () => {
    const { clock, cache, f } = cacheOnClock();
    const waiting = Array.from({ length: 20 }, () => cache.get('k', f.fetch));
    expect(f.calls).toBe(1);
    f.issue(clock.now);
    expect(new Set((await Promise.all(waiting)).map(tokenOf))).toEqual(new Set(['t1']));
    clock.now += 79_000;
    expect(tokenOf(await cache.get('k', f.fetch))).toBe('t1');
    expect(f.calls).toBe(0);
  });

  it('from 80%: the cached token at once and one refresh behind it; past 95%: the caller waits', async () => {
    const { clock, cache, f } = await cacheHoldingT1();
    clock.now = T0 + 80_000;
    expect(tokenOf(await cache.get('k', f.fetch))).toBe('t1');
    expect(tokenOf(await cache.get('k', f.fetch))).toBe('t1');
    expect(f.calls).toBe(1);
    // The refresh fails: the token still goes, until 95% of its life.
    f.fail(false);
    await settled();
    clock.now = T0 + 94_000;
    expect(tokenOf(await cache.get('k', f.fetch))).toBe('t1');
    f.fail(false);
    await settled();
    clock.now = T0 + 95_000;
    const waited = cache.get('k', f.fetch);
    expect(f.calls).toBe(1);
    f.issue(clock.now);
    expect(tokenOf(await waited)).toBe('t2');
  });

  it('a token past 95% is never sent, even when the endpoint is down: the failure is the answer', async () => {
    const { clock, cache, f } = await cacheHoldingT1();
    clock.now = T0 + 96_000;
    const waited = cache.get('k', f.fetch);
    f.fail(false);
    expect(tokenOf(await waited)).toBe('failed:http_503');
  });

  it('a refusal drops what was issued before for that key', async () => {
    const { clock, cache, f } = await cacheHoldingT1();
    clock.now = T0 + 85_000;
    await cache.get('k', f.fetch);
    f.fail(true);
    await settled();
    const next = cache.get('k', f.fetch);
    expect(f.calls).toBe(1);
    f.fail(true);
    expect(tokenOf(await next)).toBe('failed:invalid_grant');
  });

  it('notAfter bounds how long a token is sent (the subject token expires first)', async () => {
    const notAfter = () => T0 + 10_000;
    const { clock, cache, f } = await cacheHoldingT1(notAfter);
    clock.now = T0 + 10_000;
    void cache.get('k', f.fetch, notAfter);
    expect(f.calls).toBe(1);
  });

  it('holds at most maxEntries keys, the oldest going first', async () => {
    const { clock, cache, f } = cacheOnClock(2);
    for (const key of ['a', 'b', 'c']) {
      const got = cache.get(key, f.fetch);
      f.issue(clock.now);
      await got;
    }
    expect(cache.size).toBe(2);
    void cache.get('b', f.fetch);
    void cache.get('c', f.fetch);
    expect(f.calls).toBe(0);
    void cache.get('a', f.fetch);
    expect(f.calls).toBe(1);
  });

  it('past the cap of requests in flight, a new key fails at once without a request; a key under way still waits', async () => {
    const { clock, cache, f } = cacheOnClock(1000);
    const waiting = Array.from({ length: MAX_TOKEN_REQUESTS_IN_FLIGHT }, (_, i) => cache.get(`k${i}`, f.fetch));
    expect(f.calls).toBe(MAX_TOKEN_REQUESTS_IN_FLIGHT);
    expect(tokenOf(await cache.get('one-more', f.fetch))).toBe('failed:too_many_token_requests');
    const shared = cache.get('k0', f.fetch);
    expect(f.calls).toBe(MAX_TOKEN_REQUESTS_IN_FLIGHT);
    f.issue(clock.now);
    expect(tokenOf(await shared)).toBe('t1');
    await waiting[0];
    await settled();
    void cache.get('one-more', f.fetch);
    expect(f.calls).toBe(MAX_TOKEN_REQUESTS_IN_FLIGHT);
  });
});
