// The Markdown report: the machine, the table of rows with ratios against nginx and the direct connection,
// startup, rotation, and the targets with PASS/MISS.

const MB = 1024 * 1024;

/** @param {number | undefined} v @param {number} [digits] */
const num = (v, digits = 0) =>
  v === undefined || !Number.isFinite(v)
    ? '–'
    : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** @param {number | undefined} v */
const times = (v) => (v === undefined || !Number.isFinite(v) ? '–' : `${v.toFixed(2)}×`);
/** @param {number | undefined} v */
const mb = (v) => (v === undefined ? '–' : (v / MB).toFixed(1));

/**
 * @param {object} input
 * @param {Record<string, unknown>} input.meta
 * @param {ReturnType<typeof import('./summary.js').summarize>} input.rows
 * @param {Awaited<ReturnType<typeof import('./startup.js').measureStartup>> | undefined} input.startup
 * @param {Awaited<ReturnType<typeof import('./rotation.js').measureRotation>> | undefined} input.rotation
 * @param {import('./targets.js').TargetResult[]} input.targets
 * @param {string[]} input.notes
 */
export function markdownReport({ meta, rows, startup, rotation, targets, notes }) {
  const m = /** @type {any} */ (meta);
  const lines = [];
  lines.push(`## spiffe-sidecar benchmark, ${m.date}`);
  lines.push('');
  lines.push(
    `Machine: ${m.machine.cpus} cores (${m.machine.cpuModel}), ${m.machine.memoryGb} GB, ${m.machine.kernel}; ` +
      `Node ${m.machine.node}; nginx ${m.machine.nginx ?? 'not available'}. ` +
      `${m.options.rounds} interleaved round(s); per phase ${m.options.warmupSeconds} s warm-up + ${m.options.seconds} s; ` +
      `keep-alive: ${m.options.connections} connections, closed loop; new connections: ${m.options.newConnWorkers} workers, ` +
      `one TLS handshake per request, no resumption; unloaded: 1 connection, sequential, ${m.options.latencySeconds} s` +
      `${m.latencyPinned ? ', load generator, app and proxy pinned to one CPU (see bench/README.md)' : ''}. ` +
      'Load generator, proxy and app share the cores. Medians of rounds; ratios are taken within each round, then the median.',
  );
  lines.push('');
  lines.push(
    '| setup | keep-alive req/s | × nginx | × direct | CPU µs/req (keep-alive) | × nginx | cores used (keep-alive) | new conns/s | × nginx | unloaded p50 / p99 ms | added p50 ms | × nginx | RSS idle / loaded MB | ready ms | failed |',
  );
  lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) {
    if (r.unavailable || !r.measured) {
      lines.push(`| ${r.label} | ${r.unavailable ?? `failed: ${r.failures[0] ?? '?'}`} ||||||||||||||`);
      continue;
    }
    const isDirect = r.kind === 'direct';
    const cells = [
      r.label,
      num(r.keepAlive.rps),
      times(r.vsNginx.keepAliveRps),
      isDirect ? '1.00×' : times(r.vsDirect.keepAliveRps),
      `${num(r.keepAlive.cpuUsPerRequest)}${isDirect ? ' (app)' : ''}`,
      isDirect ? '–' : times(r.vsNginx.cpuUsPerRequest),
      num(r.keepAlive.cores, 2),
      num(r.newConn.rps),
      times(r.vsNginx.newConnRps),
      `${num(r.latency.p50Ms, 3)} / ${num(r.latency.p99Ms, 3)}`,
      isDirect ? '–' : num(r.latency.addedP50Ms, 3),
      isDirect ? '–' : times(r.vsNginx.addedP50),
      isDirect ? '–' : `${mb(r.rssIdleBytes)} / ${mb(r.rssLoadedBytes)}`,
      r.readyMs === undefined ? '–' : num(r.readyMs),
      String(r.errors),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');
  const jwt = rows.find((r) => r.key === 'sidecar-jwt');
  if (jwt?.measured && jwt.vsSidecarMtls.keepAliveRps !== undefined) {
    lines.push(
      `JWT row (plain HTTP, no TLS): keep-alive ${times(jwt.vsSidecarMtls.keepAliveRps)} and new connections ` +
        `${times(jwt.vsSidecarMtls.newConnRps)} the mTLS row's.`,
    );
  }
  if (startup) {
    // A table needs a blank line before it, and the line above may already be one.
    if (lines.at(-1) !== '') lines.push('');
    lines.push(
      `Startup to ready (spawn → /readyz 200), ${startup.runs} runs per mode, the modes taking turns within each run:`,
    );
    lines.push('');
    lines.push('| mode | median ms | CPU median ms | runs ms |');
    lines.push('|---|--:|--:|---|');
    /** @type {[string, import('./startup.js').StartupSeries][]} */
    const series = [
      ['file (PEM files, mTLS)', startup.modes.file],
      ['jwt (JWT bundle file, plain)', startup.modes.jwt],
      ['spire (Workload API socket, mTLS)', startup.modes.spire],
      ['bare Node serving /readyz (for scale)', startup.bareNode],
    ];
    for (const [label, s] of series) {
      const runs = s.ms.map((v) => v.toFixed(0)).join(', ') || '–';
      lines.push(
        `| ${label} | ${num(s.medianMs)} | ${num(s.cpuMedianMs)} | ${runs}${s.error ? `; failed: ${s.error}` : ''} |`,
      );
    }
    lines.push('');
  }
  if (rotation) {
    lines.push(
      `Rotation: SVID replaced every second for ${rotation.seconds} s (${rotation.rotations} rotations, ` +
        `${rotation.identityUpdates} identity updates logged, ${rotation.reloadFailures} reload failures) under ` +
        `${num(rotation.keepAliveRequests)} keep-alive and ${num(rotation.newConnectionRequests)} new-connection requests: ` +
        `**${rotation.failures} failed**, ${rotation.distinctServerCertificates} distinct server certificates seen.`,
    );
  }
  const resumed = rows.filter((r) => r.resumed.rps !== undefined);
  if (resumed.length > 0) {
    lines.push(
      'New connections resuming a TLS session (BENCH_RESUMPTION=1): ' +
        resumed
          .map(
            (r) =>
              `${r.key} ${num(r.resumed.rps)}/s (${num(r.resumed.cpuUsPerRequest)} µs CPU/conn, ` +
              `${times(r.vsNginx.resumedRps)} nginx)`,
          )
          .join('; ') +
        '.',
    );
  }
  for (const note of notes) lines.push(note);
  lines.push('');
  lines.push('| target | result | measured |');
  lines.push('|---|---|---|');
  for (const t of targets) lines.push(`| ${t.target} | **${t.status}** | ${t.measured} |`);
  lines.push('');
  return lines.join('\n');
}
