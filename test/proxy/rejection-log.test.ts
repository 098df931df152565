// The budget of rejection lines, on an explicit clock: a burst, then a steady rate, per event and per
// logger; what is dropped is counted (metric) and reported on the next line that passes.
import { describe, expect, it } from 'vitest';
import type { ProxyMetrics } from '../../src/proxy/proxy-metrics.js';
import {
  REJECTION_LINES_BURST,
  REJECTION_LINES_BURST_ALL,
  REJECTION_LINES_PER_SECOND,
  rejectionLine,
  suppressedField,
} from '../../src/proxy/rejection-log.js';
import { capturingLogger } from '../helpers/sidecar.js';

function suppressedMetric(): ProxyMetrics & { suppressed: string[] } {
  const suppressed: string[] = [];
  return {
    suppressed,
    handshake() {},
    decision() {},
    request() {},
    connectionOpened() {},
    connectionClosed() {},
    connectionDropped() {},
    upstreamError() {},
    logLineSuppressed: (event) => suppressed.push(event),
  };
}

describe('rejectionLine', () => {
  it('lets a burst through, then drops and counts, then reports the count on the next line that passes', () => {
    const { log } = capturingLogger();
    const metrics = suppressedMetric();
    const at = 1_000;
    for (let i = 0; i < REJECTION_LINES_BURST; i++) expect(rejectionLine(log, 'peer_rejected', metrics, at)).toBe(0);
    for (let i = 0; i < 7; i++) expect(rejectionLine(log, 'peer_rejected', metrics, at)).toBe(-1);
    expect(metrics.suppressed).toEqual(Array(7).fill('peer_rejected'));
    // Not yet a whole token back.
    expect(rejectionLine(log, 'peer_rejected', metrics, at + 1000 / REJECTION_LINES_PER_SECOND - 1)).toBe(-1);
    // One token back: the line passes and says 8 were dropped since the last one.
    expect(rejectionLine(log, 'peer_rejected', metrics, at + 1000 / REJECTION_LINES_PER_SECOND)).toBe(8);
    expect(rejectionLine(log, 'peer_rejected', metrics, at + 1000 / REJECTION_LINES_PER_SECOND)).toBe(-1);
    // After a quiet spell the burst is back, and no more than the burst.
    const later = at + 60_000;
    for (let i = 0; i < REJECTION_LINES_BURST; i++)
      expect(rejectionLine(log, 'peer_rejected', metrics, later)).not.toBe(-1);
    expect(rejectionLine(log, 'peer_rejected', metrics, later)).toBe(-1);
  });

  it('holds a steady rate: over 10 s of a flood, the burst plus the rate', () => {
    const { log } = capturingLogger();
    const metrics = suppressedMetric();
    let passed = 0;
    // 500 attempts a second for 10 s (the 7,000 lines in 14 s).
    for (let t = 0; t <= 10_000; t += 2) if (rejectionLine(log, 'tls_rejected', metrics, t) >= 0) passed++;
    expect(passed).toBe(REJECTION_LINES_BURST + 10 * REJECTION_LINES_PER_SECOND);
    expect(metrics.suppressed).toHaveLength(5001 - passed);
  });

  it('each event, and each logger (each sidecar), has its own budget', () => {
    const a = capturingLogger().log;
    const b = capturingLogger().log;
    const metrics = suppressedMetric();
    for (let i = 0; i < REJECTION_LINES_BURST; i++) rejectionLine(a, 'peer_rejected', metrics, 0);
    expect(rejectionLine(a, 'peer_rejected', metrics, 0)).toBe(-1);
    expect(rejectionLine(a, 'request_refused', metrics, 0)).toBe(0);
    expect(rejectionLine(a, 'connection_dropped', metrics, 0)).toBe(0);
    expect(rejectionLine(b, 'peer_rejected', metrics, 0)).toBe(0);
  });

  it('the suppressed field is absent when nothing was dropped', () => {
    expect(suppressedField(0)).toBeUndefined();
    expect(suppressedField(3)).toBe(3);
  });
});

describe('rejection budgets per remote address', () => {
  it('a flood from one address does not use up the lines of another', () => {
    const { log } = capturingLogger();
    const metrics = suppressedMetric();
    for (let i = 0; i < REJECTION_LINES_BURST; i++) rejectionLine(log, 'peer_rejected', metrics, 0, '10.0.0.1');
    expect(rejectionLine(log, 'peer_rejected', metrics, 0, '10.0.0.1')).toBe(-1);
    // Another peer's first rejection is written, whatever the first peer did.
    expect(rejectionLine(log, 'peer_rejected', metrics, 0, '10.0.0.2')).toBe(0);
  });

  it('many addresses together stay within a ceiling per event', () => {
    const { log } = capturingLogger();
    const metrics = suppressedMetric();
    let passed = 0;
    for (let i = 0; i < 1000; i++)
      if (rejectionLine(log, 'tls_rejected', metrics, 0, `10.0.${i >> 8}.${i & 255}`) >= 0) passed++;
    expect(passed).toBe(REJECTION_LINES_BURST_ALL);
    expect(metrics.suppressed).toHaveLength(1000 - REJECTION_LINES_BURST_ALL);
  });
});
