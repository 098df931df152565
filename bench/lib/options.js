// Bench settings, from the environment (and `--soak` on the command line). Defaults give a full run of about
// 8 minutes on 2 cores; BENCH_QUICK=1 a smoke run of about 1 minute; the soak 10 minutes.
import { fileURLToPath, URL } from 'node:url';
import process from 'node:process';

/**
 * @typedef {object} BenchOptions
 * @property {boolean} quick
 * @property {number} rounds interleaved rounds over all rows
 * @property {number} seconds measurement window of each loaded phase (keep-alive, new connections)
 * @property {number} warmupSeconds warm-up before each loaded phase
 * @property {number} latencySeconds unloaded latency phase (1 connection, sequential)
 * @property {number} connections keep-alive connections
 * @property {number} newConnWorkers workers opening a new connection per request
 * @property {number} startupRuns startup-to-ready measurements
 * @property {number} rotationSeconds rotation row: load duration while the SVID rotates every second
 * @property {string[] | undefined} only row keys to run (BENCH_ONLY=nginx,sidecar-mtls), default all
 * @property {string} cli the sidecar CLI (dist/main.js)
 * @property {string[]} sidecarArgs extra sidecar flags (BENCH_SIDECAR_ARGS, space separated)
 * @property {string[]} sidecarNodeArgs extra node flags for the sidecar (BENCH_SIDECAR_NODE_ARGS; on the image's
 *   Node, after the Dockerfile ENTRYPOINT's)
 * @property {string} out the JSON results file
 * @property {boolean} keepTmp keep the temporary directory (certs, logs) for inspection
 * @property {boolean} resumption also measure new connections that resume a TLS session (BENCH_RESUMPTION=1)
 * @property {string} sidecarNode the node binary that runs the sidecar (BENCH_SIDECAR_NODE), so that the Node
 *   version of the image can be chosen by numbers; the bench itself and the reference rows stay on this one
 * @property {boolean} soak run the soak instead of the table (`--soak` or BENCH_SOAK=1)
 * @property {number} soakSeconds how long the soak drives the sidecar
 * @property {number} soakRotateSeconds the soak replaces the SVID files this often
 * @property {number} soakNewConnShare the share of the soak's requests sent on new TLS connections
 * @property {string} dockerfile the Dockerfile whose `FROM node:NN` names the image's Node (BENCH_DOCKERFILE)
 */

/** @param {string} name @param {number} fallback */
function number(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return value;
}

/** @param {string} name */
function words(name) {
  return (process.env[name] ?? '').split(/\s+/).filter(Boolean);
}

/** @returns {BenchOptions} */
export function benchOptions() {
  const quick = process.env.BENCH_QUICK === '1';
  const soak = process.argv.includes('--soak') || process.env.BENCH_SOAK === '1';
  const share = number('BENCH_SOAK_NEWCONN_SHARE', 0.01);
  if (share >= 1) throw new Error(`BENCH_SOAK_NEWCONN_SHARE=${share}: expected a fraction below 1`);
  const only = process.env.BENCH_ONLY?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return {
    quick,
    rounds: Math.round(number('BENCH_ROUNDS', quick ? 1 : 3)),
    seconds: number('BENCH_SECONDS', quick ? 1.5 : 2.5),
    warmupSeconds: number('BENCH_WARMUP_SECONDS', quick ? 0.5 : 1),
    latencySeconds: number('BENCH_LATENCY_SECONDS', quick ? 0.6 : 1),
    connections: Math.round(number('BENCH_CONNECTIONS', 32)),
    newConnWorkers: Math.round(number('BENCH_NEWCONN_WORKERS', 16)),
    startupRuns: Math.round(number('BENCH_STARTUP_RUNS', quick ? 3 : 11)),
    rotationSeconds: number('BENCH_ROTATION_SECONDS', quick ? 4 : 8),
    only: only && only.length > 0 ? only : undefined,
    cli: process.env.BENCH_CLI ?? fileURLToPath(new URL('../../dist/main.js', import.meta.url)),
    sidecarArgs: words('BENCH_SIDECAR_ARGS'),
    sidecarNodeArgs: words('BENCH_SIDECAR_NODE_ARGS'),
    // A soak does not overwrite the table's results.
    out:
      process.env.BENCH_OUT ??
      fileURLToPath(new URL(soak ? '../results/soak.json' : '../results/latest.json', import.meta.url)),
    keepTmp: process.env.BENCH_KEEP_TMP === '1',
    resumption: process.env.BENCH_RESUMPTION === '1',
    sidecarNode: process.env.BENCH_SIDECAR_NODE || process.execPath,
    soak,
    soakSeconds: number('BENCH_SOAK_SECONDS', 600),
    soakRotateSeconds: number('BENCH_SOAK_ROTATE_SECONDS', 5),
    soakNewConnShare: share,
    dockerfile: process.env.BENCH_DOCKERFILE || fileURLToPath(new URL('../../Dockerfile', import.meta.url)),
  };
}
