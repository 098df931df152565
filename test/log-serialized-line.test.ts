// writeSerializedLine: the line it writes is, field for field, the line pino writes for the same object
// (level, time, the logger's bindings, the fields, msg), so the access line written by hand reads like
// every other line, in both formats, through child loggers (a worker's pid), and is skipped when its level
// is off.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLogger, isoTime, jsonString, prettyDestination, writeSerializedLine } from '../src/log.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (text: string) => lines.push(text) } };
}

const FIELDS = {
  event: 'authz',
  peer: 'oidc#sub with "quotes", a \\ and a \n newline',
  status: 200,
  duration_ms: 0.125,
  dry_run: true,
};
const members = Object.entries(FIELDS)
  .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
  .join(',');

/** A line without its time (the only field that differs between two calls). */
function parsed(line: string): Record<string, unknown> {
  const { time, ...rest } = JSON.parse(line) as Record<string, unknown>;
  expect(time).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
  return rest;
}

describe('writeSerializedLine', () => {
  it('writes the line pino writes for the same fields, in the same order, one line', () => {
    const { lines, destination } = capture();
    const log = createLogger('info', destination);
    log.info(FIELDS, 'authorization decision');
    writeSerializedLine(log, 'info', members, 'authorization decision');
    expect(lines).toHaveLength(2);
    expect(lines[1].endsWith('}\n')).toBe(true);
    expect(lines[1].split('\n')).toHaveLength(2);
    expect(parsed(lines[1])).toEqual(parsed(lines[0]));
    expect(Object.keys(parsed(lines[1]))).toEqual(Object.keys(parsed(lines[0])));
  });

  it("carries a child logger's bindings (a worker's pid), and warn is warn", () => {
    const { lines, destination } = capture();
    const child = createLogger('info', destination).child({ pid: 4242, worker: 2 });
    child.warn(FIELDS, 'm');
    writeSerializedLine(child, 'warn', members, 'm');
    expect(parsed(lines[1])).toEqual(parsed(lines[0]));
    expect(parsed(lines[1])).toMatchObject({ level: 'warn', pid: 4242, worker: 2 });
  });

  it('writes nothing when the level is off', () => {
    const { lines, destination } = capture();
    writeSerializedLine(createLogger('warn', destination), 'info', members, 'm');
    expect(lines).toEqual([]);
  });

  it('reads like any line in the pretty format, its newline escaped', async () => {
    const out = capture();
    const pretty = prettyDestination(out.destination);
    writeSerializedLine(createLogger('info', pretty), 'info', members, 'authorization decision');
    await new Promise((resolve) => setImmediate(resolve));
    expect(out.lines).toHaveLength(1);
    // A value with a quote in it is written quoted, as JSON (pretty quotes what could read as more fields).
    expect(out.lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}authorization decision event=authz peer="oidc#sub/);
    expect(out.lines[0]).toContain('\\n newline');
    expect(out.lines[0].split('\n')).toHaveLength(2);
  });
});

describe('the parts of a line written by hand', () => {
  it('jsonString writes what JSON.stringify writes, whatever the string holds', () => {
    for (const text of ['', 'GET', '/a"b\\c', 'a\nb\u0000\u001f\u007f', '\u2028', '\ud800', 'x\udc00y', '\ud83d\ude00'])
      expect(jsonString(text)).toBe(JSON.stringify(text));
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => jsonString(text) === JSON.stringify(text)));
  });

  it("isoTime is pino's isoTime: the time now, to the millisecond", () => {
    const before = Date.now();
    const { time } = JSON.parse(`{${isoTime().slice(1)}}`) as { time: string };
    expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(time)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(time)).toBeLessThanOrEqual(Date.now());
  });
});
