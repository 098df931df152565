// The jti replay cache on its own: once per (scope, jti) until the entry's expiry, bounded, oldest evicted.
import { describe, expect, it } from 'vitest';
import { createReplayCache } from '../../src/authn/replay-cache.js';

describe('createReplayCache', () => {
  it('admits a (scope, jti) once until it expires, then again', () => {
    const cache = createReplayCache(10);
    expect(cache.seen('iss:a', 'j', 0)).toBe(false);
    expect(cache.admitOnce('iss:a', 'j', 1000, 0)).toBe(true);
    expect(cache.seen('iss:a', 'j', 999)).toBe(true);
    expect(cache.admitOnce('iss:a', 'j', 2000, 999)).toBe(false);
    // The same jti under another scope, and another jti, are other tokens.
    expect(cache.admitOnce('iss:b', 'j', 1000, 0)).toBe(true);
    expect(cache.admitOnce('iss:a', 'k', 1000, 0)).toBe(true);
    // An expired entry is gone: its token cannot be presented any more anyway.
    expect(cache.seen('iss:a', 'j', 1000)).toBe(false);
    expect(cache.admitOnce('iss:a', 'j', 3000, 1000)).toBe(true);
  });

  it('scope and jti cannot run into each other', () => {
    const cache = createReplayCache(10);
    expect(cache.admitOnce('iss:a', 'bc', 1000, 0)).toBe(true);
    expect(cache.admitOnce('iss:ab', 'c', 1000, 0)).toBe(true);
  });

  it('holds at most N entries, evicting the oldest, and counts the evictions of live ones', () => {
    const cache = createReplayCache(2);
    cache.admitOnce('s', '1', 100, 0);
    cache.admitOnce('s', '2', 1000, 0);
    cache.admitOnce('s', '3', 1000, 200); // evicts 1, already expired: no gap
    expect(cache.stats()).toEqual({ size: 2, evictedAlive: 0 });
    cache.admitOnce('s', '4', 1000, 300); // evicts 2, alive: a gap
    expect(cache.stats()).toEqual({ size: 2, evictedAlive: 1 });
    expect(cache.seen('s', '2', 300)).toBe(false);
    expect(cache.seen('s', '3', 300)).toBe(true);
  });

  it('a jti as long as a header is tracked like any other', () => {
    const cache = createReplayCache(1);
    expect(cache.admitOnce('s', 'x'.repeat(16_000), 1000, 0)).toBe(true);
    expect(cache.seen('s', 'x'.repeat(16_000), 0)).toBe(true);
  });

  it('a size below one is a programming error', () => {
    expect(() => createReplayCache(0)).toThrow(RangeError);
  });
});
