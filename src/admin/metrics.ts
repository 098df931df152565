// Prometheus metrics, prefix spiffe_sidecar_. The names are a contract (README, "Operations"); labels are
// bounded: never a SPIFFE ID, a path or a rule text. The data path reports through the small ProxyMetrics
// interface and never touches prom-client; identity and file reload metrics are read from the sources at
// scrape time; JWT mode's key fetches (JWKS, TokenReview) report through the small KeyFetchMetrics.
// A source that fails at scrape time fails the scrape (500), except the API key gauges (last value kept).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectDefaultMetricsWithoutGc } from './default-metrics.js';
import { chainNotAfter } from '../identity/expiry.js';
import type { IdentitySource } from '../identity/source.js';
import type { JwtAuthenticator } from '../authn/jwt.js';
import { droppedLogLines } from '../log.js';
import type { ProxyMetrics } from '../proxy/proxy-metrics.js';
import type { SharedRateLimitsStats } from '../authz/shared-rate-limits.js';
import type { TokenReviewResult } from '../authn/token-review.js';
import type { JwksFetchResult } from '../identity/remote-jwks.js';
import { RELOAD_OUTCOMES, type ReloadCounts } from '../reloading-file.js';

const PREFIX = 'spiffe_sidecar_';
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface Metrics {
  readonly registry: Registry;
  readonly proxy: ProxyMetrics;
  readonly keyFetches: KeyFetchMetrics;
}

/** JWT mode's key fetches, each reported when it ends. */
export interface KeyFetchMetrics {
  /** `issuer`: the --jwt-issuer name (bounded by the configuration). */
  jwksFetch(issuer: string, result: JwksFetchResult, seconds: number): void;
  tokenReview(result: TokenReviewResult, seconds: number): void;
}

/** A file that reloads (the policy, the API keys, JWT key files), as its metric reads it at scrape time. */
export interface ReloadedFile {
  /** The `file` label: `policy`, `api_keys`, `jwt_bundle`, `jwt_jwks` (several files of one flag add up). */
  readonly label: string;
  stats(): ReloadCounts;
}

/** What else the metrics report on, known once the sidecar is configured. */
export interface MetricSources {
  /** The files reloaded by watch, SIGHUP and --reload-interval, besides the identity's. */
  files?: readonly ReloadedFile[];
  /** The --jwt-issuer names whose keys are fetched (their fetch metrics start at 0). */
  jwksIssuers?: readonly string[];
  /** --k8s-token-review is on (its review metrics start at 0). */
  tokenReview?: boolean;
  /** `--api-keys-file`: its gauges exist only then. */
  apiKeys?: ApiKeyMetricSource;
}

/** The API keys in force, counted at scrape time. */
export interface ApiKeyMetricSource {
  counts(): { listed: number; unused: number } | Promise<{ listed: number; unused: number }>;
  /**
   * A `--workers` worker: its counts are left out of the primary's sum (a key is unused only if unused on
   * every worker), and the primary reports the merged counts itself.
   */
  perWorker?: boolean;
}

export function createMetrics(
  identity: IdentitySource | undefined,
  jwt?: Pick<JwtAuthenticator, 'counters'> & Partial<Pick<JwtAuthenticator, 'jwksFailures'>>,
  /** The readiness /readyz reports (without its upstream probe); defaults to the identity's. */
  ready?: () => boolean,
  /** `--rate-limit-store`: its metrics exist only when a store is configured. */
  rateLimitStore?: { stats(): SharedRateLimitsStats },
  sources: MetricSources = {},
): Metrics {
  const registry = new Registry();
  // The event-loop-lag histogram samples every 100 ms, not prom-client's 10 ms: a sidecar idles in every pod, and
  // 100 wake-ups a second cost an idle one ~1-2% of a core (test/e2e/an-idle-sidecar-sleeps-…). A stall of 100 ms or
  // more is still always seen; shorter ones, in proportion to their length. The histogram's gauges include the
  // interval itself (~0.100 s when idle: README, /metrics); nodejs_eventloop_lag_seconds does not.
  collectDefaultMetricsWithoutGc(registry, 100);
  const handshakes = new Counter({
    name: `${PREFIX}tls_handshakes_total`,
    help: 'Inbound TLS connections by result of peer authentication and bounded reason',
    labelNames: ['result', 'reason'],
    registers: [registry],
  });
  // The data path's metrics (a decision, and a request's count and durations, per request) are plain
  // numbers updated in place and handed to prom-client at scrape time: its inc() and observe() check and
  // hash their labels on every call (~1.3 µs a request, a third of the access line's budget, issue 17).
  // A series appears once counted, as it would with inc() and observe() per request.
  const decisionCounts = new LabelledCounts(['decision', 'reason', 'auth']);
  new Counter({
    name: `${PREFIX}authz_decisions_total`,
    help: 'Authorization decisions by decision, reason and how the caller authenticated',
    labelNames: ['decision', 'reason', 'auth'],
    registers: [registry],
    collect() {
      this.reset();
      decisionCounts.forEach((labels, count) => this.inc(labels, count));
    },
  });
  const requestCounts = new LabelledCounts(['status_class', 'auth']);
  new Counter({
    name: `${PREFIX}requests_total`,
    help: 'Requests answered, by status class and how the caller authenticated (none: answered before that)',
    labelNames: ['status_class', 'auth'],
    registers: [registry],
    collect() {
      this.reset();
      requestCounts.forEach((labels, count) => this.inc(labels, count));
    },
  });
  const duration = new PhaseHistogram(
    `${PREFIX}request_duration_seconds`,
    'Request duration: to the app response headers (phase=upstream) and until the response ended (phase=total)',
    // In the order of their first observation, as prom-client would show them: total comes first.
    ['total', 'upstream'],
    DURATION_BUCKETS,
  );
  registry.registerMetric(duration as unknown as Histogram);
  const active = new Gauge({
    name: `${PREFIX}active_connections`,
    help: 'Open inbound connections',
    registers: [registry],
  });
  const dropped = new Counter({
    name: `${PREFIX}connections_dropped_total`,
    help: 'Inbound connections refused because --max-connections was reached',
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: `${PREFIX}upstream_errors_total`,
    help: 'Requests the app could not answer, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const suppressed = new Counter({
    name: `${PREFIX}log_lines_suppressed_total`,
    help: 'Rejection log lines dropped by their budget (per event, per remote address and over all addresses), by event',
    labelNames: ['event'],
    registers: [registry],
  });
  const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

  // Identity metrics: read from the source at scrape time. Each is a fact of one process: with --workers the
  // primary reports the worst worker's (the earliest expiry, not ready or not connected if one is), never a sum
  // (two expiry timestamps added read as a date decades away, and hid a worker that kept an old SVID).
  new Gauge({
    name: `${PREFIX}svid_expiry_timestamp_seconds`,
    help: 'When our SVID chain expires (earliest notAfter), Unix seconds',
    registers: [registry],
    aggregator: 'min',
    collect() {
      if (
        !identity ||
        identity.status().reason === 'waiting_for_svid' ||
        identity.status().reason === 'workload_api_failed'
      )
        return;
      this.set(chainNotAfter(identity.current()) / 1000);
    },
  });
  new Gauge({
    name: `${PREFIX}ready`,
    help: 'Whether the sidecar is ready to serve (1) or not (0), as /readyz says (without its upstream probe)',
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.set((ready ? ready() : identity?.status().ready) ? 1 : 0);
    },
  });
  let bundleUpdates = 0;
  let lastBundles: unknown;
  const countBundles = () => {
    if (!identity || identity.status().reason === 'waiting_for_svid') return;
    const { bundles } = identity.current();
    const fingerprint = [...bundles.values()]
      .map((b) => `${b.trustDomain}:${b.authorities.map((a) => a.serialNumber).join(',')}`)
      .join(';');
    if (lastBundles !== undefined && fingerprint !== lastBundles) bundleUpdates++;
    lastBundles = fingerprint;
  };
  countBundles();
  identity?.onUpdate(() => countBundles());
  new Counter({
    name: `${PREFIX}log_lines_dropped_total`,
    help: 'Log lines dropped because the reader of stdout fell more than 4 MiB behind',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(droppedLogLines());
    },
  });
  new Counter({
    name: `${PREFIX}bundle_updates_total`,
    help: 'Times the set of trusted authorities changed',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(bundleUpdates);
    },
  });
  new Counter({
    name: `${PREFIX}identity_reloads_total`,
    help: 'Identity updates by source (file, workload_api) and result (updated, unchanged, failed)',
    labelNames: ['source', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      if (!identity) return;
      const stats = identity.stats();
      for (const result of ['updated', 'unchanged', 'failed'] as const)
        this.inc({ source: identity.kind, result }, stats[result]);
    },
  });
  new Gauge({
    name: `${PREFIX}workload_api_connected`,
    help: 'SPIRE mode: 1 while a Workload API stream is open and has delivered',
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.set(identity?.stats().connected ? 1 : 0);
    },
  });
  new Counter({
    name: `${PREFIX}workload_api_reconnects_total`,
    help: 'SPIRE mode: Workload API streams re-opened after they ended',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(identity?.stats().reconnects ?? 0);
    },
  });
  new Counter({
    name: `${PREFIX}jwt_verifications_total`,
    help: 'JWT mode: bearer tokens by result (verified: a signature checked; rejected)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'verified' }, jwt?.counters.verified ?? 0);
      this.inc({ result: 'rejected' }, jwt?.counters.rejected ?? 0);
    },
  });
  new Counter({
    name: `${PREFIX}jwt_cache_hits_total`,
    help: 'JWT mode: requests whose token was already verified (no signature check)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(jwt?.counters.cacheHits ?? 0);
    },
  });
  new Counter({
    name: `${PREFIX}jwks_fetch_failures_total`,
    help: 'JWT mode: issuer key refreshes that kept the last keys, by issuer name and reason (unavailable, invalid, empty)',
    labelNames: ['issuer', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { issuer, reason, count } of jwt?.jwksFailures?.() ?? []) this.inc({ issuer, reason }, count);
    },
  });

  const files = sources.files ?? [];
  new Counter({
    name: `${PREFIX}file_reloads_total`,
    help: 'Reloads of the policy, API keys and JWT key files, by file (policy, api_keys, jwt_bundle, jwt_jwks) and result (updated, unchanged, failed)',
    labelNames: ['file', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const f of files) {
        const stats = f.stats();
        for (const result of RELOAD_OUTCOMES) this.inc({ file: f.label, result }, stats[result]);
      }
    },
  });
  new Counter({
    name: `${PREFIX}token_review_cache_hits_total`,
    help: 'JWT mode, --k8s-token-review: requests whose token was reviewed within the review interval (no new review)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(jwt?.counters.reviewCacheHits ?? 0);
    },
  });
  const keyFetches = registerKeyFetchMetrics(registry, sources);

  if (rateLimitStore) registerRateLimitStoreMetrics(registry, rateLimitStore);
  if (sources.apiKeys) registerApiKeyMetrics(registry, sources.apiKeys);

  const proxy: ProxyMetrics = {
    handshake: (result, reason) => handshakes.inc({ result, reason }),
    decision: (decision, reason, auth) => decisionCounts.add(decision, reason, auth),
    request(status, totalSeconds, upstreamSeconds, auth) {
      requestCounts.add(STATUS_CLASSES[Math.min(4, Math.max(0, Math.floor(status / 100) - 1))], auth);
      duration.observe(0, totalSeconds);
      if (upstreamSeconds !== undefined) duration.observe(1, upstreamSeconds);
    },
    connectionOpened: () => active.inc(),
    connectionClosed: () => active.dec(),
    connectionDropped: () => dropped.inc(),
    upstreamError: (reason) => upstreamErrors.inc({ reason }),
    logLineSuppressed: (event) => suppressed.inc({ event }),
  };
  return { registry, proxy, keyFetches };
}

/** JWKS fetches and TokenReviews: counted by result, timed. */
function registerKeyFetchMetrics(registry: Registry, sources: MetricSources): KeyFetchMetrics {
  const jwksFetches = new Counter({
    name: `${PREFIX}jwks_fetches_total`,
    help: 'JWT mode: issuer key fetches by issuer name and result (updated, unchanged, failed: the last keys kept)',
    labelNames: ['issuer', 'result'],
    registers: [registry],
  });
  const jwksDuration = new Histogram({
    name: `${PREFIX}jwks_fetch_duration_seconds`,
    help: 'JWT mode: how long an issuer key fetch took (OIDC discovery included), by issuer name',
    labelNames: ['issuer'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const reviews = new Counter({
    name: `${PREFIX}token_reviews_total`,
    help: 'JWT mode, --k8s-token-review: Kubernetes TokenReviews by result (authenticated, rejected, error: no answer)',
    labelNames: ['result'],
    registers: [registry],
  });
  const reviewDuration = new Histogram({
    name: `${PREFIX}token_review_duration_seconds`,
    help: 'JWT mode, --k8s-token-review: how long a Kubernetes TokenReview took',
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const jwksResults: readonly JwksFetchResult[] = ['updated', 'unchanged', 'failed'];
  const reviewResults: readonly TokenReviewResult[] = ['authenticated', 'rejected', 'error'];
  // Every known series from 0, so that a rate or an alert on `failed`/`error` has a series before the first.
  for (const issuer of sources.jwksIssuers ?? []) {
    for (const result of jwksResults) jwksFetches.inc({ issuer, result }, 0);
    jwksDuration.zero({ issuer });
  }
  if (sources.tokenReview) for (const result of reviewResults) reviews.inc({ result }, 0);
  return {
    jwksFetch(issuer, result, seconds) {
      jwksFetches.inc({ issuer, result });
      jwksDuration.observe({ issuer }, seconds);
    },
    tokenReview(result, seconds) {
      reviews.inc({ result });
      reviewDuration.observe(seconds);
    },
  };
}

/** `--rate-limit-store`: whether rate limits are counted in the store now, mode changes, store errors. */
function registerRateLimitStoreMetrics(registry: Registry, store: { stats(): SharedRateLimitsStats }): void {
  new Gauge({
    name: `${PREFIX}rate_limit_store_up`,
    help: 'Rate limits are counted in the shared store (1) or by --rate-limit-store-failure (0)',
    registers: [registry],
    // With --workers: 0 if one worker has fallen back (the identity gauges above say why not a sum).
    aggregator: 'min',
    collect() {
      this.set(store.stats().up ? 1 : 0);
    },
  });
  new Counter({
    name: `${PREFIX}rate_limit_store_mode_changes_total`,
    help: 'Times rate limiting changed mode, by the mode entered (shared, local, allow, deny)',
    labelNames: ['mode'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [mode, count] of Object.entries(store.stats().modeChanges)) this.inc({ mode }, count);
    },
  });
  new Counter({
    name: `${PREFIX}rate_limit_store_errors_total`,
    help: 'Rate-limit decisions the store failed to make, by kind (timeout, error)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(store.stats().errors)) this.inc({ kind }, count);
    },
  });
}

/**
 * `--api-keys-file`: keys listed, and keys unused for --api-key-unused-after (not used since the latest of
 * their created= and the process start). Counted at scrape time; a count that cannot be had (a worker that
 * did not answer) keeps the last one rather than failing the scrape.
 */
export function registerApiKeyMetrics(registry: Registry, source: ApiKeyMetricSource): void {
  let last: { listed: number; unused: number } | undefined;
  const counts = async () => {
    try {
      last = await source.counts();
    } catch {
      // Kept: the last counts.
    }
    return last;
  };
  const aggregator = source.perWorker ? 'omit' : 'sum';
  new Gauge({
    name: `${PREFIX}api_keys`,
    help: 'API keys listed in --api-keys-file (expired ones included)',
    registers: [registry],
    aggregator,
    async collect() {
      const c = await counts();
      if (c) this.set(c.listed);
    },
  });
  new Gauge({
    name: `${PREFIX}api_keys_unused`,
    help: 'API keys not used for --api-key-unused-after, counting from the latest of their last use, created= and the process start',
    registers: [registry],
    aggregator,
    async collect() {
      const c = await counts();
      if (c) this.set(c.unused);
    },
  });
}

interface CountCell {
  readonly labels: Record<string, string>;
  count: number;
}

/** A count per label tuple (two or three labels), found by a map lookup per label: no key built, no hashing. */
class LabelledCounts {
  private readonly root = new Map<string, Map<string, Map<string, CountCell>>>();
  /** The tuples in the order first counted (prom-client's order of series). */
  private readonly cells: CountCell[] = [];

  constructor(private readonly names: readonly string[]) {}

  add(a: string, b: string, c = ''): void {
    let byB = this.root.get(a);
    if (byB === undefined) this.root.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (byC === undefined) byB.set(b, (byC = new Map()));
    let cell = byC.get(c);
    if (cell === undefined) {
      const values = [a, b, c];
      cell = { labels: Object.fromEntries(this.names.map((name, i) => [name, values[i]])), count: 0 };
      this.cells.push(cell);
      byC.set(c, cell);
    }
    cell.count++;
  }

  forEach(f: (labels: Record<string, string>, count: number) => void): void {
    for (const { labels, count } of this.cells) f(labels, count);
  }
}

/**
 * A histogram with one label whose values are known (`phase`), observed with an index into them and a few
 * array updates. Registered as a prom-client metric: the registry reads it through get(), which gives what
 * prom-client's Histogram gives (the same series, labels, values and order), for /metrics and for the
 * workers' sum alike.
 */
class PhaseHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Per phase: observations per bucket (the last: above every bound), their sum, their count. */
  private buckets: Float64Array[];
  private sums: number[];
  private counts: number[];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly phases: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    this.buckets = phases.map(() => new Float64Array(bounds.length + 1));
    this.sums = phases.map(() => 0);
    this.counts = phases.map(() => 0);
  }

  /** `phase`: its index. A value that is not a number is not counted (prom-client would throw). */
  observe(phase: number, value: number): void {
    if (!Number.isFinite(value)) return;
    const { bounds } = this;
    let b = 0;
    while (b < bounds.length && !(value <= bounds[b])) b++;
    this.buckets[phase][b]++;
    this.sums[phase] += value;
    this.counts[phase]++;
  }

  reset(): void {
    for (const b of this.buckets) b.fill(0);
    this.sums.fill(0);
    this.counts.fill(0);
  }

  get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    this.phases.forEach((phase, p) => {
      const count = this.counts[p];
      if (count === 0) return;
      let cumulative = 0;
      this.bounds.forEach((le, b) => {
        cumulative += this.buckets[p][b];
        values.push({ labels: { le, phase }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', phase }, value: count, metricName: `${this.name}_bucket` });
      values.push({ labels: { phase }, value: this.sums[p], metricName: `${this.name}_sum` });
      values.push({ labels: { phase }, value: count, metricName: `${this.name}_count` });
    });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }
}
