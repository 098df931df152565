// The measurement loop: every row in round 1, then every row in round 2, ... (interleaved, so that a slow
// moment of the shared machine hits all rows alike), each round being keep-alive, then new connections,
// then unloaded latency.
import { setTimeout as delay } from 'node:timers/promises';
import { onOneCpu } from './affinity.js';
import { measurePhase } from './measure.js';
import { processTree } from './proc.js';

/** @param {number | undefined} v @param {number} [digits] */
const fmt = (v, digits = 0) => (v === undefined ? '?' : v.toFixed(digits));

/**
 * One row, one round.
 * @param {import('./loadgen.js').LoadGenerator} loadgen
 * @param {import('./options.js').BenchOptions} options
 * @param {import('./rows.js').Started} started
 * @param {number} appPid
 * @returns {Promise<import('./summary.js').RoundResult>}
 */
async function measureRound(loadgen, options, started, appPid) {
  const { target, pid } = started;
  const where = { pid, appPid, sidePid: started.side?.pid };
  const warmupMs = options.warmupSeconds * 1000;
  const durationMs = options.seconds * 1000;
  const keepAlive = await measurePhase(
    loadgen,
    { mode: 'keepalive', target, connections: options.connections, warmupMs, durationMs },
    where,
  );
  await delay(100);
  const newConn = await measurePhase(
    loadgen,
    { mode: 'newconn', target, connections: options.newConnWorkers, warmupMs: warmupMs / 2, durationMs },
    where,
  );
  await delay(100);
  // Opt-in: the same, but each worker offers the TLS session of its previous connection (tickets).
  const resumed =
    options.resumption && target.tls
      ? await measurePhase(
          loadgen,
          {
            mode: 'newconn',
            target,
            connections: options.newConnWorkers,
            warmupMs: warmupMs / 2,
            durationMs,
            resumeSessions: true,
          },
          where,
        )
      : undefined;
  if (resumed) await delay(100);
  // A side process (the store row's redis-server) is on the request path: it is pinned with the rest.
  const side = started.side ? processTree(started.side.pid) : [];
  const pinned = [...new Set([...processTree(pid), ...side, appPid, loadgen.pid])];
  const latency = await onOneCpu(pinned, () =>
    measurePhase(
      loadgen,
      { mode: 'sequential', target, warmupMs: 200, durationMs: options.latencySeconds * 1000 },
      where,
    ),
  );
  return { keepAlive, newConn, latency, resumed };
}

/**
 * Runs all rounds; a row that fails a round gets `undefined` there and a line in its failures.
 * @param {object} input
 * @param {import('./summary.js').RowRecord[]} input.records
 * @param {Map<string, import('./rows.js').Started>} input.running
 * @param {import('./loadgen.js').LoadGenerator} input.loadgen
 * @param {import('./options.js').BenchOptions} input.options
 * @param {number} input.appPid
 * @param {(line: string) => void} input.say
 */
export async function runRounds({ records, running, loadgen, options, appPid, say }) {
  for (let round = 0; round < options.rounds; round++) {
    for (const record of records) {
      const started = running.get(record.row.key);
      if (!started) continue;
      const where = `round ${round + 1}/${options.rounds} ${record.row.key}`;
      try {
        await started.beforeRound?.();
        const r = await measureRound(loadgen, options, started, appPid);
        const invalid = await started.afterRound?.();
        if (invalid) {
          r.invalid = invalid;
          record.invalid = [...(record.invalid ?? []), `round ${round + 1}: ${invalid}`];
        }
        record.rounds[round] = r;
        const failed = r.keepAlive.errors + r.newConn.errors + r.latency.errors;
        const side = started.side ? ` (+ ${started.side.name} ${fmt(r.keepAlive.sideCpuUsPerRequest)} µs/req)` : '';
        say(
          `${where}: keep-alive ${fmt(r.keepAlive.rps)} req/s, ${fmt(r.keepAlive.cpuUsPerRequest)} µs CPU/req${side}, ` +
            `new conns ${fmt(r.newConn.rps)}/s${r.resumed ? ` (resumed ${fmt(r.resumed.rps)}/s)` : ''}, unloaded p50 ${fmt(r.latency.latency.p50, 3)} ms; foreign load ` +
            `${fmt(r.keepAlive.foreignCores, 2)}/${fmt(r.newConn.foreignCores, 2)} cores` +
            (failed > 0 ? `, FAILED ${failed}` : '') +
            (invalid ? `; INVALID: ${invalid}` : ''),
        );
      } catch (err) {
        record.rounds[round] = undefined;
        record.failures.push(`round ${round + 1}: ${/** @type {Error} */ (err).message}`);
        say(`${where}: failed: ${/** @type {Error} */ (err).message}`);
      }
    }
  }
}
