// Two running rows measured in short keep-alive windows, back to back and alternately (A B, B A, A B, ...),
// the ratio of their CPU per request taken within each adjacent pair, then the median. For a difference
// smaller than the noise between the rounds' windows of two rows (several seconds apart, with other rows'
// phases between them; the same sidecar's CPU per request moves by up to ±30% from one window to another on the
// shared machine): the per-request audit line is such a difference (a few µs of ~45). Adjacent windows see
// nearly the same machine, and the alternating order cancels a steady drift. Short windows leave out work a
// row's requests cause after its window ends (a late GC); at ~20 scavenges a second, little of it.
import { setTimeout as delay } from 'node:timers/promises';
import { measurePhase } from './measure.js';
import { median } from './stats.js';

/**
 * @typedef {object} PairResult
 * @property {string} a the row whose CPU is the denominator
 * @property {string} b
 * @property {number} windowMs each window's measured part (after its warm-up)
 * @property {number[]} ratios b's CPU per request over a's, one per pair
 * @property {number} median
 * @property {number[]} aCpuUs a's CPU per request in each of its windows, µs
 * @property {number[]} bCpuUs
 * @property {number} errors failed requests in all windows (any makes the result invalid)
 * @property {Record<string, number>} completed requests each row completed in its windows, warm-ups included
 */

/**
 * @param {object} input
 * @param {import('./loadgen.js').LoadGenerator} input.loadgen
 * @param {import('./options.js').BenchOptions} input.options
 * @param {{ key: string, started: import('./rows.js').Started }} input.a
 * @param {{ key: string, started: import('./rows.js').Started }} input.b
 * @param {number} input.appPid
 * @param {number} input.pairs
 * @returns {Promise<PairResult>}
 */
export async function measurePair({ loadgen, options, a, b, appPid, pairs }) {
  const windowMs = 1500;
  const window = async (/** @type {import('./rows.js').Started} */ started) => {
    const phase = await measurePhase(
      loadgen,
      {
        mode: 'keepalive',
        target: started.target,
        connections: options.connections,
        warmupMs: 500,
        durationMs: windowMs,
      },
      { pid: started.pid, appPid },
    );
    await delay(100);
    return phase;
  };
  /** @type {number[]} */
  const ratios = [];
  /** @type {number[]} */
  const aCpuUs = [];
  /** @type {number[]} */
  const bCpuUs = [];
  let errors = 0;
  /** @type {Record<string, number>} */
  const completed = { [a.key]: 0, [b.key]: 0 };
  for (let i = 0; i < pairs; i++) {
    const first = i % 2 === 0 ? a : b;
    const second = i % 2 === 0 ? b : a;
    const one = await window(first.started);
    const two = await window(second.started);
    errors += one.errors + two.errors;
    completed[first.key] += one.completed;
    completed[second.key] += two.completed;
    const [ra, rb] = i % 2 === 0 ? [one, two] : [two, one];
    if (ra.cpuUsPerRequest === undefined || rb.cpuUsPerRequest === undefined) continue;
    aCpuUs.push(ra.cpuUsPerRequest);
    bCpuUs.push(rb.cpuUsPerRequest);
    ratios.push(rb.cpuUsPerRequest / ra.cpuUsPerRequest);
  }
  return { a: a.key, b: b.key, windowMs, ratios, median: median(ratios) ?? NaN, aCpuUs, bCpuUs, errors, completed };
}
