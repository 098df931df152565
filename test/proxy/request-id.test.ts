// Request ids: 128 random bits as 32 lower-case hex characters, or the trace-id of a valid W3C traceparent
// (version 00, lower-case hex, non-zero trace-id and parent-id, exactly 55 characters).
import { describe, expect, it } from 'vitest';
import { newRequestId, traceIdOf, validTracestate } from '../../src/proxy/request-id.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const VALID = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe('newRequestId', () => {
  it('is 32 lower-case hex characters, and never the same twice across pool refills', () => {
    const ids = Array.from({ length: 2000 }, newRequestId);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('traceIdOf', () => {
  it('a valid traceparent gives its trace-id', () => {
    expect(traceIdOf(VALID)).toBe(TRACE_ID);
    expect(traceIdOf(`00-${TRACE_ID}-00f067aa0ba902b7-00`)).toBe(TRACE_ID);
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['upper-case hex', VALID.toUpperCase()],
    ['another version', `01-${TRACE_ID}-00f067aa0ba902b7-01`],
    ['version ff', `ff-${TRACE_ID}-00f067aa0ba902b7-01`],
    ['an all-zero trace-id', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`],
    ['an all-zero parent-id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
    ['a short trace-id', `00-${TRACE_ID.slice(1)}-00f067aa0ba902b7-01`],
    ['extra fields on version 00', `${VALID}-extra`],
    ['two traceparent fields, joined by Node', `${VALID}, ${VALID}`],
    ['an array', [VALID, VALID]],
    ['non-hex', `00-${TRACE_ID.slice(0, 31)}g-00f067aa0ba902b7-01`],
  ])('%s: none', (_what, value) => {
    expect(traceIdOf(value)).toBeUndefined();
  });
});

describe('tracestate (W3C Trace Context §3.3)', () => {
  it.each([
    [['vendor=opaque'], true],
    [['congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'], true],
    [['congo=t61rcWkgMzE', 'rojo=00f067aa0ba902b7'], true],
    [['tenant@system=value', ' , x=1 '], true],
    [['!!!bad!!!'], false],
    [['garbage ,,, x'], false],
    [['Upper=case-key'], false],
    [['k=tab\there'], false],
    [['k=v=w'], false],
    [[Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')], false],
    [[`k=${'v'.repeat(600)}`], false],
  ])('%j is valid: %s', (fields, valid) => {
    expect(validTracestate(fields)).toBe(valid);
  });
});
