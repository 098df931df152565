// The jti replay cache (`--jwt-replay-cache N`): remembers which `(issuer or trust domain, jti)` pairs were
// admitted, each until its token expires, so that a token carrying a jti is admitted once. In memory, per
// replica, and bounded: at N entries the expired ones are swept out, and when all N are still alive a new
// one-time token is refused (`full`) rather than a live entry evicted: an evicted jti could be replayed, and
// anyone able to get N tokens could evict a victim's. N must cover the tokens alive at once. Only its making
// can throw (a size below 1, which the flag's parser never lets through).
import { createHash } from 'node:crypto';

export interface ReplayCacheStats {
  /** Entries held now (expired ones included until they are looked at or evicted). */
  readonly size: number;
  /** One-time tokens refused because every entry was still alive (the cache is too small for the load). */
  readonly refusedFull: number;
}

export interface ReplayCache {
  /** Whether this pair was admitted and its token has not expired yet: a read, nothing recorded. */
  seen(scope: string, jti: string, now: number): boolean;
  /**
   * Records the pair until `expiresAt` (ms): `admitted`; `replayed` when it is already held (the check and the
   * record are one step, so of two presentations racing only one is admitted); `full` when N live pairs are
   * held (fail closed: nothing is evicted alive).
   */
  admitOnce(scope: string, jti: string, expiresAt: number, now: number): 'admitted' | 'replayed' | 'full';
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
  let refusedFull = 0;
  /** When the last sweep found nothing to remove: a full cache of live entries is not swept on every token. */
  let fullSince: number | undefined;
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
      if (live(key, now)) return 'replayed';
      if (entries.size >= maxEntries && (fullSince === undefined || now - fullSince >= 1000)) {
        // At most one sweep a second while full: removing what expired is O(N).
        for (const [k, until] of entries) if (now >= until) entries.delete(k);
        fullSince = entries.size >= maxEntries ? now : undefined;
      }
      if (entries.size >= maxEntries) {
        refusedFull++;
        return 'full';
      }
      entries.set(key, expiresAt);
      return 'admitted';
    },
    stats: () => ({ size: entries.size, refusedFull }),
  };
}
