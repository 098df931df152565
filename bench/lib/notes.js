// Observations printed under the table: how many audit lines the sidecar wrote per request, whether nginx
// was saturated, and how busy the shared machine was with other work during the windows.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { median } from './stats.js';

/**
 * @param {ReturnType<typeof import('./summary.js').summarize>} rows
 * @param {string} logDir where each sidecar row's output went (`<key>.log`)
 * @returns {Promise<string[]>}
 */
export async function runNotes(rows, logDir) {
  const notes = [];
  for (const r of rows) {
    if (r.kind !== 'sidecar' || !r.measured) continue;
    const completed = r.rounds.reduce(
      (sum, x) => sum + (x ? x.keepAlive.completed + x.newConn.completed + x.latency.completed : 0),
      0,
    );
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
  return notes;
}
