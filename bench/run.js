// `npm run bench`: the data-path benchmark of issue 11. Starts the app, nginx (installed with apt-get when
// missing), ghostunnel (built from the Go module proxy once per machine), three minimal Node reference proxies and
// the sidecar in each mode this build has, then measures them in interleaved rounds with its own load generator (a
// separate process that presents a client certificate), and prints a Markdown table, the targets with PASS/MISS,
// and JSON (also written to bench/results/latest.json). `--soak` (or BENCH_SOAK=1) runs the soak instead
// (bench/lib/soak.js). The sidecar rows run on the base Node (BENCH_SIDECAR_NODE, by default this one) and the
// `-node24` rows on Node 24 (installed from the npm registry when missing, BENCH_NODE24=skip to leave out); the
// Node-dependent targets are judged on the image's Node, read from the Dockerfile. Environment: BENCH_QUICK=1,
// BENCH_ROUNDS, BENCH_SECONDS, BENCH_ONLY, BENCH_SIDECAR_NODE, BENCH_NODE24, see bench/README.md.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import process from 'node:process';
import { setTimeout as delay } from 'node:timers/promises';
import { URL } from 'node:url';
import { freePort, runningChildren, spawnChild, stopChild, terminateAll, waitForLine } from './lib/children.js';
import { LoadGenerator } from './lib/loadgen.js';
import { ensureGhostunnel } from './lib/ghostunnel.js';
import { ensureNginx, nginxVersion } from './lib/nginx.js';
import { findRedis, redisVersion } from './lib/redis.js';
import { runNotes } from './lib/notes.js';
import { benchOptions } from './lib/options.js';
import { makePki } from './lib/pki.js';
import { processTree, rssBytes } from './lib/proc.js';
import { markdownReport } from './lib/report.js';
import { measureRotation } from './lib/rotation.js';
import { canPin } from './lib/affinity.js';
import { runRounds } from './lib/rounds.js';
import { benchRows } from './lib/rows.js';
import { setImageNodeEnv, setImageNodeFlags, sidecarFeatures, warmCompileCache } from './lib/sidecar.js';
import { measurePair } from './lib/paired.js';
import { imageNode, imageNodeFlags, imageOpensslConf } from './lib/dockerfile.js';
import { compareNodes } from './lib/node-choice.js';
import { describeNode, ensureSecondNode, imageSidecarNode, SECOND_MAJOR, SECOND_SUFFIX } from './lib/sidecar-nodes.js';
import { measureSoak } from './lib/soak.js';
import { measureStartup } from './lib/startup.js';
import { summarize } from './lib/summary.js';
import { checkTargets, soakTargets } from './lib/targets.js';

const say = (/** @type {string} */ line) => process.stderr.write(`bench: ${line}\n`);
const fmt = (/** @type {number | undefined} */ v, digits = 0) => (v === undefined ? '?' : v.toFixed(digits));
/** The temporary directory of this run (certificates, logs), removed however the run ends. */
let workDir;

/**
 * JSON as Prettier prints it with the repository's settings (so that `prettier --check` passes on the results
 * file), or plain when Prettier is not installed.
 * @param {unknown} value
 * @param {string} file where it will be written
 */
async function formatJson(value, file) {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  try {
    const prettier = await import('prettier');
    const config = (await prettier.resolveConfig(file)) ?? {};
    return await prettier.format(text, { ...config, filepath: file });
  } catch {
    return text;
  }
}

/**
 * Machine facts for the report.
 * @param {string | undefined} nginx
 * @param {{ binary: string } | { missing: string } | undefined} redis
 * @param {import('./lib/ghostunnel.js').Ghostunnel | undefined} ghostunnel
 */
async function machine(nginx, redis, ghostunnel) {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(os.totalmem() / 1024 ** 3),
    kernel: `${os.type()} ${os.release()}`,
    node: process.versions.node,
    nginx: nginx ? await nginxVersion(nginx).catch(() => 'unknown version') : undefined,
    redis: redis && 'binary' in redis ? await redisVersion(redis.binary).catch(() => 'unknown version') : undefined,
    ghostunnel: ghostunnel && 'binary' in ghostunnel ? `${ghostunnel.version} (${ghostunnel.go})` : undefined,
  };
}

async function main() {
  const options = benchOptions();
  if (!existsSync(options.cli)) throw new Error(`${options.cli} not found: run \`npm run build\` first`);
  if (!existsSync(options.sidecarNode)) throw new Error(`BENCH_SIDECAR_NODE=${options.sidecarNode} not found`);
  const baseNode = await describeNode(options.sidecarNode, { suffix: '', tag: '' });
  const sidecarNode = {
    path: baseNode.path,
    version: baseNode.version,
    custom: options.sidecarNode !== process.execPath,
  };
  const image = imageNode(options.dockerfile);
  const started = new Date();
  const tmp = await mkdtemp(join(os.tmpdir(), 'spiffe-sidecar-bench-'));
  workDir = options.keepTmp ? undefined : tmp;
  const kind = options.soak ? `soak of ${options.soakSeconds} s` : options.quick ? 'quick run' : 'full run';
  say(`${kind}; work directory ${tmp} (certificates, logs; removed at the end)`);
  say(`sidecar on Node ${sidecarNode.version} (${sidecarNode.path}); bench on Node ${process.version}`);
  say(
    'error' in image
      ? `the image's Node: unknown (${image.error})`
      : `the image's Node: ${image.major} (${image.from})${image.runtimeMismatch ? `, but ${image.runtimeMismatch}` : ''}`,
  );
  /** @type {{ label: string, stop: () => Promise<void> }[]} */
  const stops = [];
  let loadgen;
  try {
    const [features, pki, nginx, redis, ghostunnel, secondNode] = await Promise.all([
      sidecarFeatures(options.cli, options.sidecarNode),
      makePki(options.cli, join(tmp, 'pki'), 3),
      // The soak measures the sidecar alone: no nginx to install, no store, no ghostunnel to build.
      options.soak ? undefined : ensureNginx(say),
      options.soak ? undefined : findRedis(),
      options.soak ? undefined : ensureGhostunnel(say, !options.only || options.only.includes('ghostunnel')),
      // The newer Node when a row or startup mode runs on it, or when it is the image's Node (for the soak).
      ensureSecondNode({
        say,
        base: baseNode,
        wanted: options.soak
          ? !('error' in image) && image.major === SECOND_MAJOR
          : !options.only || options.only.some((key) => key.endsWith(SECOND_SUFFIX)),
      }),
    ]);
    const onImage = imageSidecarNode(image, baseNode, secondNode);
    // The sidecars on the image's Node run with the node flags of the image's ENTRYPOINT (then
    // BENCH_SIDECAR_NODE_ARGS); on another Node, as `node dist/main.js` (how the package runs there).
    const entrypointFlags = imageNodeFlags(options.dockerfile);
    if ('error' in entrypointFlags) say(`the image's node flags: unknown (${entrypointFlags.error}); none used`);
    else if ('node' in onImage) {
      setImageNodeFlags(onImage.node.path, entrypointFlags);
      say(
        `the image's node flags, on the sidecars on Node ${onImage.node.version}: ${entrypointFlags.join(' ') || 'none'}`,
      );
    }
    // ...and with the image's OpenSSL configuration (its ENV OPENSSL_CONF, a file that the build puts in dist/).
    const opensslConf = imageOpensslConf(options.dockerfile);
    if ('error' in opensslConf) say(`the image's OpenSSL configuration: unknown (${opensslConf.error}); none used`);
    else if ('node' in onImage && opensslConf.distFile !== undefined) {
      const file = join(dirname(options.cli), opensslConf.distFile);
      // Node ignores an OPENSSL_CONF that does not exist: a dist/ built before the file was would be measured
      // without it, and the run would not know.
      if (!existsSync(file))
        throw new Error(`the image's OPENSSL_CONF: ${file} does not exist (npm run build makes it)`);
      setImageNodeEnv(onImage.node.path, { OPENSSL_CONF: file });
      say(`the image's OpenSSL configuration, on the sidecars on Node ${onImage.node.version}: OPENSSL_CONF=${file}`);
    }
    // Every sidecar starts as the image's does: with V8's code for its modules compiled once beforehand
    // (Dockerfile, NODE_COMPILE_CACHE), on the Nodes that have a compile cache.
    for (const node of [baseNode, ...('path' in secondNode ? [secondNode] : [])]) {
      const cached = await warmCompileCache(node.path, options.cli, join(tmp, `compile-cache${node.tag}`));
      say(`Node ${node.version}: ${cached ? 'compile cache warmed, as in the image' : 'no compile cache'}`);
    }
    say(
      `sidecar features: --workers ${features.workers ? 'yes' : 'no'}, --protocol ${features.protocol ? 'yes' : 'no'}`,
    );
    const appPort = await freePort();
    const app = spawnChild(process.execPath, [new URL('./servers/app.js', import.meta.url).pathname, String(appPort)], {
      logFile: join(tmp, 'app.log'),
      pipeStdout: true,
    });
    stops.push({ label: 'app', stop: () => stopChild(app) });
    await waitForLine(app, /listening \d+/, 10_000);
    const appPid = /** @type {number} */ (app.pid);
    const clientTls = {
      cert: readFileSync(join(pki.clientDir, 'tls.crt'), 'utf8'),
      key: readFileSync(join(pki.clientDir, 'tls.key'), 'utf8'),
      ca: readFileSync(join(pki.clientDir, 'ca.crt'), 'utf8'),
    };
    const ctx = {
      options,
      pki,
      tmp,
      appPort,
      appPid,
      nginx,
      nginxMissing:
        process.env.BENCH_NGINX === 'skip'
          ? 'skipped (BENCH_NGINX=skip)'
          : 'not available (could not be installed; see the log above)',
      features,
      clientTls,
      redis: redis ?? { missing: 'not used by the soak' },
      ghostunnel: ghostunnel ?? { missing: 'not used by the soak' },
      baseNode,
      secondNode,
    };
    if (redis && 'binary' in redis && (!options.only || options.only.includes('sidecar-mtls-rate-limit-store')))
      say(`redis-server: ${redis.binary} (for the rate-limit store row)`);
    loadgen = new LoadGenerator();

    /** @type {ReturnType<typeof summarize>} */
    let rows = [];
    /** @type {Awaited<ReturnType<typeof measureStartup>> | undefined} */
    let startup;
    /** @type {Awaited<ReturnType<typeof measureRotation>> | undefined} */
    let rotation;
    /** @type {import('./lib/paired.js').PairResult | undefined} */
    let auditPair;
    /** @type {import('./lib/soak.js').SoakResult | undefined} */
    let soak;
    /** @type {string[]} */
    let notes = [];
    /** @type {import('./lib/targets.js').TargetResult[]} */
    let targets;
    /** @type {import('./lib/node-choice.js').NodeChoice | undefined} */
    let nodeChoice;
    if (options.soak) {
      // On the image's Node, so that the soak proves the memory of what ships; on the base Node, with the
      // reason (and a MISS), when the image's is not to be had.
      const node =
        'node' in onImage
          ? { ...onImage.node, image: true, note: undefined }
          : { ...baseNode, image: false, note: onImage.missing.replace(/^not run: /, '') };
      say(
        `soak: the sidecar on Node ${node.version}${node.image ? " (the image's)" : ` (NOT the image's: ${node.note})`}`,
      );
      soak = await measureSoak({ options, pki, tmp, appPort, appPid, loadgen, clientTls, say, node }).catch((err) => {
        say(`soak: failed: ${err.message}`);
        return undefined;
      });
      if (soak) {
        say(
          `soak: ${soak.failures} failed of ${soak.requests} requests, ${soak.rotations} rotations, RSS ` +
            `${fmt(soak.rss.growthPercent, 1)}% after warm-up`,
        );
      }
      targets = soakTargets(soak, options.soakSeconds);
    } else {
      ({ rows, startup, rotation, auditPair, notes, targets, nodeChoice } = await measureTable({
        ctx,
        loadgen,
        stops,
        onImage,
      }));
    }
    for (const { stop } of stops.splice(0).reverse()) await stop();

    const meta = {
      date: started.toISOString(),
      durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
      machine: await machine(nginx, redis, ghostunnel),
      sidecarNode,
      nodes: {
        second: 'path' in secondNode ? { version: secondNode.version, path: secondNode.path } : secondNode,
        image,
        imageRun: 'node' in onImage ? onImage.node.version : onImage.missing,
      },
      options: { ...options, cli: relative(process.cwd(), options.cli) },
      sidecarFeatures: { workers: features.workers, protocol: features.protocol },
      latencyPinned: canPin(),
    };
    const markdown = markdownReport({ meta, rows, startup, rotation, soak, targets, notes, nodeChoice });
    const json = options.soak
      ? { meta, soak, targets }
      : { meta, rows, startup, rotation, auditPair, nodeChoice, targets };
    await mkdir(dirname(options.out), { recursive: true });
    await writeFile(options.out, await formatJson(json, options.out));
    // On the terminal, without what only the file needs (every round, every RSS sample).
    const compact = soak
      ? {
          ...json,
          soak: { ...soak, rss: { ...soak.rss, samplesMb: `${soak.rss.samplesMb.length} samples, in the file` } },
        }
      : {
          ...json,
          rows: rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'rounds'))),
        };
    process.stdout.write(`${markdown}\n`);
    process.stdout.write(`\n\`\`\`json\n${JSON.stringify(compact, null, 2)}\n\`\`\`\n`);
    say(
      `JSON (with every ${soak ? 'RSS sample' : 'round'}) written to ${relative(process.cwd(), options.out)}; took ${meta.durationSeconds} s`,
    );
  } finally {
    loadgen?.close();
    for (const { stop } of stops.reverse()) await stop().catch(() => {});
    if (options.keepTmp) say(`kept ${tmp}`);
    else await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * The table: every row in interleaved rounds, startup and the rotation row.
 * @param {{ ctx: import('./lib/rows.js').RowContext, loadgen: LoadGenerator,
 *   stops: { label: string, stop: () => Promise<void> }[],
 *   onImage: ReturnType<typeof imageSidecarNode> }} input `onImage`: which Node is the image's, or why none is
 */
async function measureTable({ ctx, loadgen, stops, onImage }) {
  const { options, pki, tmp, appPort, appPid, clientTls, baseNode, secondNode } = ctx;
  const ran = (/** @type {string} */ key) => !options.only || options.only.includes(key);
  // Startup on each Node this run has: `startup` the base one, `startup-node24` the newer one.
  const startupNodes = [
    ...(ran('startup') ? [baseNode] : []),
    ...('path' in secondNode && ran(`startup${SECOND_SUFFIX}`) ? [secondNode] : []),
  ];
  // Start every row, then read its idle RSS once all have settled.
  /** @type {import('./lib/summary.js').RowRecord[]} */
  const records = [];
  /** @type {Map<string, import('./lib/rows.js').Started>} */
  const running = new Map();
  for (const row of benchRows(ctx)) {
    const record = { row, unavailable: row.unavailable, rounds: [], failures: [] };
    records.push(record);
    if (row.unavailable) {
      say(`${row.key}: ${row.unavailable}`);
      continue;
    }
    try {
      const s = await row.start();
      running.set(row.key, s);
      stops.push({ label: row.key, stop: s.stop });
      record.readyMs = s.readyMs;
      if (s.side) record.side = s.side.name;
    } catch (err) {
      record.failures.push(`start: ${/** @type {Error} */ (err).message}`);
      say(`${row.key}: could not start: ${/** @type {Error} */ (err).message}`);
    }
  }
  await delay(500);
  for (const record of records) {
    const s = running.get(record.row.key);
    if (s && record.row.kind !== 'direct') record.rssIdleBytes = rssBytes(processTree(s.pid));
    if (s?.side) record.sideRssIdleBytes = rssBytes(processTree(s.side.pid));
  }

  const startup =
    startupNodes.length > 0
      ? await measureStartup({ options, pki, tmp, appPort, nodes: startupNodes }).catch((err) => {
          say(`startup: failed: ${err.message}`);
          return undefined;
        })
      : undefined;
  if (startup) {
    const modes = Object.entries(startup.modes).map(([mode, s]) =>
      s.error ? `${mode} failed (${s.error})` : `${mode} ${fmt(s.medianMs)} ms (CPU ${fmt(s.cpuMedianMs)} ms)`,
    );
    const bare = startup.nodes.map(({ tag, version }) => `bare Node ${version} ${fmt(startup.bare[tag].medianMs)} ms`);
    say(`startup to ready, medians: ${modes.join(', ')}; ${bare.join(', ')}`);
  }

  await runRounds({ records, running, loadgen, options, appPid, say });

  // The audit line's price, read from adjacent windows of the two rows that differ by it alone (paired.js).
  const withLine = running.get('sidecar-mtls');
  const withoutLine = running.get('sidecar-mtls-quiet');
  const auditPair =
    withLine && withoutLine
      ? await measurePair({
          loadgen,
          options,
          a: { key: 'sidecar-mtls', started: withLine },
          b: { key: 'sidecar-mtls-quiet', started: withoutLine },
          appPid,
          pairs: options.quick ? 2 : 12,
        }).catch((err) => {
          say(`audit line, paired windows: failed: ${err.message}`);
          return undefined;
        })
      : undefined;
  if (auditPair) {
    say(
      `audit line, paired windows: without it ${auditPair.ratios.map((r) => r.toFixed(3)).join(', ')} of the CPU ` +
        `per request with it; median ${auditPair.median.toFixed(3)}${auditPair.errors ? `, FAILED ${auditPair.errors}` : ''}`,
    );
  }

  const rotation = ran('rotation')
    ? await measureRotation({ options, pki, tmp, appPort, loadgen, clientTls }).catch((err) => {
        say(`rotation: failed: ${err.message}`);
        return undefined;
      })
    : undefined;
  if (rotation) say(`rotation: ${rotation.failures} failed requests over ${rotation.rotations} rotations`);

  for (const { stop } of stops.splice(0).reverse()) await stop();

  const rows = summarize(records);
  const notes = await runNotes(rows, tmp, auditPair);
  // The Nodes the sidecar ran on here: the base one, and the newer one when a row or startup mode used it.
  const usedSecond =
    'path' in secondNode &&
    (rows.some((r) => r.node?.suffix === SECOND_SUFFIX && r.measured) || startupNodes.includes(secondNode));
  const nodes = usedSecond
    ? [baseNode, /** @type {import('./lib/sidecar-nodes.js').SidecarNode} */ (secondNode)]
    : [baseNode];
  const image =
    'node' in onImage && nodes.includes(onImage.node)
      ? onImage
      : 'missing' in onImage
        ? onImage
        : { missing: `not run (BENCH_ONLY: nothing on the image's Node ${onImage.node.version})` };
  const targets = checkTargets(
    rows,
    startup,
    rotation,
    { startup: ran('startup'), rotation: ran('rotation') },
    auditPair,
    {
      base: baseNode,
      all: nodes,
      image,
    },
  );
  const nodeChoice = compareNodes(rows, startup, nodes, 'node' in image ? image.node : undefined);
  return { rows, startup, rotation, auditPair, notes, targets, nodeChoice };
}

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(signal, () => {
    terminateAll();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    process.exit(130);
  });
}

main().catch((err) => {
  say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (runningChildren().length > 0) terminateAll();
  process.exitCode = 1;
});
