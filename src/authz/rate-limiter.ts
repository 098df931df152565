// Token buckets per caller: `requests` tokens refill over `perMs`, up to `burst`. Memory is bounded: at
// most `maxKeys` buckets, the least recently used dropped first (a dropped caller starts again with a
// full bucket, which only ever errs by one burst).

export interface RateLimit {
  requests: number;
  perMs: number;
  burst: number;
}

export type Admission = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

export const DEFAULT_MAX_KEYS = 10_000;

export class RateLimiter {
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
