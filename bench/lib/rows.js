// The rows of the table: what is started for each, and how the load generator reaches it. References
// first (direct, nginx, the three minimal Node proxies), then the sidecar in each mode this build has.
import { join } from 'node:path';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { freePort, spawnChild, stopChild, waitForLine, waitForPort } from './children.js';
import { nginxConfig } from './nginx.js';
import { sidecarArgs, startSidecar } from './sidecar.js';

/**
 * @typedef {object} Started
 * @property {number} pid root of the process tree under test
 * @property {import('../load/engine.js').Target} target
 * @property {() => Promise<void>} stop
 * @property {number} [readyMs] spawn to ready
 */

/**
 * @typedef {object} Row
 * @property {string} key
 * @property {string} label
 * @property {'direct' | 'reference' | 'sidecar'} kind
 * @property {boolean} tls whether the row speaks TLS to the load generator
 * @property {string} [unavailable] why the row cannot be measured in this run
 * @property {() => Promise<Started>} start
 */

/**
 * @typedef {object} RowContext
 * @property {import('./options.js').BenchOptions} options
 * @property {import('./pki.js').Pki} pki
 * @property {string} tmp
 * @property {number} appPort
 * @property {number} appPid
 * @property {string | undefined} nginx the nginx binary
 * @property {string | undefined} nginxMissing why there is none
 * @property {{ workers: boolean, protocol: boolean }} features
 * @property {{ cert: string, key: string, ca: string }} clientTls the load generator's SVID (PEM)
 */

const servers = (/** @type {string} */ file) => fileURLToPath(new URL(`../servers/${file}`, import.meta.url));

/**
 * A reference proxy from bench/servers: LISTEN_PORT APP_PORT CERT_DIR, ready when it prints its port.
 * @param {RowContext} ctx
 * @param {string} file
 * @returns {Promise<Started>}
 */
async function startReference(ctx, file) {
  const port = await freePort();
  const child = spawnChild(process.execPath, [servers(file), String(port), String(ctx.appPort), ctx.pki.serverDir], {
    logFile: join(ctx.tmp, `${file}.log`),
    pipeStdout: true,
  });
  await waitForLine(child, /listening \d+/, 10_000);
  return {
    pid: /** @type {number} */ (child.pid),
    target: { host: '127.0.0.1', port, tls: ctx.clientTls },
    stop: () => stopChild(child),
  };
}

/**
 * @param {RowContext} ctx
 * @param {import('./sidecar.js').SidecarMode} mode
 * @param {string} key
 * @returns {Promise<Started>}
 */
async function startSidecarRow(ctx, mode, key) {
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = sidecarArgs(mode, {
    port,
    adminPort,
    appPort: ctx.appPort,
    certDir: ctx.pki.serverDir,
    jwksFile: ctx.pki.jwksFile,
  });
  const { child, readyMs } = await startSidecar({
    node: ctx.options.sidecarNode,
    cli: ctx.options.cli,
    nodeArgs: ctx.options.sidecarNodeArgs,
    args: [...args, ...ctx.options.sidecarArgs],
    adminPort,
    logFile: join(ctx.tmp, `${key}.log`),
  });
  const plain = mode.auth === 'jwt';
  return {
    pid: /** @type {number} */ (child.pid),
    target: plain
      ? { host: '127.0.0.1', port, headers: { authorization: `Bearer ${ctx.pki.jwtToken}` } }
      : { host: '127.0.0.1', port, tls: ctx.clientTls },
    stop: () => stopChild(child),
    readyMs,
  };
}

/**
 * @param {RowContext} ctx
 * @returns {Row[]}
 */
export function benchRows(ctx) {
  /** @type {Row[]} */
  const rows = [
    {
      key: 'direct',
      label: 'direct to the app (plain HTTP, no proxy)',
      kind: 'direct',
      tls: false,
      start: async () => ({
        pid: ctx.appPid,
        target: { host: '127.0.0.1', port: ctx.appPort },
        stop: async () => {},
      }),
    },
    {
      key: 'nginx',
      label: 'nginx mTLS reverse proxy, 1 worker',
      kind: 'reference',
      tls: true,
      unavailable: ctx.nginx ? undefined : ctx.nginxMissing,
      start: async () => {
        const port = await freePort();
        const dir = join(ctx.tmp, 'nginx');
        const args = await nginxConfig({ dir, port, appPort: ctx.appPort, certDir: ctx.pki.serverDir });
        const child = spawnChild(/** @type {string} */ (ctx.nginx), args, { logFile: join(ctx.tmp, 'nginx.log') });
        await waitForPort('127.0.0.1', port, 10_000);
        return {
          pid: /** @type {number} */ (child.pid),
          target: { host: '127.0.0.1', port, tls: ctx.clientTls },
          stop: () => stopChild(child),
        };
      },
    },
    {
      key: 'node-http',
      label: 'minimal Node `https` + `http.request` keep-alive agent',
      kind: 'reference',
      tls: true,
      start: () => startReference(ctx, 'proxy-node-http.js'),
    },
    {
      key: 'node-undici',
      label: 'minimal Node `https` + `undici` Pool',
      kind: 'reference',
      tls: true,
      start: () => startReference(ctx, 'proxy-undici.js'),
    },
    {
      key: 'http-proxy',
      label: '`http-proxy` 1.18.1 with keep-alive agent',
      kind: 'reference',
      tls: true,
      start: () => startReference(ctx, 'proxy-http-proxy.js'),
    },
    {
      key: 'sidecar-mtls',
      label: 'spiffe-sidecar mTLS L7, 1 process',
      kind: 'sidecar',
      tls: true,
      start: () => startSidecarRow(ctx, { auth: 'mtls' }, 'sidecar-mtls'),
    },
    {
      key: 'sidecar-mtls-quiet',
      label: 'the same without the audit line (`--log-level warn`)',
      kind: 'sidecar',
      tls: true,
      start: () => startSidecarRow(ctx, { auth: 'mtls', quiet: true }, 'sidecar-mtls-quiet'),
    },
    {
      key: 'sidecar-mtls-w2',
      label: 'spiffe-sidecar mTLS L7, `--workers 2`',
      kind: 'sidecar',
      tls: true,
      unavailable: ctx.features.workers ? undefined : 'not available (`--help` lists no `--workers`)',
      start: () => startSidecarRow(ctx, { auth: 'mtls', workers: 2 }, 'sidecar-mtls-w2'),
    },
    {
      key: 'sidecar-jwt',
      label: 'spiffe-sidecar JWT, plain HTTP, cached token',
      kind: 'sidecar',
      tls: false,
      start: () => startSidecarRow(ctx, { auth: 'jwt' }, 'sidecar-jwt'),
    },
    {
      key: 'sidecar-l4',
      label: 'spiffe-sidecar mTLS L4 TCP',
      kind: 'sidecar',
      tls: true,
      unavailable: ctx.features.protocol ? undefined : 'not available (`--help` lists no `--protocol`)',
      start: () => startSidecarRow(ctx, { auth: 'l4' }, 'sidecar-l4'),
    },
  ];
  const only = ctx.options.only;
  return only ? rows.filter((r) => r.key === 'direct' || only.includes(r.key)) : rows;
}
