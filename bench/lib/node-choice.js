// The Node-dependent targets of issue 17 (new mTLS connections/s, RSS, startup) measured on each Node the
// sidecar ran on in this run: the targets judge the image's Node (its major read from the Dockerfile), and the
// report puts every Node's value side by side, one line per target, so that the image's Node can be chosen by
// these numbers ("we chose Node X because ...") rather than by what the bench happened to run on.

import { FLOOR_ROW } from './rows.js';
import { ratio } from './stats.js';

const MB = 1024 * 1024;

/** @typedef {ReturnType<typeof import('./summary.js').summarize>[number]} SummaryRow */
/** @typedef {{ version: string, suffix: string, tag: string }} RunNode the parts of a SidecarNode used here */

/**
 * @typedef {object} NodeMeasure
 * @property {number | undefined} value
 * @property {string} measured what the targets table shows
 * @property {string} short what the side-by-side line shows
 * @property {string} [missing] why there is no value
 */

/**
 * @typedef {object} NodeTarget
 * @property {string} key
 * @property {string} target as the targets table names it
 * @property {(v: number) => boolean} ok
 * @property {(rows: SummaryRow[], startup: import('./startup.js').StartupResult | undefined, node: RunNode)
 *   => NodeMeasure} measure
 * @property {(rows: SummaryRow[], node: RunNode) => number | undefined} [overBase] this Node over the base Node,
 *   taken within each round (the rows' `vsBaseline`)
 */

const fmt = (/** @type {number | undefined} */ v, digits = 2) => (v === undefined ? '?' : v.toFixed(digits));
const num = (/** @type {number | undefined} */ v) => (v === undefined ? '?' : Math.round(v).toLocaleString('en-US'));

/** @param {SummaryRow | undefined} r */
function why(r) {
  if (!r) return 'not run (BENCH_ONLY)';
  if (r.unavailable) return r.unavailable.startsWith('skipped') ? `not run (${r.unavailable})` : r.unavailable;
  return r.measured ? undefined : (r.failures[0] ?? 'failed');
}

/** @param {SummaryRow[]} rows */
function noNginx(rows) {
  const nginx = rows.find((r) => r.key === 'nginx');
  return nginx?.measured ? undefined : `no nginx${nginx?.unavailable ? `: ${nginx.unavailable}` : ''}`;
}

/** @param {SummaryRow[]} rows @param {RunNode} node */
const mtlsRow = (rows, node) => rows.find((r) => r.key === `sidecar-mtls${node.suffix}`);

/**
 * An RSS target of the mTLS row.
 * @param {string} key
 * @param {string} target
 * @param {number} limitMb
 * @param {(r: SummaryRow) => number | undefined} bytes
 * @returns {NodeTarget}
 */
const rssTarget = (key, target, limitMb, bytes) => ({
  key,
  target,
  ok: (v) => v <= limitMb,
  measure: (rows, _startup, node) => {
    const r = mtlsRow(rows, node);
    const b = r ? bytes(r) : undefined;
    const value = b === undefined ? undefined : b / MB;
    // What the same Node needs to relay the same load with nothing of ours: the line's distance from the floor.
    const floor = rows.find((x) => x.key === `${FLOOR_ROW}${node.suffix}`);
    const floorBytes = floor?.measured ? bytes(floor) : undefined;
    const beside =
      floorBytes === undefined ? '' : `; a minimal Node \`tls\` relay on this Node: ${fmt(floorBytes / MB, 1)} MB`;
    return { value, measured: `${fmt(value, 1)} MB${beside}`, short: `${fmt(value, 1)} MB`, missing: why(r) };
  },
});

/**
 * A startup target of one mode.
 * @param {import('./startup.js').StartupMode} mode
 * @param {string} label
 * @returns {NodeTarget}
 */
const startupTarget = (mode, label) => ({
  key: `startup-${mode}`,
  target: `Startup to ready ≤ 150 ms median (${label})`,
  ok: (v) => v <= 150,
  measure: (_rows, startup, node) => {
    const s = startup?.modes[`${mode}${node.tag}`];
    // A series that failed in any run misses, even if earlier runs gave a median.
    const value = s?.error ? undefined : s?.medianMs;
    const missing = !s ? 'not run (BENCH_ONLY)' : s.error ? `failed: ${s.error}` : 'failed';
    return {
      value,
      measured: `${fmt(value, 0)} ms (CPU ${fmt(s?.cpuMedianMs, 0)} ms)`,
      short: `${fmt(value, 0)} ms`,
      missing,
    };
  },
});

/** @type {NodeTarget[]} */
export const NODE_TARGETS = [
  {
    key: 'new-connections',
    target: 'New mTLS connections/s ≥ 1.0× nginx',
    ok: (v) => v >= 1,
    measure: (rows, _startup, node) => {
      const r = mtlsRow(rows, node);
      const nginx = rows.find((x) => x.key === 'nginx');
      const value = r?.vsNginx.newConnRps;
      return {
        value,
        measured: `${fmt(value)}× nginx (${num(r?.newConn.rps)}/s vs ${num(nginx?.newConn.rps)}/s)`,
        short: `${fmt(value)}× nginx (${num(r?.newConn.rps)}/s)`,
        missing: noNginx(rows) ?? why(r),
      };
    },
    overBase: (rows, node) => mtlsRow(rows, node)?.vsBaseline?.newConnRps,
  },
  rssTarget('rss-loaded', 'Peak RSS under keep-alive load ≤ 75 MB', 75, (r) => r.rssKeepAliveBytes),
  rssTarget('rss-idle', 'RSS idle ≤ 50 MB', 50, (r) => r.rssIdleBytes),
  startupTarget('file', 'file mode'),
  startupTarget('jwt', 'JWT mode'),
  startupTarget('spire', 'SPIRE mode'),
];

/**
 * Context lines beside the targets: what else differs between the Nodes (not Node-dependent targets of the
 * issue, but part of the choice).
 * @type {{ what: string, value: (rows: SummaryRow[], node: RunNode) => string,
 *   overBase: (rows: SummaryRow[], node: RunNode) => number | undefined }[]}
 */
const CONTEXT = [
  {
    what: 'Keep-alive mTLS L7 req/s (× nginx)',
    value: (rows, node) => {
      const r = mtlsRow(rows, node);
      return r?.measured ? `${num(r.keepAlive.rps)} (${fmt(r.vsNginx.keepAliveRps)}×)` : '–';
    },
    overBase: (rows, node) => mtlsRow(rows, node)?.vsBaseline?.keepAliveRps,
  },
  {
    what: 'CPU µs per keep-alive request, L7 (× nginx)',
    value: (rows, node) => {
      const r = mtlsRow(rows, node);
      return r?.measured ? `${num(r.keepAlive.cpuUsPerRequest)} (${fmt(r.vsNginx.cpuUsPerRequest)}×)` : '–';
    },
    overBase: (rows, node) => mtlsRow(rows, node)?.vsBaseline?.cpuUsPerRequest,
  },
  {
    what: 'CPU µs per keep-alive request, L4',
    value: (rows, node) => {
      const r = rows.find((x) => x.key === `sidecar-l4${node.suffix}`);
      return r?.measured ? num(r.keepAlive.cpuUsPerRequest) : '–';
    },
    overBase: (rows, node) => rows.find((x) => x.key === `sidecar-l4${node.suffix}`)?.vsBaseline?.cpuUsPerRequest,
  },
];

/**
 * @typedef {object} NodeChoice
 * @property {{ version: string, image: boolean }[]} nodes the Nodes side by side, the base one first
 * @property {{ what: string, values: string[], overBase?: number }[]} lines one per target (then context),
 *   each Node's value with PASS/MISS, and the newer Node over the base one within rounds
 */

/**
 * Every Node's value of every Node-dependent target, side by side; undefined when only one Node ran.
 * @param {SummaryRow[]} rows
 * @param {import('./startup.js').StartupResult | undefined} startup
 * @param {RunNode[]} nodes the base Node first
 * @param {RunNode | undefined} image the image's Node, if it ran
 * @returns {NodeChoice | undefined}
 */
export function compareNodes(rows, startup, nodes, image) {
  if (nodes.length < 2) return undefined;
  const last = nodes[nodes.length - 1];
  const lines = NODE_TARGETS.map((t) => {
    const measures = nodes.map((node) => t.measure(rows, startup, node));
    return {
      what: t.target,
      values: measures.map((m) =>
        m.value === undefined ? `– (${m.missing ?? 'not measured'})` : `${m.short} ${t.ok(m.value) ? 'PASS' : 'MISS'}`,
      ),
      // Within rounds where the rows have rounds; RSS and startup medians as they are.
      overBase: t.overBase?.(rows, last) ?? ratio(measures[measures.length - 1].value, measures[0].value),
    };
  });
  for (const c of CONTEXT) {
    lines.push({ what: c.what, values: nodes.map((node) => c.value(rows, node)), overBase: c.overBase(rows, last) });
  }
  return { nodes: nodes.map((n) => ({ version: n.version, image: n.version === image?.version })), lines };
}
