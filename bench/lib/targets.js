// The targets of issue 17 (performance; the JWT and rotation ones from issue 11), checked against one run's summary. Each is PASS or MISS; "n/a" only when its
// reference could not be measured (no nginx), with the reason. The Node-dependent ones (new mTLS connections/s,
// RSS, startup: bench/lib/node-choice.js) are judged on the rows of the image's Node and name it; the others on
// the base Node's rows, named too when this run had another.
import { NODE_TARGETS } from './node-choice.js';
import { median, medianInterval } from './stats.js';

const MB = 1024 * 1024;
/** The soak's length in the issue: 10 minutes. */
const SOAK_TARGET_SECONDS = 600;

/**
 * @typedef {object} TargetResult
 * @property {string} target
 * @property {'PASS' | 'MISS' | 'n/a'} status
 * @property {string} measured
 */

/**
 * @param {ReturnType<typeof import('./summary.js').summarize>} rows
 * @param {Awaited<ReturnType<typeof import('./startup.js').measureStartup>> | undefined} startup
 * @param {{ failures: number, rotations: number, distinctServerCertificates: number } | undefined} rotation
 * @param {{ startup: boolean, rotation: boolean }} ran whether startup and rotation were part of this run
 * @param {import('./paired.js').PairResult | undefined} auditPair the audit line's paired windows (paired.js)
 * @param {{ base: import('./node-choice.js').RunNode, all: import('./node-choice.js').RunNode[],
 *   image: { node: import('./node-choice.js').RunNode } | { missing: string, major?: number } }} nodes the Nodes
 *   the sidecar ran on (the base one first), and which is the image's (or why none is)
 * @returns {TargetResult[]}
 */
export function checkTargets(rows, startup, rotation, ran, auditPair, nodes) {
  const row = (/** @type {string} */ key) => rows.find((r) => r.key === key);
  const nginx = row('nginx');
  const mtls = row('sidecar-mtls');
  const w2 = row('sidecar-mtls-w2');
  const jwt = row('sidecar-jwt');
  const quiet = row('sidecar-mtls-quiet');
  const l4 = row('sidecar-l4');
  const noNginx = !nginx?.measured ? `no nginx${nginx?.unavailable ? `: ${nginx.unavailable}` : ''}` : undefined;
  /** @type {TargetResult[]} */
  const out = [];
  const fmt = (/** @type {number | undefined} */ v, digits = 2) => (v === undefined ? '?' : v.toFixed(digits));
  /**
   * @param {string} target
   * @param {number | undefined} value
   * @param {(v: number) => boolean} ok
   * @param {string} measured
   * @param {string} [missing] why the value is missing
   */
  const add = (target, value, ok, measured, missing) => {
    if (value === undefined) {
      const why = missing ?? 'not measured';
      const notApplicable = why.startsWith('no nginx') || why.startsWith('not run');
      out.push({ target, status: notApplicable ? 'n/a' : 'MISS', measured: why });
    } else {
      out.push({ target, status: ok(value) ? 'PASS' : 'MISS', measured });
    }
  };
  const imageNode = 'node' in nodes.image ? nodes.image.node : undefined;
  /** Targets judged on the image's Node (and not on the base Node) */
  const onImage = new Set();
  /**
   * A Node-dependent target on the image's Node's rows, with the other Nodes' values beside it.
   * @param {string} key
   */
  const onImageNode = (key) => {
    const t = /** @type {import('./node-choice.js').NodeTarget} */ (NODE_TARGETS.find((x) => x.key === key));
    if (!imageNode) {
      const missing = /** @type {{ missing: string, major?: number }} */ (nodes.image);
      out.push({
        target: `${t.target} (the image's Node${missing.major ? ` ${missing.major}` : ''})`,
        status: missing.missing.startsWith('not run') ? 'n/a' : 'MISS',
        measured: missing.missing,
      });
    } else {
      const m = t.measure(rows, startup, imageNode);
      const others = nodes.all
        .filter((n) => n !== imageNode)
        .map((n) => ({ n, other: t.measure(rows, startup, n) }))
        .filter(({ other }) => other.value !== undefined)
        .map(({ n, other }) => `Node ${n.version.slice(1)}: ${other.short}`);
      const measured = [m.measured, ...others].join('; ');
      add(`${t.target} (the image's Node ${imageNode.version.slice(1)})`, m.value, t.ok, measured, m.missing);
    }
    onImage.add(out.length - 1);
  };
  const why = (/** @type {typeof mtls} */ r) =>
    !r ? 'not run (BENCH_ONLY)' : r.unavailable ? r.unavailable : r.measured ? undefined : (r.failures[0] ?? 'failed');
  const ka = mtls?.vsNginx.keepAliveRps;
  add('Keep-alive mTLS L7 req/s ≥ 0.8× nginx', ka, (v) => v >= 0.8, `${fmt(ka)}× nginx`, noNginx ?? why(mtls));
  const kaW2 = w2?.vsNginx.keepAliveRps;
  add(
    'Keep-alive mTLS L7 req/s with `--workers 2` ≥ 0.9× nginx',
    kaW2,
    (v) => v >= 0.9,
    `${fmt(kaW2)}× nginx`,
    why(w2) ?? noNginx,
  );
  const cpu = mtls?.vsNginx.cpuUsPerRequest;
  add(
    'CPU per keep-alive request ≤ 1.5× nginx',
    cpu,
    (v) => v <= 1.5,
    `${fmt(cpu)}× nginx (${fmt(mtls?.keepAlive.cpuUsPerRequest, 0)} µs vs ${fmt(nginx?.keepAlive.cpuUsPerRequest, 0)} µs)`,
    noNginx ?? why(mtls),
  );
  onImageNode('new-connections');
  const lat = mtls?.vsNginx.addedP50;
  add(
    'Unloaded added latency (p50 over direct) ≤ 1.2× nginx',
    lat,
    (v) => v <= 1.2,
    `${fmt(lat)}× nginx (+${fmt(mtls?.latency.addedP50Ms, 3)} ms vs +${fmt(nginx?.latency.addedP50Ms, 3)} ms)`,
    noNginx ?? why(mtls),
  );
  // L7 over the sidecar's own L4 relay, from L4's ratio to L7 in each round.
  const l4Cpu = l4?.vsSidecarMtls.cpuUsPerRequest;
  const overL4 = l4Cpu === undefined || l4Cpu === 0 ? undefined : 1 / l4Cpu;
  add(
    "CPU per keep-alive request ≤ 1.4× the sidecar's L4 mode",
    overL4,
    (v) => v <= 1.4,
    `${fmt(overL4)}× L4 (${fmt(mtls?.keepAlive.cpuUsPerRequest, 0)} µs vs ${fmt(l4?.keepAlive.cpuUsPerRequest, 0)} µs)`,
    why(l4) ?? why(mtls),
  );
  // What the audit line costs: the default row against the same sidecar at --log-level warn. From the paired
  // windows when they ran (adjacent windows, paired.js: the rounds' windows are a minute apart, and their noise
  // is larger than the line); from the rounds otherwise.
  const pairedQuiet = auditPair && auditPair.ratios.length > 0 && !auditPair.errors ? auditPair.median : undefined;
  const quietCpu = pairedQuiet ?? quiet?.vsSidecarMtls.cpuUsPerRequest;
  const audit = quietCpu === undefined ? undefined : 1 - quietCpu;
  const pairedUs = (/** @type {number[] | undefined} */ v) => fmt(v && v.length ? median(v) : undefined, 0);
  // The median's 90% interval (distribution-free), as the line's cost: judged on the median like every target,
  // said when the interval crosses the line.
  const interval = auditPair ? medianInterval(auditPair.ratios) : undefined;
  const span = interval
    ? `; ${Math.round(interval.coverage * 100)}% interval ${fmt((1 - interval.high) * 100, 1)}% to ${fmt((1 - interval.low) * 100, 1)}%` +
      (1 - interval.low > 0.1 && 1 - interval.high <= 0.1 ? ', crossing the line' : '')
    : '';
  add(
    "The per-request audit line ≤ 10% of a request's CPU",
    audit,
    (v) => v <= 0.1,
    pairedQuiet !== undefined && auditPair
      ? `${fmt(audit === undefined ? undefined : audit * 100, 1)}% (median of ${auditPair.ratios.length} pairs of adjacent windows${span}; ` +
          `${pairedUs(auditPair.aCpuUs)} µs with, ${pairedUs(auditPair.bCpuUs)} µs without); in the rounds: ` +
          `${fmt(quiet?.vsSidecarMtls.cpuUsPerRequest === undefined ? undefined : (1 - quiet.vsSidecarMtls.cpuUsPerRequest) * 100, 1)}%`
      : `${fmt(audit === undefined ? undefined : audit * 100, 1)}% (${fmt(mtls?.keepAlive.cpuUsPerRequest, 0)} µs with, ${fmt(quiet?.keepAlive.cpuUsPerRequest, 0)} µs without)`,
    why(quiet) ?? why(mtls),
  );
  // What counting in Redis costs over local buckets: the same policy, one EVALSHA per request (a guide of the
  // bench's, not an issue target). redis-server's own CPU is shown beside it, not in the ratio.
  const local = row('sidecar-mtls-rate-limit-local');
  const store = row('sidecar-mtls-rate-limit-store');
  const storeTarget = 'Rate-limit store: CPU per keep-alive request ≤ 1.3× local buckets (bench guide)';
  if (store?.unavailable) {
    out.push({
      target: storeTarget,
      status: 'n/a',
      measured: `redis-server ${store.unavailable.replace(/^redis-server /, '')}`,
    });
  } else if (store?.invalid) {
    out.push({ target: storeTarget, status: 'MISS', measured: `invalid: ${store.invalid.join('; ')}` });
  } else {
    const storeCpu = store?.vsBaseline?.cpuUsPerRequest;
    add(
      storeTarget,
      storeCpu,
      (v) => v <= 1.3,
      `${fmt(storeCpu)}× (${fmt(store?.keepAlive.cpuUsPerRequest, 0)} µs vs ${fmt(local?.keepAlive.cpuUsPerRequest, 0)} µs); ` +
        `redis-server +${fmt(store?.side?.keepAliveCpuUsPerRequest, 1)} µs/req (together ${fmt(store?.vsBaseline?.totalCpuUsPerRequest)}×); ` +
        `added latency p50 ${fmt(store?.vsBaseline?.addedP50)}×`,
      why(store) ?? why(local),
    );
  }
  for (const key of ['rss-loaded', 'rss-idle', 'startup-file', 'startup-jwt', 'startup-spire']) onImageNode(key);
  const jwtNew = jwt?.vsSidecarMtls.newConnRps;
  add(
    'JWT plain new-connection req/s ≥ 5× mTLS new connections/s',
    jwtNew,
    (v) => v >= 5,
    `${fmt(jwtNew)}× mTLS`,
    why(jwt) ?? why(mtls),
  );
  const jwtKa = jwt?.vsSidecarMtls.keepAliveRps;
  add(
    'JWT keep-alive req/s ≥ 0.95× mTLS keep-alive',
    jwtKa,
    (v) => v >= 0.95,
    `${fmt(jwtKa)}× mTLS`,
    why(jwt) ?? why(mtls),
  );
  add(
    'Zero failed requests while the SVID rotates every second',
    rotation?.failures,
    (v) => v === 0 && (rotation?.distinctServerCertificates ?? 0) >= 2,
    rotation
      ? `${rotation.failures} failed; ${rotation.rotations} rotations, ${rotation.distinctServerCertificates} server certificates seen`
      : '',
    ran.rotation ? 'failed' : 'not run (BENCH_ONLY)',
  );
  // The other targets ran on the base Node: say which when that is not plainly the image's alone.
  if (nodes.all.length > 1 || imageNode !== nodes.base) {
    const tag = `(${imageNode === nodes.base ? "the image's " : ''}Node ${nodes.base.version.slice(1)})`;
    return out.map((t, i) => (onImage.has(i) ? t : { ...t, target: `${t.target} ${tag}` }));
  }
  return out;
}

/**
 * The soak's targets (`--soak`): memory that does not creep, and no request lost over its length. A soak
 * shorter than the issue's 10 minutes is judged all the same, and says so; one not on the image's Node names
 * the Node it ran on and misses (it does not prove the image's memory).
 * @param {import('./soak.js').SoakResult | undefined} soak undefined when it failed
 * @param {number} seconds how long the soak was asked to run
 * @returns {TargetResult[]}
 */
export function soakTargets(soak, seconds) {
  const growth = soak?.rss.growthPercent;
  const mb = (/** @type {number | undefined} */ v) => (v === undefined ? '?' : (v / MB).toFixed(1));
  const node = soak ? ` (${soak.node.image ? "the image's " : ''}Node ${soak.node.version.slice(1)})` : '';
  const notImage = soak && !soak.node.image ? `; not the image's Node: ${soak.node.note ?? '?'}` : '';
  const short = seconds < SOAK_TARGET_SECONDS ? `; a ${seconds} s soak, the target's is ${SOAK_TARGET_SECONDS} s` : '';
  return [
    {
      target:
        'Flat RSS (≤ 5% growth after warm-up) over 10 minutes at half capacity with connections churning and the ' +
        `SVID rotating${node}`,
      status: growth !== undefined && growth <= 5 && !notImage ? 'PASS' : 'MISS',
      measured:
        (growth === undefined
          ? soak
            ? 'too few RSS samples after the warm-up'
            : 'failed'
          : `${growth >= 0 ? '+' : ''}${growth.toFixed(1)}% (${mb(soak?.rss.afterWarmupBytes)} → ${mb(soak?.rss.endBytes)} MB, max ${mb(soak?.rss.maxBytes)} MB)`) +
        short +
        notImage,
    },
    {
      target: `Zero failed requests during the soak${node}`,
      status: soak?.failures === 0 ? 'PASS' : 'MISS',
      measured: soak
        ? `${soak.failures} failed of ${soak.requests.toLocaleString('en-US')}; ${soak.rotations} rotations, ` +
          `${soak.distinctServerCertificates} server certificates seen`
        : 'failed',
    },
  ];
}
