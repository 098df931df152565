// Startup to ready: spawn the CLI in file mode (certs on disk) → /readyz answers 200, several times; and,
// for scale, the same for a Node process that only serves /readyz (what Node itself costs here).
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { freePort, spawnChild, stopChild, waitForHttp200 } from './children.js';
import { sidecarArgs, startSidecar } from './sidecar.js';
import { cpuMs } from './proc.js';
import { median } from './stats.js';

const BARE_NODE = `
const http = require('node:http');
http.createServer((req, res) => res.end('ok')).listen(Number(process.argv[1]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string, appPort: number }} ctx
 */
export async function measureStartup({ options, pki, tmp, appPort }) {
  const sidecarMs = [];
  const sidecarCpuMs = [];
  const bareNodeMs = [];
  for (let i = 0; i < options.startupRuns; i++) {
    const [port, adminPort] = [await freePort(), await freePort()];
    const args = sidecarArgs(
      { auth: 'mtls' },
      { port, adminPort, appPort, certDir: pki.serverDir, jwksFile: pki.jwksFile },
    );
    const { child, readyMs } = await startSidecar({
      cli: options.cli,
      nodeArgs: options.sidecarNodeArgs,
      args: [...args, ...options.sidecarArgs],
      adminPort,
      logFile: join(tmp, 'startup.log'),
    });
    sidecarMs.push(readyMs);
    // CPU to ready: what the wall time would be on an idle core (less sensitive to a busy machine).
    sidecarCpuMs.push(cpuMs([/** @type {number} */ (child.pid)]));
    await stopChild(child);

    const barePort = await freePort();
    const spawned = performance.now();
    const bare = spawnChild(process.execPath, ['-e', BARE_NODE, String(barePort)], {
      logFile: join(tmp, 'startup-node.log'),
    });
    const ready = await waitForHttp200(`http://127.0.0.1:${barePort}/readyz`, { timeoutMs: 10_000, child: bare });
    bareNodeMs.push(ready - spawned);
    await stopChild(bare);
  }
  return {
    sidecarMs,
    sidecarCpuMs,
    bareNodeMs,
    sidecarMedianMs: median(sidecarMs),
    sidecarCpuMedianMs: median(sidecarCpuMs),
    bareNodeMedianMs: median(bareNodeMs),
  };
}
