// The sidecar under test: the built CLI as a real child process, in each mode the bench measures. Optional
// modes (--workers, --protocol) are used only when `--help` lists them.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { promisify } from 'node:util';
import { logPipe, spawnChild, stopChild, waitForHttp200 } from './children.js';
import { CLIENT_ID, JWT_AUDIENCE, TRUST_DOMAIN } from './pki.js';

const run = promisify(execFile);

/**
 * What this build of the CLI can do, asked of the Node that will run it (an unusable BENCH_SIDECAR_NODE
 * fails here, before anything is measured).
 * @param {string} cli
 * @param {string} [node] the node binary that runs the sidecar
 * @returns {Promise<{ workers: boolean, protocol: boolean, help: string }>}
 */
export async function sidecarFeatures(cli, node = process.execPath) {
  // `run --help` lists the sidecar's flags; builds before per-command help listed them under `--help`.
  const { stdout } = await run(node, [cli, 'run', '--help']).catch(() => run(node, [cli, '--help']));
  return { workers: /--workers\b/.test(stdout), protocol: /--protocol\b/.test(stdout), help: stdout };
}

/**
 * @typedef {object} SidecarMode
 * @property {'mtls' | 'jwt' | 'l4'} auth
 * @property {number} [workers]
 * @property {boolean} [quiet] `--log-level warn`: no per-request audit line (the row that prices it)
 * @property {string} [policyFile] `--policy-file` instead of `--allow` (the rate-limit rows)
 * @property {{ url: string, timeout: string }} [rateLimitStore] `--rate-limit-store URL
 *   --rate-limit-store-timeout T`: the policy's rate limits counted in a shared store
 */

/**
 * The command line of a sidecar in `mode`.
 * @param {SidecarMode} mode
 * @param {{ port: number, adminPort: number, appPort: number, certDir: string, jwksFile: string,
 *   workloadApiSocket?: string }} where `workloadApiSocket`: take the SVID from this Workload API (SPIRE mode)
 *   instead of certDir's files
 * @returns {string[]}
 */
export function sidecarArgs(mode, { port, adminPort, appPort, certDir, jwksFile, workloadApiSocket }) {
  const args = [
    'run',
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    '--upstream',
    // L4 relays bytes to a tcp:// upstream (our app speaks HTTP over it all the same).
    `${mode.auth === 'l4' ? 'tcp' : 'http'}://127.0.0.1:${appPort}`,
    // A policy file replaces --allow (its rule allows the same client).
    ...(mode.policyFile ? ['--policy-file', mode.policyFile] : ['--allow', CLIENT_ID]),
  ];
  if (mode.auth === 'jwt') {
    args.push('--auth-mode', 'jwt', '--jwt-transport', 'plain', '--jwt-audience', JWT_AUDIENCE);
    args.push('--jwt-bundle-file', `${TRUST_DOMAIN}=${jwksFile}`);
  } else if (workloadApiSocket) {
    args.push('--workload-api-socket', `unix://${workloadApiSocket}`);
  } else {
    args.push('--mtls-cert-file', join(certDir, 'tls.crt'), '--mtls-key-file', join(certDir, 'tls.key'));
    args.push('--mtls-ca-file', join(certDir, 'ca.crt'));
  }
  if (mode.auth === 'l4') args.push('--protocol', 'tcp');
  if (mode.workers) args.push('--workers', String(mode.workers));
  if (mode.quiet) args.push('--log-level', 'warn');
  if (mode.rateLimitStore) {
    args.push('--rate-limit-store', mode.rateLimitStore.url);
    args.push('--rate-limit-store-timeout', mode.rateLimitStore.timeout);
  }
  return args;
}

/**
 * The version of a node binary (`v24.1.0`).
 * @param {string} node
 */
export async function nodeVersion(node) {
  const { stdout } = await run(node, ['--version']);
  return stdout.trim();
}

/** The compile cache warmed for each node binary (warmCompileCache): every sidecar on it starts with it. */
const compileCaches = new Map();

/** The node flags of the image's ENTRYPOINT, for the node binary that is the image's Node (setImageNodeFlags). */
const imageFlags = new Map();

/** The environment the image sets for its node (its `ENV OPENSSL_CONF`), for the image's Node (setImageNodeEnv). */
const imageEnv = new Map();

/**
 * Every sidecar started on `node` from now on runs with `flags` first, as the image's ENTRYPOINT runs it.
 * @param {string} node
 * @param {string[]} flags
 */
export function setImageNodeFlags(node, flags) {
  imageFlags.set(node, flags);
}

/**
 * Every sidecar started on `node` from now on has `env` in its environment, as the image's `ENV` lines set it.
 * @param {string} node
 * @param {Record<string, string>} env
 */
export function setImageNodeEnv(node, env) {
  imageEnv.set(node, env);
}

/**
 * How the image would start `node`: its ENTRYPOINT's flags and its `ENV`, when `node` is the image's Node (else
 * none). For the reference rows that run on a sidecar's Node as the sidecar does there.
 * @param {string} node
 * @returns {{ flags: string[], env: Record<string, string> }}
 */
export function imageNodeLaunch(node) {
  return { flags: imageFlags.get(node) ?? [], env: imageEnv.get(node) ?? {} };
}

/**
 * Fills `dir` with V8's code for the CLI's modules on `node`, as the image's build does (Dockerfile,
 * dist/warm-compile-cache.js), so that the sidecars of this run start as the image's do. `dir` must be private
 * to this run (the bench's mkdtemp directory): Node runs the code it finds there. A Node without a compile cache
 * (Node 20) gets none, and says so.
 * @param {string} node
 * @param {string} cli dist/main.js
 * @param {string} dir
 * @returns {Promise<boolean>} whether this Node now has a cache
 */
export async function warmCompileCache(node, cli, dir) {
  const warm = join(dirname(cli), 'warm-compile-cache.js');
  const { stdout } = await run(node, [warm], { env: { ...process.env, NODE_COMPILE_CACHE: dir } });
  if (/nothing to warm/.test(stdout)) return false;
  compileCaches.set(node, dir);
  return true;
}

/** @param {string} node */
export function hasCompileCache(node) {
  return compileCaches.has(node);
}

/**
 * Starts a sidecar and waits for /readyz to answer 200.
 * @param {{ node: string, cli: string, nodeArgs: string[], args: string[], adminPort: number, logFile: string,
 *   env?: NodeJS.ProcessEnv, cold?: boolean, logVia?: 'pipe' }} options `node`: the binary that runs it
 *   (BENCH_SIDECAR_NODE); `cold`: without the compile cache warmed for it; `logVia: 'pipe'`: its output reaches
 *   `logFile` through a pipe, as a pod's does (children.js logPipe), not written to the file by the sidecar
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, readyMs: number }>}
 */
export async function startSidecar({ node, cli, nodeArgs, args, adminPort, logFile, env, cold, logVia }) {
  const cache = cold ? undefined : compileCaches.get(node);
  // As in a container, an environment given at run time wins over the image's.
  const childEnv = { ...imageEnv.get(node), ...(env ?? process.env) };
  if (cache) childEnv.NODE_COMPILE_CACHE = cache;
  else delete childEnv.NODE_COMPILE_CACHE;
  // Its reader starts before the clock does: ready ms is the sidecar's.
  const logReader = logVia === 'pipe' ? logPipe(logFile) : undefined;
  const spawned = performance.now();
  const child = spawnChild(node, [...(imageFlags.get(node) ?? []), ...nodeArgs, cli, ...args], {
    logFile,
    env: childEnv,
    logReader,
  });
  try {
    const ready = await waitForHttp200(`http://127.0.0.1:${adminPort}/readyz`, { timeoutMs: 15_000, child });
    return { child, readyMs: ready - spawned };
  } catch (err) {
    child.kill('SIGKILL');
    // What it said before it went: all of it in the file (its reader has drained the pipe).
    await stopChild(child);
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const last = log.trim().split('\n').slice(-1)[0] ?? '';
    throw new Error(`${/** @type {Error} */ (err).message}${last ? `; it said: ${last.slice(0, 300)}` : ''}`);
  }
}
