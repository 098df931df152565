// The budget of rejection log lines: a misbehaving client (a reconnect loop with a bad certificate, a port
// scanner) must not turn each of its attempts into a log line. Each event has a token bucket per logger (one
// per sidecar process): a burst, then a steady rate; the rest are dropped and counted, and the next line of
// that event that passes says how many were dropped since (`suppressed`). Access lines (`authz`, allowed or
// denied: the audit trail of authenticated callers) are never rate limited; only the events below are.
import type { Logger } from '../log.js';
import type { ProxyMetrics } from './proxy-metrics.js';

/** Lines of one event that may be written at once after a quiet spell. */
export const REJECTION_LINES_BURST = 20;
/** Lines of one event per second, steadily, once the burst is spent. */
export const REJECTION_LINES_PER_SECOND = 10;

/** The events whose lines are rate limited: what a peer that has not authenticated can make us write. */
export type RateLimitedEvent = 'peer_rejected' | 'tls_rejected' | 'request_refused' | 'connection_dropped';

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
  /** Lines dropped since the last one that passed. */
  dropped: number;
}

const budgets = new WeakMap<Logger, Map<RateLimitedEvent, Bucket>>();

/**
 * Whether a line of `event` may be written now: -1 if not (it is counted as suppressed, here and in the
 * metric), else how many lines of that event were dropped since the last one written (0: none), for the
 * line's `suppressed` field. Ask before building the line: a dropped line costs nothing more.
 */
export function rejectionLine(
  log: Logger,
  event: RateLimitedEvent,
  metrics: ProxyMetrics,
  now: number = performance.now(),
): number {
  let buckets = budgets.get(log);
  if (!buckets) {
    buckets = new Map();
    budgets.set(log, buckets);
  }
  let bucket = buckets.get(event);
  if (!bucket) {
    bucket = { tokens: REJECTION_LINES_BURST, at: now, dropped: 0 };
    buckets.set(event, bucket);
  } else if (now > bucket.at) {
    bucket.tokens = Math.min(
      REJECTION_LINES_BURST,
      bucket.tokens + ((now - bucket.at) * REJECTION_LINES_PER_SECOND) / 1000,
    );
    bucket.at = now;
  }
  if (bucket.tokens < 1) {
    bucket.dropped++;
    metrics.logLineSuppressed?.(event);
    return -1;
  }
  bucket.tokens -= 1;
  const dropped = bucket.dropped;
  bucket.dropped = 0;
  return dropped;
}

/** The `suppressed` field of a line that passed: absent when nothing was dropped. */
export function suppressedField(dropped: number): number | undefined {
  return dropped > 0 ? dropped : undefined;
}
