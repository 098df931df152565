// The jti replay cache on its own: once per (scope, jti) until the entry's expiry, bounded, never evicting a live entry.
import { describe, expect, it } from 'vitest';
import { createReplayCache } from '../../src/authn/replay-cache.js';

describe('createReplayCache', () => {
  it('admits a (scope, jti) once until it expires, then again', () => {
    const cache = createReplayCache(10);
    expect(cache.seen('iss:a', 'j', 0)).toBe(false);
    expect(cache.admitOnce('iss:a', 'j', 1000, 0)).toBe('admitted');
    expect(cache.seen('iss:a', 'j', 999)).toBe(true);
    expect(cache.admitOnce('iss:a', 'j', 2000, 999)).toBe('replayed');
    // The same jti under another scope, and another jti, are other tokens.
    expect(cache.admitOnce('iss:b', 'j', 1000, 0)).toBe('admitted');
    expect(cache.admitOnce('iss:a', 'k', 1000, 0)).toBe('admitted');
    // An expired entry is gone: its token cannot be presented any more anyway.
    expect(cache.seen('iss:a', 'j', 1000)).toBe(false);
    expect(cache.admitOnce('iss:a', 'j', 3000, 1000)).toBe('admitted');
  });

  it('scope and jti cannot run into each other', () => {
    const cache = createReplayCache(10);
    expect(cache.admitOnce('iss:a', 'bc', 1000, 0)).toBe('admitted');
    expect(cache.admitOnce('iss:ab', 'c', 1000, 0)).toBe('admitted');
  });

  it('at N entries sweeps the expired ones; full of live ones, refuses (and sweeps again at most once a second)', () => {
    const cache = createReplayCache(2);
    expect(cache.admitOnce('s', '1', 100, 0)).toBe('admitted');
    expect(cache.admitOnce('s', '2', 5000, 0)).toBe('admitted');
    expect(cache.admitOnce('s', '3', 5000, 200)).toBe('admitted'); // 1 had expired: swept
    expect(cache.stats()).toEqual({ size: 2, refusedFull: 0 });
    expect(cache.admitOnce('s', '4', 5000, 300)).toBe('full');
    expect(cache.stats()).toEqual({ size: 2, refusedFull: 1 });
    expect(cache.seen('s', '2', 300)).toBe(true);
    expect(cache.seen('s', '3', 300)).toBe(true);
    // Once they expire there is room again.
    expect(cache.admitOnce('s', '4', 9000, 5000)).toBe('admitted');
  });

  it('a jti as long as a header is tracked like any other', () => {
    const cache = createReplayCache(1);
    expect(cache.admitOnce('s', 'x'.repeat(16_000), 1000, 0)).toBe('admitted');
    expect(cache.seen('s', 'x'.repeat(16_000), 0)).toBe(true);
  });

  it('a size below one is a programming error', () => {
    expect(() => createReplayCache(0)).toThrow(RangeError);
  });
});
