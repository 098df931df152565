// The Markdown report: the machine, the table of rows with ratios against nginx, ghostunnel and the direct
// connection, startup, rotation, and the targets with PASS/MISS; or, for `--soak`, the machine and the soak.

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
 * @param {import('./soak.js').SoakResult | undefined} [input.soak]
 * @param {import('./targets.js').TargetResult[]} input.targets
 * @param {string[]} input.notes
 * @param {import('./node-choice.js').NodeChoice} [input.nodeChoice] the Nodes side by side, when two ran
 */
export function markdownReport({ meta, rows, startup, rotation, soak, targets, notes, nodeChoice }) {
  const m = /** @type {any} */ (meta);
  const lines = [];
  lines.push(`## spiffe-sidecar ${m.options.soak ? 'soak' : 'benchmark'}, ${m.date}`);
  lines.push('');
  // The sidecar may run on another Node than the bench (BENCH_SIDECAR_NODE, the -node24 rows): say which ran what.
  const second = m.nodes?.second;
  const sidecarNode = soak
    ? `sidecar on Node ${soak.node.version.slice(1)}${soak.node.image ? " (the image's)" : ''}; bench, load generator and app on Node ${m.machine.node}`
    : m.sidecarNode.custom
      ? `sidecar on Node ${m.sidecarNode.version} (\`BENCH_SIDECAR_NODE=${m.sidecarNode.path}\`); ` +
        `bench, load generator, app and reference rows on Node ${m.machine.node}`
      : `Node ${m.machine.node} (${second && 'version' in second ? 'the sidecar rows' : 'sidecar'}, bench and reference rows alike)`;
  const secondNode =
    second && 'version' in second && !m.options.soak
      ? `; the \`-node24\` rows and \`@24\` startup on Node ${second.version.slice(1)} (${second.path})`
      : second && !m.options.soak
        ? `; no \`-node24\` rows (${second.missing})`
        : '';
  const machineLine =
    `Machine: ${m.machine.cpus} cores (${m.machine.cpuModel}), ${m.machine.memoryGb} GB, ${m.machine.kernel}; ` +
    `${sidecarNode}${secondNode}; ${imageLine(m.nodes?.image)}; nginx ${m.machine.nginx ?? 'not available'}; ` +
    `ghostunnel ${m.machine.ghostunnel ?? 'not available'}.`;
  if (m.options.soak) {
    lines.push(machineLine);
    lines.push('');
    if (soak) lines.push(...soakSection(soak));
    else lines.push('The soak failed (see the log).', '');
    lines.push(...targetTable(targets));
    return lines.join('\n');
  }
  lines.push(
    `${machineLine} ` +
      `${m.options.rounds} interleaved round(s); per phase ${m.options.warmupSeconds} s warm-up + ${m.options.seconds} s; ` +
      `keep-alive: ${m.options.connections} connections, closed loop; new connections: ${m.options.newConnWorkers} workers, ` +
      `one TLS handshake per request, no resumption; unloaded: 1 connection, sequential, ${m.options.latencySeconds} s` +
      `${m.latencyPinned ? ', load generator, app and proxy pinned to one CPU (see bench/README.md)' : ''}. ` +
      'Load generator, proxy and app share the cores. Medians of rounds; ratios are taken within each round, then the median.',
  );
  lines.push('');
  // Each ratio to nginx has the same ratio to ghostunnel beside it ("× gt"): two references, one Go, one C.
  lines.push(
    '| setup | keep-alive req/s | × nginx | × gt | × direct | CPU µs/req (keep-alive) | × nginx | × gt | cores used (keep-alive) | new conns/s | × nginx | × gt | unloaded p50 / p99 ms | added p50 ms | × nginx | × gt | RSS idle / loaded MB | loaded × nginx / × gt | ready ms | failed |',
  );
  lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) {
    if (r.unavailable || !r.measured) {
      lines.push(`| ${r.label} | ${r.unavailable ?? `failed: ${r.failures[0] ?? '?'}`} |||||||||||||||||||`);
      continue;
    }
    const isDirect = r.kind === 'direct';
    const cells = [
      r.invalid ? `${r.label} **INVALID** (below)` : r.label,
      num(r.keepAlive.rps),
      times(r.vsNginx.keepAliveRps),
      times(r.vsGhostunnel.keepAliveRps),
      isDirect ? '1.00×' : times(r.vsDirect.keepAliveRps),
      `${num(r.keepAlive.cpuUsPerRequest)}${isDirect ? ' (app)' : ''}`,
      isDirect ? '–' : times(r.vsNginx.cpuUsPerRequest),
      isDirect ? '–' : times(r.vsGhostunnel.cpuUsPerRequest),
      num(r.keepAlive.cores, 2),
      num(r.newConn.rps),
      times(r.vsNginx.newConnRps),
      times(r.vsGhostunnel.newConnRps),
      `${num(r.latency.p50Ms, 3)} / ${num(r.latency.p99Ms, 3)}`,
      isDirect ? '–' : num(r.latency.addedP50Ms, 3),
      isDirect ? '–' : times(r.vsNginx.addedP50),
      isDirect ? '–' : times(r.vsGhostunnel.addedP50),
      isDirect ? '–' : `${mb(r.rssIdleBytes)} / ${mb(r.rssLoadedBytes)}`,
      isDirect ? '–' : `${times(r.vsNginx.rssLoaded)} / ${times(r.vsGhostunnel.rssLoaded)}`,
      r.readyMs === undefined ? '–' : num(r.readyMs),
      String(r.errors),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push(...referenceLines(rows));
  if (nodeChoice) lines.push(...nodeChoiceTable(nodeChoice));
  const jwt = rows.find((r) => r.key === 'sidecar-jwt');
  if (jwt?.measured && jwt.vsSidecarMtls.keepAliveRps !== undefined) {
    lines.push(
      `JWT row (plain HTTP, no TLS): keep-alive ${times(jwt.vsSidecarMtls.keepAliveRps)} and new connections ` +
        `${times(jwt.vsSidecarMtls.newConnRps)} the mTLS row's.`,
    );
  }
  const store = storeLine(rows, m.machine.redis);
  if (store) lines.push(store);
  if (startup) {
    // A table needs a blank line before it, and the line above may already be one.
    if (lines.at(-1) !== '') lines.push('');
    lines.push(
      `Startup to ready (spawn → /readyz 200), ${startup.runs} runs per mode, the modes taking turns within each run; ` +
        `the sidecar starts as the image's does, with V8's code for its modules compiled beforehand ` +
        `(NODE_COMPILE_CACHE) on the Nodes that have a compile cache:`,
    );
    lines.push('');
    lines.push('| mode | median ms | CPU median ms | runs ms |');
    lines.push('|---|--:|--:|---|');
    /** @type {[string, import('./startup.js').StartupSeries][]} */
    const series = startup.nodes.flatMap(({ tag, version }) => {
      // With two Nodes, each series names its Node (the base one's modes are `file`, the newer one's `file@24`).
      const on = startup.nodes.length > 1 || tag ? ` on Node ${version.slice(1)}` : '';
      return /** @type {[string, import('./startup.js').StartupSeries][]} */ ([
        [`file${tag} (PEM files, mTLS)${on}`, startup.modes[`file${tag}`]],
        [`jwt${tag} (JWT bundle file, plain)${on}`, startup.modes[`jwt${tag}`]],
        [`spire${tag} (Workload API socket, mTLS)${on}`, startup.modes[`spire${tag}`]],
        [`file-cold${tag} (file mode without the image's compile cache)${on}`, startup.modes[`file-cold${tag}`]],
        [`bare Node serving /readyz (for scale)${on}`, startup.bare[tag]],
      ]).filter(([label, s]) => !label.startsWith('file-cold') || s.ms.length > 0);
    });
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
              `${times(r.vsNginx.resumedRps)} nginx, ${times(r.vsGhostunnel.resumedRps)} ghostunnel)`,
          )
          .join('; ') +
        '.',
    );
  }
  for (const note of notes) lines.push(note);
  lines.push('');
  lines.push(...targetTable(targets));
  return lines.join('\n');
}

/**
 * The sidecar's mTLS rows against the two reference proxies side by side, nginx (C, L7) and ghostunnel (Go, L4):
 * the ratios of the table, and RSS idle and loaded, in one line each.
 * @param {ReturnType<typeof import('./summary.js').summarize>} rows
 * @returns {string[]}
 */
function referenceLines(rows) {
  const measured = (/** @type {string} */ key) => rows.find((r) => r.key === key)?.measured === true;
  if (!measured('nginx') && !measured('ghostunnel')) return [];
  const pair = (/** @type {number | undefined} */ a, /** @type {number | undefined} */ b) =>
    `${times(a)} / ${times(b)}`;
  const out = [];
  for (const key of ['sidecar-mtls', 'sidecar-mtls-node24', 'sidecar-mtls-w2', 'sidecar-l4', 'sidecar-l4-node24']) {
    const r = rows.find((x) => x.key === key);
    if (!r?.measured) continue;
    const n = r.vsNginx;
    const g = r.vsGhostunnel;
    out.push(
      `${key} × nginx / × ghostunnel: keep-alive req/s ${pair(n.keepAliveRps, g.keepAliveRps)}, CPU per ` +
        `keep-alive request ${pair(n.cpuUsPerRequest, g.cpuUsPerRequest)}, new mTLS connections/s ` +
        `${pair(n.newConnRps, g.newConnRps)}, RSS idle ${pair(n.rssIdle, g.rssIdle)}, RSS loaded ` +
        `${pair(n.rssLoaded, g.rssLoaded)}.`,
    );
  }
  return out.length > 0 ? [...out, ''] : [];
}

/**
 * The price of counting rate limits in Redis: the store row against local buckets, within each round.
 * @param {ReturnType<typeof import('./summary.js').summarize>} rows
 * @param {string | undefined} redisVersion
 * @returns {string | undefined}
 */
function storeLine(rows, redisVersion) {
  const store = rows.find((r) => r.key === 'sidecar-mtls-rate-limit-store');
  const local = rows.find((r) => r.key === 'sidecar-mtls-rate-limit-local');
  if (!store) return undefined;
  const title = 'Rate-limit store (`--rate-limit-store`) vs local buckets';
  if (store.unavailable)
    return `${title}: not measured, redis-server ${store.unavailable.replace(/^redis-server /, '')}.`;
  if (!store.measured) return `${title}: not measured (${store.failures[0] ?? 'failed'}).`;
  if (store.invalid) {
    return (
      `${title}: **INVALID**, the store row did not count in the store throughout (${store.invalid.join('; ')}); ` +
      'its numbers measure the fallback, not the store.'
    );
  }
  const b = store.vsBaseline;
  const side = store.side;
  const total =
    store.keepAlive.cpuUsPerRequest === undefined || side?.keepAliveCpuUsPerRequest === undefined
      ? undefined
      : store.keepAlive.cpuUsPerRequest + side.keepAliveCpuUsPerRequest;
  const overAllow = local?.vsSidecarMtls.cpuUsPerRequest;
  return (
    `${title} (redis-server ${redisVersion ?? '?'} on loopback, one EVALSHA per request): ` +
    `CPU per request ${times(b?.cpuUsPerRequest)} (${num(store.keepAlive.cpuUsPerRequest)} µs vs ` +
    `${num(local?.keepAlive.cpuUsPerRequest)} µs), added latency p50 ${times(b?.addedP50)} ` +
    `(+${num(store.latency.addedP50Ms, 3)} ms vs +${num(local?.latency.addedP50Ms, 3)} ms), keep-alive req/s ` +
    `${times(b?.keepAliveRps)}. redis-server's own CPU: ${num(side?.keepAliveCpuUsPerRequest, 1)} µs per keep-alive ` +
    `request (${num(side?.keepAliveCores, 2)} cores; ${num(side?.newConnCpuUsPerRequest, 1)} µs per request at the ` +
    `new-connection phase's ${num(store.newConn.rps)} req/s, where commands arrive one by one), RSS ` +
    `${mb(side?.rssIdleBytes)} / ${mb(side?.rssLoadedBytes)} MB; sidecar + ` +
    `redis-server ${num(total)} µs per request, ${times(b?.totalCpuUsPerRequest)} local buckets. ` +
    `Local buckets themselves: CPU per request ${times(overAllow)} the \`--allow\` row.`
  );
}

/**
 * Which Node the image has, from the Dockerfile, for the machine line.
 * @param {import('./dockerfile.js').ImageNode | undefined} image
 */
function imageLine(image) {
  if (!image) return "the image's Node unknown";
  if ('error' in image) return `the image's Node unknown (${image.error})`;
  const mismatch = image.runtimeMismatch ? `, but ${image.runtimeMismatch}` : '';
  return `the image's Node: ${image.major} (Dockerfile \`${image.from}\` → ${image.image}${mismatch})`;
}

/**
 * Every Node's value of each Node-dependent target side by side, one line each, for choosing the image's Node.
 * @param {import('./node-choice.js').NodeChoice} choice
 * @returns {string[]}
 */
function nodeChoiceTable(choice) {
  const heads = choice.nodes.map((n) => `Node ${n.version.slice(1)}${n.image ? " (the image's)" : ''}`);
  const [first, last] = [choice.nodes[0], choice.nodes[choice.nodes.length - 1]];
  const major = (/** @type {string} */ v) => v.replace(/^v(\d+).*/, '$1');
  return [
    "The sidecar's Node, side by side: the Node-dependent targets on each Node (the targets below judge the " +
      "image's Node's) and what else differs; the last column is the newer Node's value over the base Node's, " +
      'taken within each round for throughput and CPU:',
    '',
    `| target | ${heads.join(' | ')} | Node ${major(last.version)} / Node ${major(first.version)} |`,
    `|---|${choice.nodes.map(() => '--:|').join('')}--:|`,
    ...choice.lines.map((l) => `| ${l.what} | ${l.values.join(' | ')} | ${times(l.overBase)} |`),
    '',
  ];
}

/** @param {import('./targets.js').TargetResult[]} targets */
function targetTable(targets) {
  return [
    '| target | result | measured |',
    '|---|---|---|',
    ...targets.map((t) => `| ${t.target} | **${t.status}** | ${t.measured} |`),
    '',
  ];
}

/**
 * @param {import('./soak.js').SoakResult} s
 * @returns {string[]}
 */
function soakSection(s) {
  const growth = s.rss.growthPercent;
  const pct = growth === undefined ? '–' : `${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%`;
  const kinds = Object.entries(s.errorKinds)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  /** @type {[string, string][]} */
  const table = [
    [
      'keep-alive capacity (sets the rate)',
      `${num(s.capacity.rps)} req/s, ${num(s.capacity.cpuUsPerRequest)} µs CPU/req`,
    ],
    [
      'rate asked (half the capacity)',
      `${num(s.rate.keepAlive)} keep-alive req/s over ${s.rate.connections} connections + ` +
        `${num(s.rate.newConn, 1)} new TLS connections/s over ${s.rate.newConnWorkers} workers`,
    ],
    [
      'rate achieved',
      `${num(s.achieved.keepAliveRps)} keep-alive req/s + ${num(s.achieved.newConnRps, 1)} new conns/s`,
    ],
    [
      'requests served',
      `${num(s.requests)} (${num(s.keepAliveRequests)} keep-alive, ${num(s.newConnectionRequests)} on new connections)`,
    ],
    ['failed requests', `**${s.failures}**${kinds ? ` (${kinds})` : ''}`],
    [
      'keep-alive latency p50 / p99 / max ms',
      `${num(s.keepAliveLatencyMs.p50, 2)} / ${num(s.keepAliveLatencyMs.p99, 2)} / ${num(s.keepAliveLatencyMs.max, 1)}`,
    ],
    [
      'SVID rotations (identity updates / reload failures in /metrics)',
      `${s.rotations}${s.rotationErrors ? ` (${s.rotationErrors} failed to write)` : ''} ` +
        `(${s.identityUpdates ?? '?'} / ${s.reloadFailures ?? '?'}); ${s.distinctServerCertificates} server certificates seen`,
    ],
    ['sidecar CPU', `${num(s.cores, 2)} cores, ${num(s.cpuUsPerRequest)} µs/req (new connections included)`],
    ['audit lines dropped (/metrics)', s.logLinesDropped === undefined ? '–' : num(s.logLinesDropped)],
    ['RSS idle after ready', `${mb(s.rss.idleBytes)} MB`],
    [
      `RSS after warm-up (median of the first 30 samples from ${num(s.warmupSeconds)} s)`,
      `${mb(s.rss.afterWarmupBytes)} MB`,
    ],
    ['RSS at the end (median of the last 30 samples)', `${mb(s.rss.endBytes)} MB`],
    ['RSS growth after warm-up', pct],
    ['RSS max (every second, warm-up included)', `${mb(s.rss.maxBytes)} MB`],
  ];
  const lines = [
    `Soak: ${s.seconds} s of one sidecar in file mode (mTLS, as \`sidecar-mtls\`) on ` +
      `${s.node.image ? "the image's Node" : 'Node'} ${s.node.version.slice(1)}${s.node.note ? ` (not the image's: ${s.node.note})` : ''} ` +
      `at half its measured keep-alive ` +
      `capacity, paced closed loop, ${((s.rate.newConn / s.rate.total) * 100).toFixed(1)}% of the requests on new ` +
      `TLS connections (full handshake, server chain verified), the SVID files replaced kubelet-style every ` +
      `${s.rotateSeconds} s; RSS of its process tree sampled every second.`,
    '',
    '| soak | measured |',
    '|---|--:|',
    ...table.map(([k, v]) => `| ${k} | ${v} |`),
    '',
  ];
  if (s.seconds < 2 * 30 + s.warmupSeconds) {
    lines.push(
      `Note: at ${s.seconds} s the first and last 30 samples after the warm-up overlap; the default 600 s keeps them apart.`,
      '',
    );
  }
  return lines;
}
