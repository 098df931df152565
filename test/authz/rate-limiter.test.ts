// Token buckets per caller: a burst, then a steady refill; a refused request says when to retry; the
// number of buckets is bounded, least recently used first out.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_KEYS, RateLimiter } from '../../src/authz/rate-limiter.js';

describe('a token bucket per caller', () => {
  it('admits a full burst at once, then refuses with the time until the next token', () => {
    const limiter = new RateLimiter({ requests: 2, perMs: 1000, burst: 5 });
    for (let i = 0; i < 5; i++) expect(limiter.take('a', 0)).toEqual({ ok: true });
    // 2 per second: the next token in 500 ms.
    expect(limiter.take('a', 0)).toEqual({ ok: false, retryAfterMs: 500 });
    expect(limiter.take('a', 100)).toEqual({ ok: false, retryAfterMs: 400 });
  });

  it('refills at the rate, and only up to the burst', () => {
    const limiter = new RateLimiter({ requests: 2, perMs: 1000, burst: 3 });
    for (let i = 0; i < 3; i++) expect(limiter.take('a', 0).ok).toBe(true);
    expect(limiter.take('a', 499).ok).toBe(false);
    expect(limiter.take('a', 500).ok).toBe(true);
    expect(limiter.take('a', 500).ok).toBe(false);
    // A long quiet time refills the bucket to the burst, not beyond.
    const later = 1_000_000;
    for (let i = 0; i < 3; i++) expect(limiter.take('a', later).ok).toBe(true);
    expect(limiter.take('a', later).ok).toBe(false);
  });

  it('a refused request costs nothing: steady retries still get the refill rate', () => {
    const limiter = new RateLimiter({ requests: 10, perMs: 1000, burst: 1 });
    let admitted = 0;
    // One attempt per 10 ms for a second: 1 (burst) + 10 per second.
    for (let t = 0; t < 1000; t += 10) if (limiter.take('a', t).ok) admitted++;
    expect(admitted).toBe(10);
  });

  it('burst 1: one request, then a wait of (almost) a full period', () => {
    const limiter = new RateLimiter({ requests: 1, perMs: 60_000, burst: 1 });
    expect(limiter.take('a', 0).ok).toBe(true);
    const refused = limiter.take('a', 1);
    expect(refused.ok).toBe(false);
    const { retryAfterMs } = refused as { retryAfterMs: number };
    expect(retryAfterMs).toBeGreaterThanOrEqual(59_999);
    expect(retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('callers have separate buckets', () => {
    const limiter = new RateLimiter({ requests: 1, perMs: 1000, burst: 1 });
    expect(limiter.take('a', 0).ok).toBe(true);
    expect(limiter.take('a', 0).ok).toBe(false);
    expect(limiter.take('b', 0).ok).toBe(true);
    expect(limiter.take('b', 0).ok).toBe(false);
  });

  it('a wall clock stepped back does not cost a caller its tokens', () => {
    // The limiter is fed Date.now(): NTP may step it back. Elapsed time below zero is no time at all; it
    // must not drain the bucket and lock the caller out until the clock catches up.
    const limiter = new RateLimiter({ requests: 1, perMs: 1000, burst: 2 });
    const t = 1_700_000_000_000;
    expect(limiter.take('a', t).ok).toBe(true);
    // The clock steps back one hour: one token is left, and it must be there.
    expect(limiter.take('a', t - 3_600_000)).toEqual({ ok: true });
  });
});

describe('memory is bounded', () => {
  it('at most maxKeys buckets, the least recently used dropped first', () => {
    const limiter = new RateLimiter({ requests: 1, perMs: 60_000, burst: 1 }, 3);
    for (const k of ['a', 'b', 'c']) expect(limiter.take(k, 0).ok).toBe(true);
    expect(limiter.size).toBe(3);
    // `a` is touched (even a refusal counts as use): `b` is now the least recently used.
    expect(limiter.take('a', 1).ok).toBe(false);
    expect(limiter.take('d', 2).ok).toBe(true);
    expect(limiter.size).toBe(3);
    // `b` was dropped: it starts again with a full bucket (and pushes out `c`).
    expect(limiter.take('b', 3).ok).toBe(true);
    expect(limiter.size).toBe(3);
    // `a` and `d` are still tracked and still empty.
    expect(limiter.take('a', 4).ok).toBe(false);
    expect(limiter.take('d', 5).ok).toBe(false);
    expect(limiter.take('c', 6).ok).toBe(true);
  });

  it('many distinct callers never grow the state beyond the default bound', () => {
    const limiter = new RateLimiter({ requests: 1, perMs: 1000, burst: 1 });
    for (let i = 0; i < DEFAULT_MAX_KEYS + 500; i++) limiter.take(`caller-${i}`, i);
    expect(limiter.size).toBe(DEFAULT_MAX_KEYS);
    // The most recent caller is still tracked, the oldest is not.
    expect(limiter.take(`caller-${DEFAULT_MAX_KEYS + 499}`, DEFAULT_MAX_KEYS + 500).ok).toBe(false);
    expect(limiter.take('caller-0', DEFAULT_MAX_KEYS + 500).ok).toBe(true);
  });
});
