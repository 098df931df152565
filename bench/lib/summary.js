// From the rounds to one line per row: medians of the rounds, and ratios computed inside each round (against
// nginx, ghostunnel and the direct connection of the SAME round) before taking their median, so that a slow
// moment of the shared machine moves both sides of a ratio together.
import { max, median, ratio } from './stats.js';

/**
 * @typedef {object} RoundResult
 * @property {import('./measure.js').PhaseResult} keepAlive
 * @property {import('./measure.js').PhaseResult} newConn
 * @property {import('./measure.js').PhaseResult} latency
 * @property {import('./measure.js').PhaseResult} [resumed] new connections resuming a session (opt-in)
 * @property {string} [invalid] why this round does not measure what the row says (the store row: fell back)
 */

/**
 * @typedef {object} RowRecord
 * @property {import('./rows.js').Row} row
 * @property {string} [unavailable]
 * @property {number} [readyMs]
 * @property {number} [rssIdleBytes]
 * @property {(RoundResult | undefined)[]} rounds one per round, undefined where the row failed
 * @property {string[]} failures what went wrong starting or measuring it
 * @property {string[]} [invalid] rounds whose numbers do not measure what the row says, and why
 * @property {string} [side] the name of the process measured alongside (redis-server), if any
 * @property {number} [sideRssIdleBytes]
 */

/**
 * @param {RoundResult | undefined} round
 * @param {(r: RoundResult) => number | undefined} pick
 */
const get = (round, pick) => (round ? pick(round) : undefined);

/**
 * @param {RowRecord[]} records
 */
export function summarize(records) {
  const byKey = new Map(records.map((r) => [r.row.key, r]));
  const direct = byKey.get('direct');
  const nginx = byKey.get('nginx');
  const ghostunnel = byKey.get('ghostunnel');
  /** The mTLS row on the same Node as this row (`sidecar-l4-node24` against `sidecar-mtls-node24`). */
  const sidecarMtlsOf = (/** @type {RowRecord} */ record) => byKey.get(`sidecar-mtls${record.row.node?.suffix ?? ''}`);
  /**
   * Median over rounds of a per-round ratio of this row to another.
   * @param {RowRecord} record
   * @param {RowRecord | undefined} other
   * @param {(r: RoundResult) => number | undefined} pick
   */
  const perRound = (record, other, pick) =>
    median(record.rounds.map((round, i) => ratio(get(round, pick), get(other?.rounds[i], pick))));
  /** p50 of the row minus p50 of the direct connection, in the same round. */
  const added = (/** @type {RowRecord | undefined} */ record, /** @type {number} */ i) => {
    const own = get(record?.rounds[i], (r) => r.latency.latency.p50);
    const base = get(direct?.rounds[i], (r) => r.latency.latency.p50);
    return own === undefined || base === undefined ? undefined : own - base;
  };
  const keepAliveRps = (/** @type {RoundResult} */ r) => r.keepAlive.rps;
  const keepAliveCpu = (/** @type {RoundResult} */ r) => r.keepAlive.cpuUsPerRequest;
  const newConnRps = (/** @type {RoundResult} */ r) => r.newConn.rps;
  /** Peak RSS of the round, keep-alive or new connections. */
  const rssLoaded = (/** @type {RoundResult} */ r) => Math.max(r.keepAlive.rssPeakBytes, r.newConn.rssPeakBytes);
  /**
   * The ratios against a reference row: throughput and CPU within each round, then the median; idle RSS (read
   * once, after every row started) as is; loaded RSS within each round.
   * @param {RowRecord} record
   * @param {RowRecord | undefined} reference
   */
  const against = (record, reference) => ({
    keepAliveRps: perRound(record, reference, keepAliveRps),
    cpuUsPerRequest: perRound(record, reference, keepAliveCpu),
    newConnRps: perRound(record, reference, newConnRps),
    resumedRps: perRound(record, reference, (r) => r.resumed?.rps),
    addedP50: median(record.rounds.map((_, i) => ratio(added(record, i), added(reference, i)))),
    rssIdle: ratio(record.rssIdleBytes, reference?.rssIdleBytes),
    rssLoaded: perRound(record, reference, rssLoaded),
  });
  /** The row's CPU per keep-alive request with its side process's (redis-server) added. */
  const totalCpu = (/** @type {RoundResult} */ r) =>
    r.keepAlive.cpuUsPerRequest === undefined
      ? undefined
      : r.keepAlive.cpuUsPerRequest + (r.keepAlive.sideCpuUsPerRequest ?? 0);

  return records.map((record) => {
    const { row, rounds } = record;
    const col = (/** @type {(r: RoundResult) => number | undefined} */ pick) =>
      median(rounds.map((round) => get(round, pick)));
    const addedP50 = median(rounds.map((_, i) => added(record, i)));
    const baseline = row.baseline ? byKey.get(row.baseline) : undefined;
    const sidecarMtls = sidecarMtlsOf(record);
    const errors = rounds.reduce(
      (sum, r) => sum + (r ? r.keepAlive.errors + r.newConn.errors + r.latency.errors : 0),
      0,
    );
    return {
      key: row.key,
      label: row.label,
      kind: row.kind,
      // The Node a sidecar row ran on: the Node-dependent targets pick the image's Node's rows by it.
      node: row.node ? { version: row.node.version, major: row.node.major, suffix: row.node.suffix } : undefined,
      unavailable: record.unavailable,
      failures: record.failures,
      invalid: record.invalid,
      measured: rounds.some((r) => r !== undefined),
      keepAlive: {
        rps: col(keepAliveRps),
        cpuUsPerRequest: col(keepAliveCpu),
        appCpuUsPerRequest: col((r) => r.keepAlive.appCpuUsPerRequest),
        cores: col((r) => r.keepAlive.cores),
        loadgenCores: col((r) => r.keepAlive.loadgenCores),
        foreignCores: col((r) => r.keepAlive.foreignCores),
        p50Ms: col((r) => r.keepAlive.latency.p50),
        p99Ms: col((r) => r.keepAlive.latency.p99),
      },
      newConn: {
        rps: col(newConnRps),
        cpuUsPerRequest: col((r) => r.newConn.cpuUsPerRequest),
        cores: col((r) => r.newConn.cores),
        loadgenCores: col((r) => r.newConn.loadgenCores),
        foreignCores: col((r) => r.newConn.foreignCores),
      },
      resumed: {
        rps: col((r) => r.resumed?.rps),
        cpuUsPerRequest: col((r) => r.resumed?.cpuUsPerRequest),
      },
      latency: {
        p50Ms: col((r) => r.latency.latency.p50),
        p99Ms: col((r) => r.latency.latency.p99),
        addedP50Ms: addedP50,
        addedP99Ms: median(
          rounds.map((round, i) => {
            const own = get(round, (r) => r.latency.latency.p99);
            const base = get(direct?.rounds[i], (r) => r.latency.latency.p99);
            return own === undefined || base === undefined ? undefined : own - base;
          }),
        ),
      },
      rssIdleBytes: record.rssIdleBytes,
      rssKeepAliveBytes: max(rounds.map((r) => r?.keepAlive.rssPeakBytes)),
      rssLoadedBytes: max(rounds.map((r) => (r ? rssLoaded(r) : undefined))),
      readyMs: record.readyMs,
      errors,
      vsNginx: against(record, nginx),
      // The same against ghostunnel (a Go mTLS proxy, L4): undefined where it was not measured.
      vsGhostunnel: against(record, ghostunnel),
      vsDirect: {
        keepAliveRps: perRound(record, direct, keepAliveRps),
        newConnRps: perRound(record, direct, newConnRps),
      },
      // Against the mTLS row of the same Node.
      vsSidecarMtls: {
        keepAliveRps: perRound(record, sidecarMtls, keepAliveRps),
        cpuUsPerRequest: perRound(record, sidecarMtls, keepAliveCpu),
        newConnRps: perRound(record, sidecarMtls, newConnRps),
      },
      // The process measured alongside (the store row's redis-server): its cost per request of this row.
      side: record.side
        ? {
            name: record.side,
            keepAliveCpuUsPerRequest: col((r) => r.keepAlive.sideCpuUsPerRequest),
            keepAliveCores: col((r) => r.keepAlive.sideCores),
            newConnCpuUsPerRequest: col((r) => r.newConn.sideCpuUsPerRequest),
            rssIdleBytes: record.sideRssIdleBytes,
            rssLoadedBytes: max(rounds.map((r) => r?.keepAlive.sideRssPeakBytes)),
          }
        : undefined,
      // Against the row it prices (the store row against local buckets, a -node24 row against the same row on
      // the base Node), round by round.
      vsBaseline: baseline
        ? {
            key: baseline.row.key,
            keepAliveRps: perRound(record, baseline, keepAliveRps),
            cpuUsPerRequest: perRound(record, baseline, keepAliveCpu),
            totalCpuUsPerRequest: perRound(record, baseline, totalCpu),
            newConnRps: perRound(record, baseline, newConnRps),
            rssLoaded: perRound(record, baseline, rssLoaded),
            addedP50: median(rounds.map((_, i) => ratio(added(record, i), added(baseline, i)))),
          }
        : undefined,
      rounds,
    };
  });
}
