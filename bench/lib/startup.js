// Startup to ready: spawn the CLI → /readyz answers 200, several times, in each identity/auth mode: file
// (certs on disk, mTLS), jwt (JWT bundle file, plain transport) and spire (the SVID from a Workload API over
// a Unix socket, mTLS); and, for scale, the same for a Node process that only serves /readyz (what Node
// itself costs here). The modes take turns within each run (file, jwt, spire, bare, file, ...) so that a
// busy moment on the shared machine lands on all of them rather than on one mode's series.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { URL } from 'node:url';
import { freePort, spawnChild, stopChild, waitForHttp200, waitForLine } from './children.js';
import { SERVER_ID } from './pki.js';
import { sidecarArgs, startSidecar } from './sidecar.js';
import { cpuMs } from './proc.js';
import { median } from './stats.js';

const BARE_NODE = `
const http = require('node:http');
http.createServer((req, res) => res.end('ok')).listen(Number(process.argv[1]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

/** The sidecar's startup modes, in the order they take turns. */
export const STARTUP_MODES = /** @type {const} */ (['file', 'jwt', 'spire']);

/** @typedef {(typeof STARTUP_MODES)[number]} StartupMode */

/**
 * @typedef {object} StartupSeries
 * @property {number[]} ms spawn → ready, per run
 * @property {number[]} cpuMs CPU time to ready (utime + stime), per run: what the wall time would be on an
 *   idle core, so less sensitive to a busy machine
 * @property {number | undefined} medianMs
 * @property {number | undefined} cpuMedianMs
 * @property {string} [error] the failure that stopped this series (later runs skip it)
 */

/** @returns {StartupSeries} */
const series = () => ({ ms: [], cpuMs: [], medianMs: undefined, cpuMedianMs: undefined });

/**
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string, appPort: number }} ctx
 * @returns {Promise<{ runs: number, modes: Record<StartupMode, StartupSeries>, bareNode: StartupSeries }>}
 */
export async function measureStartup({ options, pki, tmp, appPort }) {
  const modes = /** @type {Record<StartupMode, StartupSeries>} */ (
    Object.fromEntries(STARTUP_MODES.map((m) => [m, series()]))
  );
  const bareNode = series();

  // One Workload API for every spire run, started before the first: its own startup is not the sidecar's.
  const socket = join(tmp, 'agent.sock');
  const workloadApi = spawnChild(
    process.execPath,
    [new URL('../servers/workload-api.js', import.meta.url).pathname, socket, pki.serverDir, SERVER_ID, pki.jwksFile],
    { logFile: join(tmp, 'workload-api.log'), pipeStdout: true },
  );
  try {
    await waitForLine(workloadApi, /^listening /m, 10_000).catch((err) => {
      modes.spire.error = `Workload API: ${err.message}`;
    });

    for (let i = 0; i < options.startupRuns; i++) {
      for (const mode of STARTUP_MODES) {
        const s = modes[mode];
        if (s.error) continue;
        const [port, adminPort] = [await freePort(), await freePort()];
        const args = sidecarArgs(
          { auth: mode === 'jwt' ? 'jwt' : 'mtls' },
          {
            port,
            adminPort,
            appPort,
            certDir: pki.serverDir,
            jwksFile: pki.jwksFile,
            workloadApiSocket: mode === 'spire' ? socket : undefined,
          },
        );
        try {
          const { child, readyMs } = await startSidecar({
            node: options.sidecarNode,
            cli: options.cli,
            nodeArgs: options.sidecarNodeArgs,
            args: [...args, ...options.sidecarArgs],
            adminPort,
            logFile: join(tmp, `startup-${mode}.log`),
          });
          s.ms.push(readyMs);
          s.cpuMs.push(cpuMs([/** @type {number} */ (child.pid)]));
          await stopChild(child);
        } catch (err) {
          // One mode failing (say, no Workload API) should not cost the others their numbers.
          s.error = /** @type {Error} */ (err).message;
        }
      }

      const barePort = await freePort();
      const spawned = performance.now();
      // The sidecar's Node: the scale is what that Node itself costs to start.
      const bare = spawnChild(options.sidecarNode, ['-e', BARE_NODE, String(barePort)], {
        logFile: join(tmp, 'startup-node.log'),
      });
      const ready = await waitForHttp200(`http://127.0.0.1:${barePort}/readyz`, { timeoutMs: 10_000, child: bare });
      bareNode.ms.push(ready - spawned);
      bareNode.cpuMs.push(cpuMs([/** @type {number} */ (bare.pid)]));
      await stopChild(bare);
    }
  } finally {
    await stopChild(workloadApi);
  }

  for (const s of [...Object.values(modes), bareNode]) {
    s.medianMs = median(s.ms);
    s.cpuMedianMs = median(s.cpuMs);
  }
  return { runs: options.startupRuns, modes, bareNode };
}
