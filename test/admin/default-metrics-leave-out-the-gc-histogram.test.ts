// prom-client's default metrics are all there but nodejs_gc_duration_seconds, whose 'gc' performance observer
// makes Node allocate per collection what the old generation then keeps until a full GC (issue 17, the soak).
import { PerformanceObserver } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collectDefaultMetricsWithoutGc, GC_METRIC } from '../../src/admin/default-metrics.js';
import { createMetrics } from '../../src/admin/metrics.js';

describe('the default metrics', () => {
  it('are prom-client standard process_* and nodejs_* metrics, without the GC histogram', async () => {
    const observe = PerformanceObserver.prototype.observe;
    const registry = new Registry();
    const disconnected: PerformanceObserver[] = [];
    const disconnect = PerformanceObserver.prototype.disconnect;
    PerformanceObserver.prototype.disconnect = function (this: PerformanceObserver) {
      disconnected.push(this);
      return disconnect.call(this);
    };
    try {
      collectDefaultMetricsWithoutGc(registry, 100);
    } finally {
      PerformanceObserver.prototype.disconnect = disconnect;
    }
    const text = await registry.metrics();
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'process_open_fds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_heap_space_size_used_bytes',
      'nodejs_version_info',
    ])
      expect(text).toContain(`# TYPE ${name} `);
    expect(text).not.toContain(GC_METRIC);
    // prom-client's one 'gc' observer was disconnected, and observe() is Node's own again.
    expect(disconnected).toHaveLength(1);
    expect(PerformanceObserver.prototype.observe).toBe(observe);
    registry.clear();
  });

  it('the sidecar registry has no GC histogram either', async () => {
    const metrics = createMetrics(undefined);
    expect(await metrics.registry.metrics()).not.toContain(GC_METRIC);
    metrics.registry.clear();
  });
});
