// The README is the reference: every flag with its default as the code has it, every metric the sidecar
// exports, every error code.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  defaultInMarkdown,
  type FlagDefault,
  INJECT_WEBHOOK_DEFAULTS,
  RUN_DEFAULTS,
} from '../../src/config/defaults.js';
import { RUN_OPTIONS } from '../../src/config/run-options.js';
import { INJECT_WEBHOOK_OPTIONS } from '../../src/webhook/options.js';
import { documentedMetrics, readme } from '../helpers/readme.js';

const errorsSource = readFileSync(new URL('../../src/errors.ts', import.meta.url), 'utf8');

/** The rows of the first table after `heading`, by flag name: the cells after the flag's own cell. */
function flagRows(heading: string): Map<string, string[]> {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const lines = readme.slice(start).split('\n').slice(1);
  const first = lines.findIndex((l) => l.startsWith('|'));
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(first)) {
    if (!line.startsWith('|')) break;
    // Cells split on `|` but not on `\|` (an escaped bar inside a cell, e.g. NAME=URL\|FILE).
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim());
    const flag = /^`--([a-z0-9-]+)/.exec(cells[0])?.[1];
    if (flag) rows.set(flag, cells.slice(1));
  }
  return rows;
}

describe('the README documents every flag, metric and error code', () => {
  it.each(Object.keys(RUN_OPTIONS))('flag --%s', (flag) => {
    expect(readme).toMatch(new RegExp(`\\| \`--${flag}[ \`/]`));
  });

  it('the defaults table has one entry per flag, no more', () => {
    expect(Object.keys(RUN_DEFAULTS).sort()).toEqual(Object.keys(RUN_OPTIONS).sort());
    expect(Object.keys(INJECT_WEBHOOK_DEFAULTS).sort()).toEqual(Object.keys(INJECT_WEBHOOK_OPTIONS).sort());
  });

  const runRows = flagRows('## Commands and flags');
  it.each(Object.entries(RUN_DEFAULTS) as [string, FlagDefault][])(
    'Commands and flags: the default of --%s',
    (flag, entry) => {
      // Columns: flag, environment, default, meaning.
      expect(runRows.get(flag)?.[1], `--${flag}`).toBe(defaultInMarkdown(entry));
    },
  );

  const webhookRows = flagRows('### `inject-webhook` flags');
  it.each(Object.entries(INJECT_WEBHOOK_DEFAULTS) as [string, FlagDefault][])(
    'inject-webhook flags: the default of --%s',
    (flag, entry) => {
      // Columns: flag, default, meaning.
      expect(webhookRows.get(flag)?.[0], `--${flag}`).toBe(defaultInMarkdown(entry));
    },
  );

  it('the Limits table agrees with the defaults table', () => {
    const rows = flagRows('### Limits');
    expect(rows.size).toBeGreaterThanOrEqual(10);
    for (const [flag, cells] of rows) {
      expect(RUN_DEFAULTS, `--${flag}`).toHaveProperty(flag);
      expect(cells[0], `--${flag}`).toBe(defaultInMarkdown(RUN_DEFAULTS[flag as keyof typeof RUN_DEFAULTS]));
    }
  });

  it('every error code', () => {
    const codes = [...errorsSource.matchAll(/\| '(ERR_[A-Z_]+)'/g)].map((m) => m[1]);
    expect(codes.length).toBeGreaterThan(20);
    for (const code of codes) expect(readme, code).toMatch(new RegExp(`^\\|[^\\n]*\`${code}\``, 'm'));
  });

  it('every log event the code emits', () => {
    const sources = readdirSync(new URL('../../src', import.meta.url), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(new URL(`../../src/${f}`, import.meta.url), 'utf8'))
      .join('\n');
    const events = new Set([...sources.matchAll(/event: '([a-z_]+)'/g)].map((m) => m[1]));
    expect(events.size).toBeGreaterThan(20);
    for (const event of events) expect(readme, event).toMatch(new RegExp(`^\\| \`${event}\` `, 'm'));
  });

  it('a metrics table', () => {
    expect(documentedMetrics().length).toBeGreaterThanOrEqual(10);
  });
});
