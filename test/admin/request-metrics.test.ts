// The data path's metrics (decisions, requests, their durations) are counted in plain numbers and handed to
// prom-client at scrape time (issue 17: prom-client's per-call label checks cost a third of the access
// line's budget). /metrics shows exactly what prom-client's own Counter and Histogram show for the same calls.
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/admin/metrics.js';

const SERIES = /^spiffe_sidecar_(authz_decisions_total|requests_total|request_duration_seconds)/;

/** The lines of the three metrics (help, type and samples), in order. */
function lines(text: string): string[] {
  return text.split('\n').filter((line) => SERIES.test(line.replace(/^# (HELP|TYPE) /, '')));
}

describe('request metrics', () => {
  it("/metrics reads as prom-client's Counter and Histogram would have it, series in first-counted order", async () => {
    const { registry, proxy } = createMetrics(undefined);
    const expected = new Registry();
    const decisions = new Counter({
      name: 'spiffe_sidecar_authz_decisions_total',
      help: 'Authorization decisions by decision, reason and how the caller authenticated',
      labelNames: ['decision', 'reason', 'auth'],
      registers: [expected],
    });
    const requests = new Counter({
      name: 'spiffe_sidecar_requests_total',
      help: 'Requests answered, by status class and how the caller authenticated (none: answered before that)',
      labelNames: ['status_class', 'auth'],
      registers: [expected],
    });
    const duration = new Histogram({
      name: 'spiffe_sidecar_request_duration_seconds',
      help: 'Request duration: to the app response headers (phase=upstream) and until the response ended (phase=total)',
      labelNames: ['phase'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [expected],
    });
    expect(lines(await registry.metrics())).toEqual([
      '# HELP spiffe_sidecar_authz_decisions_total Authorization decisions by decision, reason and how the caller authenticated',
      '# TYPE spiffe_sidecar_authz_decisions_total counter',
      '# HELP spiffe_sidecar_requests_total Requests answered, by status class and how the caller authenticated (none: answered before that)',
      '# TYPE spiffe_sidecar_requests_total counter',
      '# HELP spiffe_sidecar_request_duration_seconds Request duration: to the app response headers (phase=upstream) and until the response ended (phase=total)',
      '# TYPE spiffe_sidecar_request_duration_seconds histogram',
    ]);
    const seconds = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 30, 31, 12, 1e-7, 0.0025];
    for (let i = 0; i < 500; i++) {
      const decision = (['allow', 'deny', 'dry_run_deny'] as const)[i % 3];
      const reason = decision === 'allow' ? 'rule_matched' : (['no_matching_rule', 'rate_limited'] as const)[i % 2];
      const auth = (['mtls', 'oidc', 'api-key'] as const)[(i % 5) % 3];
      proxy.decision(decision, reason, auth);
      decisions.inc({ decision, reason, auth });
      const status = [200, 404, 503, 101, 302, 0, 700][i % 7];
      const total = seconds[i % 10];
      const upstream = i % 4 ? seconds[(i * 7) % 10] : undefined;
      const label = (['mtls', 'none', 'oidc'] as const)[i % 3];
      proxy.request(status, total, upstream, label);
      requests.inc({
        status_class: ['1xx', '2xx', '3xx', '4xx', '5xx'][Math.min(4, Math.max(0, Math.floor(status / 100) - 1))],
        auth: label,
      });
      duration.observe({ phase: 'total' }, total);
      if (upstream !== undefined) duration.observe({ phase: 'upstream' }, upstream);
      if (i === 0 || i === 499) expect(lines(await registry.metrics())).toEqual(lines(await expected.metrics()));
    }
    // Scraped twice: the same counts (nothing is counted twice).
    expect(lines(await registry.metrics())).toEqual(lines(await expected.metrics()));
    expect(lines(await registry.metrics())).toContain(
      'spiffe_sidecar_request_duration_seconds_bucket{le="+Inf",phase="total"} 500',
    );
  });
});
