// redis-server for the `sidecar-mtls-rate-limit-store` row: found on PATH (or in /usr/bin, /usr/local/bin),
// never installed (the row is skipped with the reason when it is missing). The bench starts its own on a free
// loopback port, with nothing written to disk (`--save '' --appendonly no`, its directory in the run's
// temporary directory), and stops it with the row.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import process from 'node:process';
import { promisify } from 'node:util';
import { freePort, spawnChild, stopChild, waitForPort } from './children.js';

const run = promisify(execFile);

/**
 * The redis-server binary (BENCH_REDIS_SERVER, else PATH, /usr/bin, /usr/local/bin), or why there is none.
 * @returns {Promise<{ binary: string } | { missing: string }>}
 */
export async function findRedis() {
  if (process.env.BENCH_REDIS === 'skip') return { missing: 'skipped (BENCH_REDIS=skip)' };
  const given = process.env.BENCH_REDIS_SERVER;
  if (given) return existsSync(given) ? { binary: given } : { missing: `not found at BENCH_REDIS_SERVER=${given}` };
  try {
    const { stdout } = await run('sh', ['-c', 'command -v redis-server']);
    if (stdout.trim()) return { binary: stdout.trim() };
  } catch {
    // not on PATH
  }
  for (const candidate of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (existsSync(candidate)) return { binary: candidate };
  }
  return {
    missing:
      'not available (not on PATH nor in /usr/bin, /usr/local/bin; install the Debian package `redis-server` or set BENCH_REDIS_SERVER)',
  };
}

/** `7.0.15` from `redis-server --version`. @param {string} binary */
export async function redisVersion(binary) {
  const { stdout } = await run(binary, ['--version']);
  return /v=(\S+)/.exec(stdout)?.[1] ?? stdout.trim();
}

/**
 * Starts redis-server on a free 127.0.0.1 port, persistence off; resolves once it accepts connections.
 * @param {{ binary: string, dir: string, logFile: string }} options
 * @returns {Promise<{ pid: number, port: number, stop: () => Promise<void> }>}
 */
export async function startRedis({ binary, dir, logFile }) {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir];
  const child = spawnChild(binary, [...args, '--daemonize', 'no', '--logfile', ''], { logFile });
  try {
    await waitForPort('127.0.0.1', port, 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`redis-server: ${/** @type {Error} */ (err).message} (its output: ${logFile})`);
  }
  return { pid: /** @type {number} */ (child.pid), port, stop: () => stopChild(child) };
}
