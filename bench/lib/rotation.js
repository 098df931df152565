// Rotation under load: the sidecar's SVID files are replaced every second, the way the kubelet updates a
// Secret volume (a new timestamped directory, then an atomic rename of the `..data` symlink), while
// keep-alive connections and new connections (each verifying the server's chain) keep it busy. Every
// failed request is counted; the target is zero. The distinct server certificates seen by the new
// connections prove that rotations took effect.
import { copyFile, mkdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { clearInterval, setInterval } from 'node:timers';
import { freePort, stopChild } from './children.js';
import { sidecarArgs, startSidecar } from './sidecar.js';

const FILES = ['tls.crt', 'tls.key', 'ca.crt'];

/**
 * A kubelet-style projected directory: `FILE -> ..data/FILE`, `..data -> ..vN`.
 * @param {string} dir
 */
function secretVolume(dir) {
  let version = 0;
  let current;
  return {
    /** @param {string} from a directory with tls.crt, tls.key, ca.crt */
    async publish(from) {
      const next = join(dir, `..v${version++}`);
      await mkdir(next, { recursive: true });
      await Promise.all(FILES.map((f) => copyFile(join(from, f), join(next, f))));
      const tmpLink = join(dir, '..data_tmp');
      await symlink(next.slice(dir.length + 1), tmpLink);
      await rename(tmpLink, join(dir, '..data'));
      if (current) await rm(current, { recursive: true, force: true });
      current = next;
    },
    async init(/** @type {string} */ from) {
      await mkdir(dir, { recursive: true });
      await this.publish(from);
      await Promise.all(FILES.map((f) => symlink(join('..data', f), join(dir, f))));
    },
  };
}

/**
 * A file-mode mTLS sidecar whose SVID files live in a Secret-style volume that the caller rotates.
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string, appPort: number }} ctx
 * @param {string} name the volume directory and the log file's name
 * @param {string} [node] the node binary that runs it (the soak: the image's Node), the base one by default
 */
export async function startRotatingSidecar({ options, pki, tmp, appPort }, name, node = options.sidecarNode) {
  const dir = join(tmp, `${name}-svid`);
  const volume = secretVolume(dir);
  await volume.init(pki.rotationDirs[0]);
  const [port, adminPort] = [await freePort(), await freePort()];
  const logFile = join(tmp, `${name}.log`);
  const { child, readyMs } = await startSidecar({
    node,
    cli: options.cli,
    nodeArgs: options.sidecarNodeArgs,
    args: [
      ...sidecarArgs({ auth: 'mtls' }, { port, adminPort, appPort, certDir: dir, jwksFile: pki.jwksFile }),
      ...options.sidecarArgs,
    ],
    adminPort,
    logFile,
    logVia: 'pipe',
  });
  return { child, readyMs, volume, port, adminPort, logFile };
}

/**
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string, appPort: number,
 *   loadgen: import('./loadgen.js').LoadGenerator, clientTls: { cert: string, key: string, ca: string } }} ctx
 */
export async function measureRotation({ options, pki, tmp, appPort, loadgen, clientTls }) {
  const { child, volume, port, logFile } = await startRotatingSidecar({ options, pki, tmp, appPort }, 'rotation');
  const verifying = { ...clientTls, verify: true };
  const target = { host: '127.0.0.1', port, tls: verifying };
  let rotations = 0;
  let rotationErrors = 0;
  const timer = setInterval(() => {
    const from = pki.rotationDirs[(rotations + 1) % pki.rotationDirs.length];
    rotations++;
    volume.publish(from).catch(() => rotationErrors++);
  }, 1000);
  const durationMs = options.rotationSeconds * 1000;
  let results;
  try {
    ({ results } = await loadgen.run([
      { mode: 'keepalive', target, connections: Math.max(1, options.connections >> 1), warmupMs: 0, durationMs },
      {
        mode: 'newconn',
        target,
        connections: Math.max(1, options.newConnWorkers >> 1),
        warmupMs: 0,
        durationMs,
        recordServerSerials: true,
      },
    ]));
  } finally {
    clearInterval(timer);
    await stopChild(child);
  }
  const log = await readFile(logFile, 'utf8');
  const count = (/** @type {string} */ event) => log.split(`"event":"${event}"`).length - 1;
  const [keepAlive, newConn] = results;
  const errorKinds = { ...keepAlive.errorKinds };
  for (const [kind, n] of Object.entries(newConn.errorKinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + n;
  return {
    seconds: options.rotationSeconds,
    rotations,
    rotationErrors,
    identityUpdates: count('identity_updated'),
    reloadFailures: count('reload_failed'),
    distinctServerCertificates: newConn.serials.length,
    keepAliveRequests: keepAlive.completed,
    newConnectionRequests: newConn.completed,
    failures: keepAlive.errors + newConn.errors,
    errorKinds,
  };
}
