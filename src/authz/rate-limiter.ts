// Token buckets per caller: `requests` tokens refill over `perMs`, up to `burst`. Memory is bounded: at
// most `maxKeys` buckets, the least recently used dropped first (a dropped caller starts again with a
// full bucket, which only ever errs by one burst).

export interface RateLimit {
  requests: number;
  perMs: number;
  burst: number;
}

/**
 * A take's answer. `store_unavailable`: the shared store could not count this request and
 * `--rate-limit-store-failure deny` refuses it (see shared-rate-limits.ts).
 */
export type Admission = { ok: true } | { ok: false; retryAfterMs: number; unavailable?: true };

/**
 * What a rate-limited rule holds: local buckets (RateLimiter, answers at once) or buckets in a shared store
 * (a promise: one round trip). `limit` decides whether a reloaded rule keeps its buckets.
 */
export interface RuleLimiter {
  readonly limit: RateLimit;
  take(caller: string, now: number): Admission | Promise<Admission>;
}

/** Whether two limits count the same way: a reloaded rule with the same name and limit keeps its buckets. */
export function sameLimit(a: RateLimit, b: RateLimit): boolean {
  return a.requests === b.requests && a.perMs === b.perMs && a.burst === b.burst;
}

interface Bucket {
  tokens: number;
  at: number;
}

export const DEFAULT_MAX_KEYS = 10_000;

export class RateLimiter implements RuleLimiter {
  /** Map order is recency order: a touched bucket is re-inserted at the end. */
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: RateLimit,
    private readonly maxKeys = DEFAULT_MAX_KEYS,
  ) {}

  take(key: string, now: number): Admission {
    const { requests, perMs, burst } = this.limit;
    const ratePerMs = requests / perMs;
    const previous = this.buckets.get(key);
    const bucket = previous
      ? // A wall clock stepped back must not cost a caller its tokens: elapsed time is never negative.
        { tokens: Math.min(burst, previous.tokens + Math.max(0, now - previous.at) * ratePerMs), at: now }
      : { tokens: burst, at: now };
    if (previous) this.buckets.delete(key);
    else if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / ratePerMs) };
  }

  get size(): number {
    return this.buckets.size;
  }
}
