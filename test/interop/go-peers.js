// The reference peers the interop suite and the bench run against: SPIRE, helm, ghostunnel (built from the Go
// module proxy at pinned versions) and our go-spiffe programs (test/interop/go). Each is built once into a cache
// outside the work tree, keyed by module version (or, for our programs, by a hash of their sources) and Go version,
// so a second run starts at once. Nothing here is committed but the versions: the modules are fetched at build time.
//
// Plain JavaScript (with go-peers.d.ts beside it) because the bench, which is plain Node, builds ghostunnel too.
// As a command: `node test/interop/go-peers.js [name...]` builds the named peers (all when none) and prints where.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

/**
 * @typedef {{ module: string, version: string, packages: Record<string, string>, linkerVars?: Record<string, string> }} RemotePeer
 * @typedef {{ local: string, packages: Record<string, string>, linkerVars?: undefined }} LocalPeer
 */

/**
 * The peers, by name. `packages` maps each binary to the Go package that builds it. Versions: the newest the Go
 * module proxy served on 2026-12-03 (SPIRE's list is refused, v1.13.3 is served by name; ghostunnel likewise
 * serves v1.8.4 and refuses newer names; helm v3.22.0 is served but not approved, so v3.21.4).
 * @type {Record<string, RemotePeer | LocalPeer>}
 */
export const PEERS = {
  spire: {
    module: 'github.com/spiffe/spire',
    version: 'v1.13.3',
    packages: {
      'spire-server': 'github.com/spiffe/spire/cmd/spire-server',
      'spire-agent': 'github.com/spiffe/spire/cmd/spire-agent',
    },
  },
  helm: {
    module: 'helm.sh/helm/v3',
    version: 'v3.21.4',
    packages: { helm: 'helm.sh/helm/v3/cmd/helm' },
    // What helm's Makefile sets (`go install` does not): its version, and the Kubernetes version it assumes
    // without a cluster (that of the client-go it builds with, v0.36.2; unset, helm assumes 1.20).
    linkerVars: {
      'helm.sh/helm/v3/internal/version.version': 'v3.21.4',
      'helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor': '1',
      'helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor': '36',
      'helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor': '1',
      'helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor': '36',
    },
  },
  ghostunnel: {
    module: 'github.com/ghostunnel/ghostunnel',
    version: 'v1.8.4',
    packages: { ghostunnel: 'github.com/ghostunnel/ghostunnel' },
    // What its Makefile sets, so `ghostunnel --version` names the release.
    linkerVars: { 'main.version': 'v1.8.4' },
  },
  'go-spiffe': {
    local: join(here, 'go'),
    packages: {
      'spiffe-interop': './cmd/spiffe-interop',
    },
  },
};

/** The cache root: $SPIFFE_SIDECAR_INTEROP_CACHE, else $XDG_CACHE_HOME/spiffe-sidecar-interop, else ~/.cache/…. */
export function cacheRoot() {
  return (
    process.env.SPIFFE_SIDECAR_INTEROP_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'spiffe-sidecar-interop')
  );
}

/** @type {Promise<string> | undefined} */
let goVersionPromise;
/** The `go` command's version, e.g. go1.26.8; a clear error when Go is missing. */
export function goVersion() {
  goVersionPromise ??= run('go', ['env', 'GOVERSION'], { env: goEnv() }).then(
    ({ stdout }) => stdout.trim(),
    (/** @type {Error} */ error) => {
      throw new Error(
        `the interop peers are built with Go, and \`go env GOVERSION\` failed (${error.message.split('\n')[0]}). ` +
          'Install Go 1.26 (https://go.dev/dl) or put it on PATH; `npm test` itself needs no Go.',
      );
    },
  );
  return goVersionPromise;
}

/** The environment builds run in: this machine's Go only (no toolchain download), small unoptimised binaries. */
function goEnv() {
  return {
    ...process.env,
    GOTOOLCHAIN: 'local',
    GOFLAGS: [process.env.GOFLAGS, '-buildvcs=false', '-trimpath'].filter(Boolean).join(' '),
    // SPIRE's sqlite3 is C: -O0 halves its build, and the tests do not need it fast.
    CGO_CFLAGS: process.env.CGO_CFLAGS ?? '-O0 -g0',
  };
}

/** @param {string} dir @returns {Promise<string[]>} files under dir, relative, sorted */
async function sourceFiles(dir) {
  /** @type {string[]} */
  const out = [];
  /** @param {string} d */
  const walk = async (d) => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (/\.(go|mod|sum)$/.test(entry.name)) out.push(relative(dir, path));
    }
  };
  await walk(dir);
  return out.sort();
}

/**
 * Where a peer's binaries live in the cache (whether built or not): the cache key is its module version, or
 * the hash of our sources, and the Go version.
 * @param {string} name
 */
export async function peerDir(name) {
  const peer = PEERS[name];
  if (!peer) throw new Error(`unknown interop peer "${name}" (known: ${Object.keys(PEERS).join(', ')})`);
  const go = await goVersion();
  if ('module' in peer) {
    const vars = peer.linkerVars
      ? `-${createHash('sha256').update(JSON.stringify(peer.linkerVars)).digest('hex').slice(0, 8)}`
      : '';
    return join(cacheRoot(), name, `${peer.module.replaceAll('/', '_')}@${peer.version}-${go}${vars}`);
  }
  const hash = createHash('sha256');
  for (const file of await sourceFiles(peer.local)) {
    hash
      .update(file)
      .update('\0')
      .update(await readFile(join(peer.local, file)))
      .update('\0');
  }
  return join(cacheRoot(), name, `src-${hash.digest('hex').slice(0, 16)}-${go}`);
}

/**
 * @typedef {{ name: string, version: string, bin: Record<string, string>, built: boolean, seconds: number }} BuiltPeer
 */

/**
 * Removes what builds of this peer left behind when their process died (`DIR.tmp-PID` of a PID that is gone);
 * a build still running in another process keeps its directory.
 * @param {string} dir
 */
async function removeAbandonedBuilds(dir) {
  const prefix = `${dir.slice(dirname(dir).length + 1)}.tmp-`;
  const entries = await readdir(dirname(dir)).catch(() => /** @type {string[]} */ ([]));
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number(entry.slice(prefix.length));
    let alive = pid !== process.pid;
    try {
      if (alive) process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) await rm(join(dirname(dir), entry), { recursive: true, force: true });
  }
}

/** @type {Map<string, Promise<BuiltPeer>>} */
const inFlight = new Map();

/**
 * Builds a peer unless the cache has it, and returns its binaries. Fails (never skips) with the reason when
 * it cannot be built.
 * @param {string} name
 * @param {(line: string) => void} [say]
 * @returns {Promise<BuiltPeer>}
 */
export function buildPeer(name, say = (line) => process.stderr.write(`${line}\n`)) {
  let pending = inFlight.get(name);
  if (!pending) {
    pending = buildOnce(name, say);
    inFlight.set(name, pending);
  }
  return pending;
}

/** @param {string} name @param {(line: string) => void} say @returns {Promise<BuiltPeer>} */
async function buildOnce(name, say) {
  const peer = PEERS[name];
  const dir = await peerDir(name);
  const version = 'module' in peer ? `${peer.module}@${peer.version}` : `test/interop/go (go-spiffe per its go.mod)`;
  const bin = Object.fromEntries(Object.keys(peer.packages).map((b) => [b, join(dir, 'bin', b)]));
  const stamp = join(dir, 'build.json');
  if (existsSync(stamp)) {
    const { seconds } = JSON.parse(await readFile(stamp, 'utf8'));
    return { name, version, bin, built: false, seconds };
  }
  const started = Date.now();
  say(
    `interop: building ${name} (${version}) into ${dir}, once per machine${name === 'spire' ? ' (about 5 minutes on 2 cores)' : ''}`,
  );
  const work = `${dir}.tmp-${process.pid}`;
  await removeAbandonedBuilds(dir);
  await mkdir(join(work, 'bin'), { recursive: true });
  const env = { ...goEnv(), GOBIN: join(work, 'bin') };
  const go = async (/** @type {string[]} */ args, /** @type {string} */ cwd) => {
    try {
      await run('go', args, { cwd, env, maxBuffer: 64 * 1024 * 1024 });
    } catch (error) {
      const e = /** @type {Error & { stderr?: string }} */ (error);
      throw new Error(
        `interop: building ${name} failed at \`go ${args.join(' ')}\` in ${cwd}:\n${(e.stderr ?? e.message).trim()}`,
      );
    }
  };
  // Unoptimised code builds in about 60% of the time, and the peers' speed does not matter except ghostunnel's,
  // which the bench measures: it keeps the optimiser.
  const gcflags = name === 'ghostunnel' ? [] : ['-gcflags=all=-N -l'];
  const ldflags = `-ldflags=-s -w${Object.entries(peer.linkerVars ?? {})
    .map(([k, v]) => ` -X ${k}=${v}`)
    .join('')}`;
  try {
    if ('module' in peer) {
      // A throw-away module whose only requirements are the peer's tools: Go's minimal version selection then
      // takes exactly the versions the peer's own go.mod names.
      const mod = join(work, 'module');
      await mkdir(mod);
      await writeFile(join(mod, 'go.mod'), `module spiffe-sidecar-interop/${name}\n\ngo 1.26\n`);
      for (const pkg of Object.values(peer.packages)) await go(['get', '-tool', `${pkg}@${peer.version}`], mod);
      await go(['install', ...gcflags, ldflags, ...Object.values(peer.packages)], mod);
      await rm(mod, { recursive: true, force: true });
    } else {
      await go(['install', ...gcflags, ldflags, ...Object.values(peer.packages)], peer.local);
    }
    const seconds = Math.round((Date.now() - started) / 1000);
    await writeFile(join(work, 'build.json'), JSON.stringify({ version, seconds, go: await goVersion() }) + '\n');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dirname(dir), { recursive: true });
    await rename(work, dir);
    say(`interop: built ${name} in ${seconds} s`);
    return { name, version, bin, built: true, seconds };
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(PEERS);
  try {
    // One at a time: each build already uses every core.
    for (const name of names) {
      const peer = await buildPeer(name);
      process.stdout.write(`${name}: ${Object.values(peer.bin).join(' ')}${peer.built ? '' : ' (cached)'}\n`);
    }
  } catch (error) {
    process.stderr.write(`${/** @type {Error} */ (error).message}\n`);
    process.exit(1);
  }
}
