// prom-client's standard process_* and nodejs_* metrics, less one: nodejs_gc_duration_seconds. To time each
// garbage collection, prom-client observes Node's 'gc' performance entries, and for every entry Node builds
// deprecated accessors (DEP0152: two closures per detail field, a Map, the entry). Under load the young
// generation is collected ~20 times a second, those objects outlive it and are promoted, and the old generation
// grew by ~8 MB a minute until a full GC, which V8 puts off for hundreds of MB (issue 17: the soak; without the
// observer the same load holds its RSS flat). prom-client has no switch for one default metric, so its observer
// is disconnected as soon as it is made, and the histogram it would fill is removed.
import { PerformanceObserver } from 'node:perf_hooks';
import { collectDefaultMetrics, type Registry } from 'prom-client';

export const GC_METRIC = 'nodejs_gc_duration_seconds';

export function collectDefaultMetricsWithoutGc(registry: Registry, eventLoopMonitoringPrecision: number): void {
  const observe = PerformanceObserver.prototype.observe;
  const gcObservers: PerformanceObserver[] = [];
  PerformanceObserver.prototype.observe = function (this: PerformanceObserver, options) {
    const types: readonly string[] = 'entryTypes' in options ? options.entryTypes : [options.type];
    if (types.includes('gc')) gcObservers.push(this);
    return observe.call(this, options);
  };
  try {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision });
  } finally {
    PerformanceObserver.prototype.observe = observe;
  }
  for (const observer of gcObservers) observer.disconnect();
  registry.removeSingleMetric(GC_METRIC);
}
