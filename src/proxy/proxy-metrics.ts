// What the data path reports, as a small interface with no dependency: the proxies never touch
// prom-client, and prom-client (50 ms and several MB to load) is loaded only after the sidecar is ready.
import type { AuthMethod } from '../authn/identity.js';

/** How a request's caller authenticated, as a metric label: none when it was answered before that. */
export type AuthLabel = AuthMethod | 'none';

/** What the proxy reports. */
export interface ProxyMetrics {
  handshake(result: 'success' | 'failure', reason: string): void;
  decision(decision: 'allow' | 'deny' | 'dry_run_deny', reason: string, auth: AuthMethod): void;
  /** `upstreamSeconds`: time to the app's response headers, when the app was reached. */
  request(status: number, totalSeconds: number, upstreamSeconds: number | undefined, auth: AuthLabel): void;
  connectionOpened(): void;
  connectionClosed(): void;
  connectionDropped(): void;
  upstreamError(reason: string): void;
  /**
   * A rejection log line dropped by the budget of its event (rejection-log.ts), one call per line. Optional:
   * `spiffe_sidecar_log_lines_suppressed_total{event}`.
   */
  logLineSuppressed?(event: string): void;
}

export const noMetrics: ProxyMetrics = {
  handshake() {},
  decision() {},
  request() {},
  connectionOpened() {},
  connectionClosed() {},
  connectionDropped() {},
  upstreamError() {},
  logLineSuppressed() {},
};

/** At most this many calls wait for the real metrics; more are dropped (only if prom-client never loads). */
const MAX_PENDING = 100_000;

/**
 * Forwards to the real metrics once they are attached; until then, remembers the calls (startup is a
 * few dozen milliseconds, so a handful of calls at most) and replays them in order.
 */
export class DeferredMetrics implements ProxyMetrics {
  private target: ProxyMetrics | undefined;
  private pending: ((m: ProxyMetrics) => void)[] = [];

  attach(target: ProxyMetrics): void {
    this.target = target;
    for (const call of this.pending) call(target);
    this.pending = [];
  }

  private call(f: (m: ProxyMetrics) => void): void {
    if (this.target) f(this.target);
    else if (this.pending.length < MAX_PENDING) this.pending.push(f);
  }

  handshake(result: 'success' | 'failure', reason: string): void {
    this.call((m) => m.handshake(result, reason));
  }
  decision(decision: 'allow' | 'deny' | 'dry_run_deny', reason: string, auth: AuthMethod): void {
    this.call((m) => m.decision(decision, reason, auth));
  }
  request(status: number, totalSeconds: number, upstreamSeconds: number | undefined, auth: AuthLabel): void {
    this.call((m) => m.request(status, totalSeconds, upstreamSeconds, auth));
  }
  connectionOpened(): void {
    this.call((m) => m.connectionOpened());
  }
  connectionClosed(): void {
    this.call((m) => m.connectionClosed());
  }
  connectionDropped(): void {
    this.call((m) => m.connectionDropped());
  }
  upstreamError(reason: string): void {
    this.call((m) => m.upstreamError(reason));
  }
  logLineSuppressed(event: string): void {
    this.call((m) => m.logLineSuppressed?.(event));
  }
}
