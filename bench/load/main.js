// The load generator process (forked by the harness, so that its CPU is never counted as the proxy's).
// Protocol over the IPC channel:
//   parent → { id, specs: LoadSpec[] }              run these phases concurrently
//   child  → { id, event: 'window-start' | 'window-end' }   (of the first spec: the parent samples CPU then)
//   child  → { id, results: Summary[], cpuMs }      one summary per spec; cpuMs: this process's CPU meanwhile
import process from 'node:process';
import { percentile } from '../lib/stats.js';
import { runLoad } from './engine.js';

/** @param {import('./engine.js').LoadResult} result */
function summarize(result) {
  const { latenciesMs, ...rest } = result;
  return {
    ...rest,
    latency: {
      samples: latenciesMs.length,
      p50: percentile(latenciesMs, 50),
      p90: percentile(latenciesMs, 90),
      p99: percentile(latenciesMs, 99),
      max: percentile(latenciesMs, 100),
    },
  };
}

process.on('message', (/** @type {{ id: number, specs: import('./engine.js').LoadSpec[] }} */ message) => {
  const { id, specs } = message;
  const cpuBefore = process.cpuUsage();
  Promise.all(
    specs.map((spec, i) => runLoad(spec, i === 0 ? (event) => process.send?.({ id, event }) : undefined)),
  ).then(
    (results) => {
      const cpu = process.cpuUsage(cpuBefore);
      process.send?.({ id, results: results.map(summarize), cpuMs: (cpu.user + cpu.system) / 1000 });
    },
    (err) => process.send?.({ id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});

process.on('disconnect', () => process.exit(0));
