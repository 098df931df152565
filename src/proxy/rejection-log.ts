// The budget of rejection log lines: a misbehaving client (a reconnect loop with a bad certificate, a port
// scanner) must not turn each of its attempts into a log line. Each event has a token bucket per remote
// address and logger (one per sidecar process): a burst, then a steady rate, so one noisy peer cannot use up
// the lines another peer's rejection needs; and a ceiling per event over all addresses, so many addresses
// cannot flood the log either. The rest are dropped and counted, and the next line of that event from that
// address that passes says how many were dropped since (`suppressed`). Access lines (`authz`, allowed or
// denied: the audit trail of authenticated callers) are never rate limited; only the events below are.
import type { Logger } from '../log.js';
import type { ProxyMetrics } from './proxy-metrics.js';

/** Lines of one event that may be written at once after a quiet spell. */
export const REJECTION_LINES_BURST = 20;
/** Lines of one event per second, steadily, once the burst is spent. */
export const REJECTION_LINES_PER_SECOND = 10;
/** Over all remote addresses: lines of one event at once, then per second. */
export const REJECTION_LINES_BURST_ALL = 100;
export const REJECTION_LINES_PER_SECOND_ALL = 50;
/** Remote addresses whose buckets are kept per event (least recently seen dropped first). */
const MAX_REMOTES = 1024;

/** The events whose lines are rate limited: what a peer that has not authenticated can make us write. */
export type RateLimitedEvent = 'peer_rejected' | 'tls_rejected' | 'request_refused' | 'connection_dropped';

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
  /** Lines dropped since the last one that passed. */
  dropped: number;
}

interface EventBudget {
  all: Bucket;
  /** Per remote address; Map order is recency order (a touched bucket is re-inserted at the end). */
  byRemote: Map<string, Bucket>;
}

const budgets = new WeakMap<Logger, Map<RateLimitedEvent, EventBudget>>();

function refill(bucket: Bucket, now: number, burst: number, perSecond: number): void {
  if (now <= bucket.at) return;
  bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * perSecond) / 1000);
  bucket.at = now;
}

/**
 * Whether a line of `event` (from `remote`) may be written now: -1 if not (it is counted as suppressed,
 * here and in the metric), else how many lines of that event from that address were dropped since the last
 * one written (0: none), for the line's `suppressed` field. Ask before building the line: a dropped line
 * costs nothing more.
 */
export function rejectionLine(
  log: Logger,
  event: RateLimitedEvent,
  metrics: ProxyMetrics,
  now: number = performance.now(),
  remote = '',
): number {
  let events = budgets.get(log);
  if (!events) {
    events = new Map();
    budgets.set(log, events);
  }
  let budget = events.get(event);
  if (!budget) {
    budget = { all: { tokens: REJECTION_LINES_BURST_ALL, at: now, dropped: 0 }, byRemote: new Map() };
    events.set(event, budget);
  }
  refill(budget.all, now, REJECTION_LINES_BURST_ALL, REJECTION_LINES_PER_SECOND_ALL);
  let bucket = budget.byRemote.get(remote);
  if (bucket) {
    budget.byRemote.delete(remote);
    refill(bucket, now, REJECTION_LINES_BURST, REJECTION_LINES_PER_SECOND);
  } else {
    if (budget.byRemote.size >= MAX_REMOTES) budget.byRemote.delete(budget.byRemote.keys().next().value as string);
    bucket = { tokens: REJECTION_LINES_BURST, at: now, dropped: 0 };
  }
  budget.byRemote.set(remote, bucket);
  if (bucket.tokens < 1 || budget.all.tokens < 1) {
    bucket.dropped++;
    metrics.logLineSuppressed?.(event);
    return -1;
  }
  bucket.tokens -= 1;
  budget.all.tokens -= 1;
  const dropped = bucket.dropped;
  bucket.dropped = 0;
  return dropped;
}

/** The `suppressed` field of a line that passed: absent when nothing was dropped. */
export function suppressedField(dropped: number): number | undefined {
  return dropped > 0 ? dropped : undefined;
}
