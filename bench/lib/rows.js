// The rows of the table: what is started for each, and how the load generator reaches it. References
// first (direct, nginx, ghostunnel, the three minimal Node proxies), then the sidecar in each mode this build has.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { freePort, spawnChild, stopChild, waitForLine, waitForPort } from './children.js';
import { expectOtherIdsRefused, GHOSTUNNEL_VERSION, ghostunnelArgs } from './ghostunnel.js';
import { nginxConfig } from './nginx.js';
import { CLIENT_ID } from './pki.js';
import { describeModeLine, StoreModeWatch, writeRateLimitPolicy } from './rate-limit.js';
import { startRedis } from './redis.js';
import { imageNodeLaunch, sidecarArgs, startSidecar } from './sidecar.js';
import { SECOND_MAJOR, SECOND_SUFFIX } from './sidecar-nodes.js';

/**
 * @typedef {object} Started
 * @property {number} pid root of the process tree under test
 * @property {import('../load/engine.js').Target} target
 * @property {() => Promise<void>} stop
 * @property {number} [readyMs] spawn to ready
 * @property {{ name: string, pid: number }} [side] a process the row depends on but that is not in its tree
 *   (the store row's redis-server): its CPU and RSS are measured alongside, reported apart
 * @property {() => Promise<void>} [beforeRound] called before each round of this row (fails the round if it throws)
 * @property {() => Promise<string | undefined>} [afterRound] called after each round: why its numbers are
 *   invalid, if they are (the store row: the sidecar fell back from the store meanwhile)
 */

/**
 * @typedef {object} Row
 * @property {string} key
 * @property {string} label
 * @property {'direct' | 'reference' | 'sidecar'} kind
 * @property {boolean} tls whether the row speaks TLS to the load generator
 * @property {string} [unavailable] why the row cannot be measured in this run
 * @property {string} [baseline] the row it is priced against, round by round (summary: `vsBaseline`)
 * @property {import('./sidecar-nodes.js').SidecarNode} [node] the Node a sidecar row runs on
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
 * @property {import('./ghostunnel.js').Ghostunnel} ghostunnel the ghostunnel binary, or why there is none
 * @property {{ workers: boolean, protocol: boolean }} features
 * @property {{ cert: string, key: string, ca: string }} clientTls the load generator's SVID (PEM)
 * @property {{ binary: string } | { missing: string }} redis the redis-server binary, or why there is none
 * @property {import('./sidecar-nodes.js').SidecarNode} baseNode the Node of the sidecar rows
 * @property {import('./sidecar-nodes.js').SidecarNode | { missing: string }} secondNode the Node of the
 *   `-node24` rows, or why there is none
 */

const servers = (/** @type {string} */ file) => fileURLToPath(new URL(`../servers/${file}`, import.meta.url));

/**
 * A reference proxy from bench/servers: LISTEN_PORT APP_PORT CERT_DIR, ready when it prints its port.
 * @param {RowContext} ctx
 * @param {string} file
 * @param {import('./sidecar-nodes.js').SidecarNode} [node] the Node to run it on, as the sidecar runs there (the
 *   image's flags and environment on the image's Node); the bench's own by default
 * @returns {Promise<Started>}
 */
async function startReference(ctx, file, node) {
  const port = await freePort();
  const launch = node ? imageNodeLaunch(node.path) : { flags: [], env: {} };
  const args = [...launch.flags, servers(file), String(port), String(ctx.appPort), ctx.pki.serverDir];
  const child = spawnChild(node?.path ?? process.execPath, args, {
    logFile: join(ctx.tmp, `${file}${node?.suffix ?? ''}.log`),
    pipeStdout: true,
    env: { ...process.env, ...launch.env },
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
 * @param {import('./sidecar-nodes.js').SidecarNode} [node] the Node that runs it, the base one by default
 * @returns {Promise<Started>}
 */
async function startSidecarRow(ctx, mode, key, node = ctx.baseNode) {
  const [port, adminPort] = [await freePort(), await freePort()];
  const args = sidecarArgs(mode, {
    port,
    adminPort,
    appPort: ctx.appPort,
    certDir: ctx.pki.serverDir,
    jwksFile: ctx.pki.jwksFile,
  });
  const { child, readyMs } = await startSidecar({
    node: node.path,
    cli: ctx.options.cli,
    nodeArgs: ctx.options.sidecarNodeArgs,
    args: [...args, ...ctx.options.sidecarArgs],
    adminPort,
    logFile: join(ctx.tmp, `${key}.log`),
    logVia: 'pipe',
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
 * The rate-limit rows' policy file, in a directory of its own: the sidecar watches the policy file's
 * directory, and the logs in the run's directory change with every request (a watch event each, a re-read of
 * the policy every 500 ms: +0.4 ms unloaded p50 when they shared it).
 * @param {RowContext} ctx
 */
async function rateLimitPolicy(ctx) {
  const dir = join(ctx.tmp, 'policy');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'rate-limit.json');
  await writeRateLimitPolicy(file);
  return file;
}

/** How long a store decision may take before the sidecar falls back: long, so that a busy machine does not. */
const STORE_TIMEOUT = '1s';

/**
 * The rate-limit policy counted in a redis-server of its own: started first, stopped with the row. Ready
 * once the sidecar counts in the store (not in its fallback); each round checks it still did throughout.
 * @param {RowContext} ctx
 * @param {string} key
 * @returns {Promise<Started>}
 */
async function startStoreRow(ctx, key) {
  if (!('binary' in ctx.redis)) throw new Error(ctx.redis.missing);
  const redis = await startRedis({
    binary: ctx.redis.binary,
    dir: join(ctx.tmp, 'redis'),
    logFile: join(ctx.tmp, 'redis.log'),
  });
  try {
    const mode = /** @type {import('./sidecar.js').SidecarMode} */ ({
      auth: 'mtls',
      policyFile: await rateLimitPolicy(ctx),
      rateLimitStore: { url: `redis://127.0.0.1:${redis.port}`, timeout: STORE_TIMEOUT },
    });
    const sidecar = await startSidecarRow(ctx, mode, key);
    const watch = new StoreModeWatch(join(ctx.tmp, `${key}.log`));
    try {
      await watch.waitShared(15_000);
    } catch (err) {
      await sidecar.stop();
      throw err;
    }
    return {
      ...sidecar,
      side: { name: 'redis-server', pid: redis.pid },
      stop: async () => {
        await sidecar.stop();
        await redis.stop();
      },
      beforeRound: async () => {
        // Whatever happened between rounds is not this round's: read past it, and wait for the store if the
        // sidecar is in its fallback now (it probes every second).
        await watch.changes();
        if (watch.mode !== 'shared') await watch.waitShared(10_000);
      },
      afterRound: async () => {
        const left = (await watch.changes()).filter((line) => line.mode !== 'shared');
        return left.length === 0
          ? undefined
          : `the sidecar left the store during the round: ${left.map(describeModeLine).join('; ')}`;
      },
    };
  } catch (err) {
    await redis.stop();
    throw err;
  }
}

/**
 * The rows that run again on the newer Node, with their mode: the audit-line default and the L4 relay (the
 * Node-dependent targets' rows, and their closest peer, ghostunnel's).
 * @type {Record<string, import('./sidecar.js').SidecarMode>}
 */
const SECOND_NODE_ROWS = { 'sidecar-mtls': { auth: 'mtls' }, 'sidecar-l4': { auth: 'l4' } };

/**
 * The same row on the newer Node, placed right after it so that both are measured close together in each
 * round; priced against it round by round (`baseline`: Node 24 over the base Node).
 * @param {RowContext} ctx
 * @param {Row} row a sidecar row of the base Node
 * @param {import('./sidecar.js').SidecarMode} mode
 * @returns {Row}
 */
function onSecondNode(ctx, row, mode) {
  const second = ctx.secondNode;
  const key = `${row.key}${SECOND_SUFFIX}`;
  if (!('path' in second)) {
    return {
      ...row,
      key,
      label: `${row.label} on Node ${SECOND_MAJOR}`,
      unavailable: row.unavailable ?? second.missing,
    };
  }
  return {
    ...row,
    key,
    label: `${row.label} on Node ${second.version.slice(1)}`,
    baseline: row.key,
    node: second,
    start: () => startSidecarRow(ctx, mode, key, second),
  };
}

/**
 * The floor row: the least a Node mTLS proxy does (bench/servers/proxy-tls-relay.js), on each Node the sidecar
 * rows run on. The RSS targets show it beside the sidecar's (bench/lib/node-choice.js).
 */
export const FLOOR_ROW = 'node-tls-relay';

/**
 * The floor row on the newer Node (`node-tls-relay-node24`).
 * @param {RowContext} ctx
 * @param {Row} row
 * @returns {Row}
 */
function floorOnSecondNode(ctx, row) {
  const second = ctx.secondNode;
  const key = `${row.key}${SECOND_SUFFIX}`;
  if (!('path' in second))
    return { ...row, key, label: `${row.label} on Node ${SECOND_MAJOR}`, unavailable: second.missing };
  return {
    ...row,
    key,
    label: `${row.label} on Node ${second.version.slice(1)}`,
    start: () => startReference(ctx, 'proxy-tls-relay.js', second),
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
      key: 'ghostunnel',
      label: `ghostunnel ${GHOSTUNNEL_VERSION} mTLS TCP proxy (Go), \`--allow-uri\` the client's ID`,
      kind: 'reference',
      tls: true,
      unavailable: 'binary' in ctx.ghostunnel ? undefined : ctx.ghostunnel.missing,
      start: async () => {
        if (!('binary' in ctx.ghostunnel)) throw new Error(ctx.ghostunnel.missing);
        const port = await freePort();
        const args = ghostunnelArgs({ port, appPort: ctx.appPort, certDir: ctx.pki.serverDir, allowId: CLIENT_ID });
        const child = spawnChild(ctx.ghostunnel.binary, args, { logFile: join(ctx.tmp, 'ghostunnel.log') });
        try {
          await waitForPort('127.0.0.1', port, 10_000);
          // It checks the caller's ID as the sidecar does, not only its CA: another ID gets no answer.
          await expectOtherIdsRefused(port, ctx.pki.serverDir);
        } catch (err) {
          await stopChild(child);
          throw new Error(`${/** @type {Error} */ (err).message} (its output: ${join(ctx.tmp, 'ghostunnel.log')})`);
        }
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
      key: FLOOR_ROW,
      label: 'minimal Node `tls` relay, bytes both ways, no HTTP (the floor of a Node proxy)',
      kind: 'reference',
      tls: true,
      start: () => startReference(ctx, 'proxy-tls-relay.js', ctx.baseNode),
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
      key: 'sidecar-mtls-rate-limit-local',
      label: 'spiffe-sidecar mTLS L7, `--policy-file` rule with a `rate_limit` (local buckets)',
      kind: 'sidecar',
      tls: true,
      baseline: 'sidecar-mtls',
      start: async () =>
        startSidecarRow(ctx, { auth: 'mtls', policyFile: await rateLimitPolicy(ctx) }, 'sidecar-mtls-rate-limit-local'),
    },
    {
      key: 'sidecar-mtls-rate-limit-store',
      label: 'the same rule counted in Redis (`--rate-limit-store redis://`, loopback)',
      kind: 'sidecar',
      tls: true,
      baseline: 'sidecar-mtls-rate-limit-local',
      unavailable: 'binary' in ctx.redis ? undefined : `redis-server ${ctx.redis.missing}`,
      start: () => startStoreRow(ctx, 'sidecar-mtls-rate-limit-store'),
    },
    {
      key: 'sidecar-mtls-w2',
      label: 'spiffe-sidecar mTLS L7, `--workers 2`',
      kind: 'sidecar',
      tls: true,
      unavailable: ctx.features.workers ? undefined : 'not available (`run --help` lists no `--workers`)',
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
      unavailable: ctx.features.protocol ? undefined : 'not available (`run --help` lists no `--protocol`)',
      start: () => startSidecarRow(ctx, { auth: 'l4' }, 'sidecar-l4'),
    },
  ];
  const all = rows.flatMap((row) => {
    const own = row.kind === 'sidecar' ? { ...row, node: ctx.baseNode } : row;
    const mode = SECOND_NODE_ROWS[row.key];
    if (row.key === FLOOR_ROW) return [own, floorOnSecondNode(ctx, row)];
    return mode ? [own, onSecondNode(ctx, row, mode)] : [own];
  });
  const only = ctx.options.only;
  return only ? all.filter((r) => r.key === 'direct' || only.includes(r.key)) : all;
}
