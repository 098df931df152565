// Rate limits counted in a shared store (`--rate-limit-store`), and what happens while the store cannot
// count (`--rate-limit-store-failure`): `local` counts in this process's own buckets with the limit
// divided by the number of counting processes, `allow` lets requests through uncounted, `deny` refuses
// them (503). The mode changes on events, never per request: the first store error or timeout switches to
// the failure mode (one log line, a metric); a probe every second, and every reconnection, switches back
// once the store answers. While failing, no request asks the store: a slow store costs one timeout, once.
import type { Logger } from '../log.js';
import { type Admission, type RateLimit, RateLimiter, type RuleLimiter } from './rate-limiter.js';

export type StoreFailureMode = 'local' | 'allow' | 'deny';

/** What the shared limits need of a store (RedisRateStore is one). */
export interface RateStore {
  take(key: string, limit: RateLimit): Promise<Admission>;
  probe(): Promise<void>;
  onReady(listener: () => void): void;
  onError(listener: (err: Error) => void): void;
  close(): Promise<void>;
}

export interface SharedRateLimitsOptions {
  store: RateStore;
  failure: StoreFailureMode;
  /** `local` divides each limit by this: replicas (`--rate-limit-replicas`) × workers. */
  countingProcesses: number;
  /** For the log lines: where the store is, without a password. */
  storeName: string;
  /**
   * Whose buckets these are: our own SPIFFE ID (replicas of one service share it; another service using the
   * same store and rule names does not). Read at each decision: it is known only once the SVID is.
   */
  scope?: () => string;
  log: Logger;
  probeIntervalMs?: number;
}

/** For the metrics: read at scrape time. */
export interface SharedRateLimitsStats {
  up: boolean;
  /** Times the mode changed, by the mode entered. */
  modeChanges: Readonly<Record<'shared' | StoreFailureMode, number>>;
  errors: Readonly<Record<'timeout' | 'error', number>>;
}

const PROBE_INTERVAL_MS = 1000;
/** Fallback bucket sets kept (one per rule name and limit ever seen): reloads that change limits add more. */
const MAX_FALLBACK_RULES = 1000;
/** Keys of ours in a store other programs may share. */
const KEY_PREFIX = 'spiffe-sidecar:rl:';

/** What a `deny` refusal tells the caller: try again in a second. */
const UNAVAILABLE: Admission = { ok: false, retryAfterMs: 1000, unavailable: true };

function isTimeout(err: Error): boolean {
  return /timed out/i.test(err.message);
}

export class SharedRateLimits {
  private up = false;
  private probing: NodeJS.Timeout | undefined;
  private probeInFlight = false;
  private closed = false;
  /** The failure mode's own buckets, per rule name and limit (so they survive a reload like the store's). */
  private readonly fallbacks = new Map<string, RateLimiter>();
  private readonly modeChanges = { shared: 0, local: 0, allow: 0, deny: 0 };
  private readonly errors = { timeout: 0, error: 0 };
  private lastConnectionError: string | undefined;

  constructor(private readonly options: SharedRateLimitsOptions) {
    const { store, log, failure, storeName } = options;
    log.info(
      { event: 'rate_limit_store', mode: failure, store: storeName, reason: 'connecting' },
      `rate limits: connecting to ${storeName}; until it answers, --rate-limit-store-failure ${failure} applies`,
    );
    store.onReady(() => this.probe());
    store.onError((err) => {
      // A broken connection is an outage now, not at the next rate-limited request: the log line and
      // spiffe_sidecar_rate_limit_store_up say so while no such request arrives.
      this.switchToFailure(err);
      // The client reconnects on its own: one debug line per distinct error, not one per attempt.
      if (err.message === this.lastConnectionError) return;
      this.lastConnectionError = err.message;
      log.debug({ event: 'rate_limit_store_error', error: err.message }, 'rate limit store connection error');
    });
    this.startProbing();
  }

  /** The limiter a rule uses: its buckets are keyed by rule name and limit, so a reload keeps them. */
  limiterFor(rule: string, limit: RateLimit): RuleLimiter {
    const scope = this.options.scope ?? (() => '');
    let keyedScope: string | undefined;
    let prefix = '';
    return {
      limit,
      take: (caller, now) => {
        if (!this.up) return this.whileFailing(rule, limit, caller, now);
        if (scope() !== keyedScope) {
          keyedScope = scope();
          prefix = `${KEY_PREFIX}${JSON.stringify([keyedScope, rule, limit.requests, limit.perMs, limit.burst])}:`;
        }
        return this.options.store.take(prefix + caller, limit).catch((err: Error) => {
          this.failed(err);
          return this.whileFailing(rule, limit, caller, now);
        });
      },
    };
  }

  stats(): SharedRateLimitsStats {
    return { up: this.up, modeChanges: { ...this.modeChanges }, errors: { ...this.errors } };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probing);
    await this.options.store.close();
  }

  private whileFailing(rule: string, limit: RateLimit, caller: string, now: number): Admission {
    const { failure, countingProcesses } = this.options;
    if (failure === 'allow') return { ok: true };
    if (failure === 'deny') return UNAVAILABLE;
    const key = JSON.stringify([rule, limit.requests, limit.perMs, limit.burst]);
    let local = this.fallbacks.get(key);
    if (!local) {
      // Each process admits its share, so the fleet together stays near the limit (a burst below 1
      // would admit nobody).
      local = new RateLimiter({
        requests: limit.requests / countingProcesses,
        perMs: limit.perMs,
        burst: Math.max(1, limit.burst / countingProcesses),
      });
      if (this.fallbacks.size >= MAX_FALLBACK_RULES)
        this.fallbacks.delete(this.fallbacks.keys().next().value as string);
      this.fallbacks.set(key, local);
    }
    return local.take(caller, now);
  }

  /** A decision the store failed to make: counted, and the failure mode applies from now on. */
  private failed(err: Error): void {
    this.errors[isTimeout(err) ? 'timeout' : 'error']++;
    this.switchToFailure(err);
  }

  private switchToFailure(err: Error): void {
    if (!this.up || this.closed) return;
    this.up = false;
    const { failure, log } = this.options;
    this.modeChanges[failure]++;
    log.warn(
      { event: 'rate_limit_store', mode: failure, reason: isTimeout(err) ? 'timeout' : 'error', error: err.message },
      `rate limit store unavailable: --rate-limit-store-failure ${failure} applies until it answers again`,
    );
    this.startProbing();
  }

  private startProbing(): void {
    if (this.probing || this.closed) return;
    this.probing = setInterval(() => this.probe(), this.options.probeIntervalMs ?? PROBE_INTERVAL_MS).unref();
  }

  /** Back to shared counting once the store answers a PING within the timeout. */
  private probe(): void {
    if (this.up || this.probeInFlight || this.closed) return;
    this.probeInFlight = true;
    this.options.store.probe().then(
      () => {
        this.probeInFlight = false;
        if (this.up || this.closed) return;
        this.up = true;
        clearInterval(this.probing);
        this.probing = undefined;
        this.lastConnectionError = undefined;
        this.modeChanges.shared++;
        this.options.log.info(
          { event: 'rate_limit_store', mode: 'shared', store: this.options.storeName },
          'rate limits: counting in the shared store',
        );
      },
      () => {
        this.probeInFlight = false;
      },
    );
  }
}
