// The Nodes the sidecar runs on in one run: the base one (BENCH_SIDECAR_NODE, by default the bench's own) for
// every sidecar row, and the newer major (24, from the npm registry's `node` package through
// bench/node-version.js) for the `-node24` rows and the `@24` startup modes, so that one run compares the two
// and the image's Node can be chosen by numbers. Without the newer Node (BENCH_NODE24=skip, no registry) the
// bench says why and goes on without those rows, as without nginx.
import { execFile } from 'node:child_process';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { promisify } from 'node:util';
import { nodeVersion } from './sidecar.js';

const run = promisify(execFile);

/** The newer major the `-node24` rows run on. */
export const SECOND_MAJOR = 24;
/** The suffix of their row keys (and of `startup-node24` in BENCH_ONLY). */
export const SECOND_SUFFIX = `-node${SECOND_MAJOR}`;

/**
 * @typedef {object} SidecarNode
 * @property {string} path the node binary
 * @property {string} version `v24.21.0`
 * @property {number} major
 * @property {string} suffix row keys: '' for the base Node, '-node24' for the newer
 * @property {string} tag startup modes: '' for the base Node, '@24' for the newer
 */

/**
 * A node binary as a SidecarNode.
 * @param {string} path
 * @param {{ suffix: string, tag: string }} names
 * @returns {Promise<SidecarNode>}
 */
export async function describeNode(path, names) {
  const version = await nodeVersion(path);
  return { path, version, major: Number(/^v(\d+)/.exec(version)?.[1]), ...names };
}

/**
 * The newer Node, installed into its cache when missing (bench/node-version.js, minutes the first time);
 * `{ missing }` with the reason (logged) when it is skipped, not needed or cannot be had.
 * @param {{ say: (line: string) => void, base: SidecarNode, wanted: boolean }} input `wanted`: whether this
 *   run has a row or startup mode on it (BENCH_ONLY), or needs it as the image's Node (the soak)
 * @returns {Promise<SidecarNode | { missing: string }>}
 */
export async function ensureSecondNode({ say, base, wanted }) {
  if (process.env.BENCH_NODE24 === 'skip') {
    say(`Node ${SECOND_MAJOR}: skipped (BENCH_NODE24=skip): no ${SECOND_SUFFIX} rows, no @${SECOND_MAJOR} startup`);
    return { missing: 'skipped (BENCH_NODE24=skip)' };
  }
  if (base.major === SECOND_MAJOR) {
    return { missing: `the sidecar rows already run on Node ${base.version} (BENCH_SIDECAR_NODE)` };
  }
  if (!wanted) return { missing: 'not run (not needed: no row of BENCH_ONLY or the soak runs on it)' };
  const script = fileURLToPath(new URL('../node-version.js', import.meta.url));
  try {
    // Its progress (and npm's) on stderr; stdout is the binary's path alone.
    const { stdout } = await run(process.execPath, [script, String(SECOND_MAJOR)], {
      timeout: 10 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const node = await describeNode(stdout.trim().split('\n').at(-1) ?? '', {
      suffix: SECOND_SUFFIX,
      tag: `@${SECOND_MAJOR}`,
    });
    say(`Node ${SECOND_MAJOR}: ${node.version} (${node.path})`);
    return node;
  } catch (err) {
    const e = /** @type {Error & { stderr?: string }} */ (err);
    // npm's own error (FetchError: ... ECONNREFUSED) says more than the script's "Command failed" after it.
    const lines = (e.stderr ?? '').split('\n');
    const why = (
      lines.find((l) => /^npm error \w*Error: /.test(l))?.replace(/^npm error /, '') ??
      lines.find((l) => /^Error: /.test(l)) ??
      e.message.split('\n')[0]
    ).slice(0, 300);
    say(`Node ${SECOND_MAJOR}: could not be installed (${why}): going on without it`);
    return { missing: `not available (Node ${SECOND_MAJOR} could not be installed: ${why})` };
  }
}

/**
 * Which of this run's Nodes is the image's, by major; `{ missing }` when neither is: "not run …" when the newer
 * Node was left out on purpose (BENCH_NODE24=skip, BENCH_ONLY), so that its targets read n/a, not MISS.
 * @param {import('./dockerfile.js').ImageNode} image
 * @param {SidecarNode} base
 * @param {SidecarNode | { missing: string }} second
 * @returns {{ node: SidecarNode } | { missing: string, major?: number }}
 */
export function imageSidecarNode(image, base, second) {
  if ('error' in image) return { missing: `the image's Node is unknown (${image.error})` };
  const { major } = image;
  if (major === base.major) return { node: base };
  if ('path' in second && major === second.major) return { node: second };
  if ('missing' in second && major === SECOND_MAJOR) {
    const onPurpose = /^(skipped|not run)/.test(second.missing);
    return { major, missing: `${onPurpose ? 'not run: ' : ''}the image's Node ${major}: ${second.missing}` };
  }
  return {
    major,
    missing:
      `the image's Node ${major} (Dockerfile) ran no sidecar here: the bench has Node ${base.major} and ` +
      `${SECOND_MAJOR} (BENCH_SIDECAR_NODE=/path/to/node${major} runs the sidecar rows on it)`,
  };
}
