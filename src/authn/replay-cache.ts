// The jti replay cache (`--jwt-replay-cache N`): remembers which `(issuer or trust domain, jti)` pairs were
// admitted, each until its token expires, so that a token carrying a jti is admitted once. In memory, per
// replica, and bounded: at N entries the oldest is evicted, and an evicted token could be replayed (so N
// must cover the tokens alive at once; `evictedAlive` counts the evictions that opened that door). Only its
// making can throw (a size below 1, which the flag's parser never lets through).
import { createHash } from 'node:crypto';

export interface ReplayCacheStats {
  /** Entries held now (expired ones included until they are looked at or evicted). */
  readonly size: number;
  /** Entries evicted for room before their token expired: each could have been replayed since. */
  readonly evictedAlive: number;
}

export interface ReplayCache {
  /** Whether this pair was admitted and its token has not expired yet: a read, nothing recorded. */
  seen(scope: string, jti: string, now: number): boolean;
  /**
   * Records the pair until `expiresAt` (ms) and returns true, or returns false when it is already held:
   * the check and the record are one step, so of two presentations racing only one is admitted.
   */
  admitOnce(scope: string, jti: string, expiresAt: number, now: number): boolean;
  stats(): ReplayCacheStats;
}

/**
 * A replay cache of at most `maxEntries` pairs. Pairs are hashed: a jti is the caller's string (up to a
 * whole header long), so the memory per entry is fixed whatever the callers send.
 */
export function createReplayCache(maxEntries: number): ReplayCache {
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('a replay cache holds 1 entry or more');
  /** Key → expiry in ms, oldest first (a Map keeps insertion order). */
  const entries = new Map<string, number>();
  let evictedAlive = 0;
  // NUL cannot occur in an issuer URL or a trust domain: scope and jti cannot run into each other.
  const keyOf = (scope: string, jti: string) => createHash('sha256').update(`${scope}\0${jti}`).digest('base64url');
  const live = (key: string, now: number): boolean => {
    const expiresAt = entries.get(key);
    if (expiresAt === undefined) return false;
    if (now < expiresAt) return true;
    entries.delete(key);
    return false;
  };
  return {
    seen: (scope, jti, now) => live(keyOf(scope, jti), now),
    admitOnce(scope, jti, expiresAt, now) {
      const key = keyOf(scope, jti);
      if (live(key, now)) return false;
      while (entries.size >= maxEntries) {
        const [oldest, oldestExpiry] = entries.entries().next().value as [string, number];
        entries.delete(oldest);
        if (now < oldestExpiry) evictedAlive++;
      }
      entries.set(key, expiresAt);
      return true;
    },
    stats: () => ({ size: entries.size, evictedAlive }),
  };
}
