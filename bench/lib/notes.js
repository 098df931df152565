// Observations printed under the table: how many audit lines the sidecar wrote per request, whether nginx
// was saturated, and how busy the shared machine was with other work during the windows.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { median } from './stats.js';

/**
 * @param {ReturnType<typeof import('./summary.js').summarize>} rows
 * @param {string} logDir where each sidecar row's output went (`<key>.log`)
 * @param {import('./paired.js').PairResult} [pair] the paired windows, whose requests are in two rows' logs too
 * @returns {Promise<string[]>}
 */
export async function runNotes(rows, logDir, pair) {
  const notes = [];
  for (const r of rows) {
    if (r.kind !== 'sidecar' || !r.measured) continue;
    const completed =
      r.rounds.reduce(
        (sum, x) =>
          sum +
          (x ? x.keepAlive.completed + x.newConn.completed + x.latency.completed + (x.resumed?.completed ?? 0) : 0),
        0,
      ) + (pair?.completed[r.key] ?? 0);
    const logFile = join(logDir, `${r.key}.log`);
    const log = existsSync(logFile) ? await readFile(logFile, 'utf8') : '';
    const authz = log.split('"event":"authz"').length - 1;
    /** @type {any} */ (r).logLines = { total: log.split('\n').length - 1, authz, perRequest: authz / completed };
    notes.push(
      `${r.key}: ${authz.toLocaleString('en-US')} audit log lines (\`authz\`, info level) for ` +
        `${completed.toLocaleString('en-US')} requests (${(authz / completed).toFixed(2)} per request).`,
    );
  }
  const nginx = rows.find((r) => r.key === 'nginx');
  if (nginx?.measured && nginx.keepAlive.cores !== undefined && nginx.keepAlive.cores < 0.9) {
    notes.push(
      `nginx used ${nginx.keepAlive.cores.toFixed(2)} cores at ` +
        `${Math.round(nginx.keepAlive.rps ?? 0).toLocaleString('en-US')} keep-alive req/s (load generator ` +
        `${(nginx.keepAlive.loadgenCores ?? 0).toFixed(2)} cores): it is not saturated, its req/s is bounded by the ` +
        'load generator and the app sharing the cores, so CPU per request is the fairer comparison with it.',
    );
  }
  const foreign = median(
    rows.flatMap((r) => r.rounds.flatMap((x) => (x ? [x.keepAlive.foreignCores, x.newConn.foreignCores] : []))),
  );
  if (foreign !== undefined && foreign > 0.1) {
    notes.push(
      `Noise: processes outside the bench used ${foreign.toFixed(2)} cores (median over the loaded windows) of ` +
        'this shared machine: absolute numbers are low; the ratios within rounds are the robust part.',
    );
  }
  if (pair && pair.ratios.length > 0) {
    const us = (/** @type {number[]} */ v) => v.map((x) => x.toFixed(0)).join('/');
    notes.push(
      `Audit line, paired windows (${pair.ratios.length} pairs of ${pair.windowMs / 1000} s keep-alive windows, ` +
        `${pair.a} and ${pair.b} alternately, after the rounds): without the line a request costs ` +
        `${pair.ratios.map((r) => r.toFixed(2)).join(', ')} of its CPU with it (median ${pair.median.toFixed(3)}; ` +
        `µs with ${us(pair.aCpuUs)}, without ${us(pair.bCpuUs)})` +
        `${pair.errors ? `; ${pair.errors} requests FAILED` : ''}.`,
    );
  }
  return notes;
}
