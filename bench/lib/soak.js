// The soak (`npm run bench -- --soak`): does the sidecar keep its memory flat and fail no request over
// minutes of steady work, the way a pod lives, rather than over the table's few seconds? One sidecar in file
// mode (mTLS, as the `sidecar-mtls` row) is measured for its keep-alive capacity, then held at half of it
// (paced keep-alive connections, plus a share of the requests on new TLS connections so that connections
// come and go), while its SVID files are replaced kubelet-style every few seconds. Its RSS is sampled every
// second: the median of the first 30 samples after a warm-up against the median of the last 30 is the
// growth, so that one GC cycle's peak does not decide it. The sidecar runs on the image's Node (its major read
// from the Dockerfile), so that the soak proves the memory of what ships.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { clearInterval, setInterval } from 'node:timers';
import { setTimeout as delay } from 'node:timers/promises';
import { stopChild } from './children.js';
import { measurePhase } from './measure.js';
import { cpuMs, processTree, rssBytes } from './proc.js';
import { startRotatingSidecar } from './rotation.js';
import { median } from './stats.js';

const MB = 1024 * 1024;
/** Samples (one a second) whose median is the RSS at each edge of the soak. */
const EDGE_SAMPLES = 30;
/** New-connection workers: two, so that one slow handshake does not hold the churn below its rate. */
const NEWCONN_WORKERS = 2;

/**
 * @typedef {object} SoakResult
 * @property {{ version: string, image: boolean, note?: string }} node the Node the sidecar ran on; `image`: the
 *   image's; `note`: why not, when not
 * @property {number} seconds
 * @property {number} warmupSeconds RSS samples before this are not compared (heap and caches still growing)
 * @property {number} rotateSeconds
 * @property {number | undefined} readyMs
 * @property {{ rps: number, cpuUsPerRequest: number | undefined, errors: number }} capacity the keep-alive
 *   phase that sets the soak's rate
 * @property {{ total: number, keepAlive: number, newConn: number, connections: number, newConnWorkers: number }} rate
 *   asked for, in requests (or new connections) per second
 * @property {{ keepAliveRps: number, newConnRps: number }} achieved
 * @property {number} requests served during the soak (2xx)
 * @property {number} keepAliveRequests
 * @property {number} newConnectionRequests
 * @property {number} failures failed requests during the soak
 * @property {Record<string, number>} errorKinds
 * @property {{ p50?: number, p99?: number, max?: number }} keepAliveLatencyMs
 * @property {number} rotations SVID replacements done
 * @property {number} rotationErrors replacements that failed on the bench's side
 * @property {number | undefined} identityUpdates from the sidecar's /metrics (file source, updated)
 * @property {number | undefined} reloadFailures from /metrics (file source, failed)
 * @property {number | undefined} logLinesDropped from /metrics: audit lines lost to a slow log reader
 * @property {number} distinctServerCertificates seen by the new connections: rotations took effect
 * @property {number} cores the sidecar's CPU over the soak
 * @property {number | undefined} cpuUsPerRequest
 * @property {{ idleBytes: number, afterWarmupBytes: number | undefined, endBytes: number | undefined,
 *   growthPercent: number | undefined, maxBytes: number, samplesMb: number[] }} rss `samplesMb`: one a second
 */

/**
 * The sidecar's /metrics (Prometheus text); '' when it does not answer.
 * @param {string} url
 * @returns {Promise<string>}
 */
function scrape(url) {
  return new Promise((resolve) => {
    http
      .get(url, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve(text));
        res.on('error', () => resolve(''));
      })
      .on('error', () => resolve(''));
  });
}

/**
 * The sum of a metric's samples whose label set contains every one of `labels`; undefined when absent.
 * @param {string} text
 * @param {string} name
 * @param {string[]} [labels] e.g. `result="updated"`
 */
function metric(text, name, labels = []) {
  let sum;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name || !labels.every((l) => (m[2] ?? '').includes(l))) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/**
 * Identity reloads of the file source that updated or failed, from /metrics text.
 * @param {string} text
 */
function reloads(text) {
  const updated = metric(text, 'spiffe_sidecar_identity_reloads_total', ['source="file"', 'result="updated"']);
  const failed = metric(text, 'spiffe_sidecar_identity_reloads_total', ['source="file"', 'result="failed"']);
  return updated === undefined ? undefined : updated + (failed ?? 0);
}

/**
 * @param {{ options: import('./options.js').BenchOptions, pki: import('./pki.js').Pki, tmp: string,
 *   appPort: number, appPid: number, loadgen: import('./loadgen.js').LoadGenerator,
 *   clientTls: { cert: string, key: string, ca: string }, say: (line: string) => void,
 *   node: SoakResult['node'] & { path: string } }} ctx `node`: the image's Node, or (with a note why) another
 * @returns {Promise<SoakResult>}
 */
export async function measureSoak({ options, pki, tmp, appPort, appPid, loadgen, clientTls, say, node }) {
  const { child, readyMs, volume, port, adminPort } = await startRotatingSidecar(
    { options, pki, tmp, appPort },
    'soak',
    node.path,
  );
  const pid = /** @type {number} */ (child.pid);
  try {
    await delay(500);
    const idleBytes = rssBytes(processTree(pid));
    const target = { host: '127.0.0.1', port, tls: clientTls };
    const capacity = await measurePhase(
      loadgen,
      {
        mode: 'keepalive',
        target,
        connections: options.connections,
        warmupMs: options.warmupSeconds * 1000,
        durationMs: options.seconds * 1000,
      },
      { pid, appPid },
    );
    if (!(capacity.rps > 0)) throw new Error('the capacity phase served no request');
    const total = capacity.rps / 2;
    const rate = {
      total,
      keepAlive: total * (1 - options.soakNewConnShare),
      newConn: total * options.soakNewConnShare,
      connections: options.connections,
      newConnWorkers: NEWCONN_WORKERS,
    };
    const warmupSeconds = Math.min(options.soakSeconds * 0.1, 60);
    say(
      `soak: capacity ${capacity.rps.toFixed(0)} keep-alive req/s; now ${options.soakSeconds} s at ` +
        `${rate.keepAlive.toFixed(0)} keep-alive req/s + ${rate.newConn.toFixed(1)} new connections/s, ` +
        `SVID replaced every ${options.soakRotateSeconds} s, RSS compared after ${warmupSeconds.toFixed(0)} s`,
    );

    /** @type {{ t: number, rss: number }[]} */
    const samples = [];
    let rotations = 0;
    let rotationErrors = 0;
    // Replacements in a row: a slow one (a busy disk) must not overlap the next.
    let publishing = Promise.resolve();
    const progressEvery = Math.max(10, options.soakSeconds / 10);
    const t0 = performance.now();
    const cpuBefore = cpuMs(processTree(pid));
    const sampler = setInterval(() => {
      const t = (performance.now() - t0) / 1000;
      const rss = rssBytes(processTree(pid));
      samples.push({ t, rss });
      if (Math.floor(t / progressEvery) > Math.floor((t - 1) / progressEvery)) {
        say(`soak: ${t.toFixed(0)}/${options.soakSeconds} s, RSS ${(rss / MB).toFixed(1)} MB, ${rotations} rotations`);
      }
    }, 1000);
    const rotator = setInterval(() => {
      rotations++;
      const from = pki.rotationDirs[rotations % pki.rotationDirs.length];
      publishing = publishing.then(() => volume.publish(from)).catch(() => void rotationErrors++);
    }, options.soakRotateSeconds * 1000);
    const durationMs = options.soakSeconds * 1000;
    let results;
    try {
      ({ results } = await loadgen.run([
        { mode: 'keepalive', target, connections: rate.connections, rate: rate.keepAlive, warmupMs: 0, durationMs },
        {
          mode: 'newconn',
          // Verifying the server's chain, so that a bad rotation would fail a request.
          target: { ...target, tls: { ...clientTls, verify: true } },
          connections: NEWCONN_WORKERS,
          rate: rate.newConn,
          warmupMs: 0,
          durationMs,
          recordServerSerials: true,
        },
      ]));
    } finally {
      clearInterval(sampler);
      clearInterval(rotator);
    }
    const elapsedMs = performance.now() - t0;
    const cpu = cpuMs(processTree(pid)) - cpuBefore;
    await publishing;
    // The last replacement may have landed a moment before the load ended: give the sidecar's watcher a few
    // seconds to take it, so that updates and rotations can be compared.
    const metricsUrl = `http://127.0.0.1:${adminPort}/metrics`;
    let metrics = await scrape(metricsUrl);
    for (let i = 0; i < 20 && (reloads(metrics) ?? Infinity) < rotations; i++) {
      await delay(250);
      metrics = await scrape(metricsUrl);
    }

    const [keepAlive, newConn] = results;
    const errorKinds = { ...keepAlive.errorKinds };
    for (const [kind, n] of Object.entries(newConn.errorKinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + n;
    const requests = keepAlive.completed + newConn.completed;
    const after = samples.filter((s) => s.t >= warmupSeconds).map((s) => s.rss);
    const afterWarmupBytes = median(after.slice(0, EDGE_SAMPLES));
    const endBytes = median(after.slice(-EDGE_SAMPLES));
    return {
      node: { version: node.version, image: node.image, ...(node.note ? { note: node.note } : {}) },
      seconds: options.soakSeconds,
      warmupSeconds,
      rotateSeconds: options.soakRotateSeconds,
      readyMs,
      capacity: { rps: capacity.rps, cpuUsPerRequest: capacity.cpuUsPerRequest, errors: capacity.errors },
      rate,
      achieved: {
        keepAliveRps: keepAlive.requests / (keepAlive.windowMs / 1000),
        newConnRps: newConn.requests / (newConn.windowMs / 1000),
      },
      requests,
      keepAliveRequests: keepAlive.completed,
      newConnectionRequests: newConn.completed,
      failures: keepAlive.errors + newConn.errors,
      errorKinds,
      keepAliveLatencyMs: { p50: keepAlive.latency.p50, p99: keepAlive.latency.p99, max: keepAlive.latency.max },
      rotations,
      rotationErrors,
      identityUpdates: metric(metrics, 'spiffe_sidecar_identity_reloads_total', ['source="file"', 'result="updated"']),
      reloadFailures: metric(metrics, 'spiffe_sidecar_identity_reloads_total', ['source="file"', 'result="failed"']),
      logLinesDropped: metric(metrics, 'spiffe_sidecar_log_lines_dropped_total'),
      distinctServerCertificates: newConn.serials.length,
      cores: cpu / elapsedMs,
      cpuUsPerRequest: requests > 0 ? (cpu * 1000) / requests : undefined,
      rss: {
        idleBytes,
        afterWarmupBytes,
        endBytes,
        growthPercent: afterWarmupBytes && endBytes !== undefined ? (endBytes / afterWarmupBytes - 1) * 100 : undefined,
        maxBytes: Math.max(...samples.map((s) => s.rss)),
        samplesMb: samples.map((s) => Math.round((s.rss / MB) * 100) / 100),
      },
    };
  } finally {
    await stopChild(child);
  }
}
