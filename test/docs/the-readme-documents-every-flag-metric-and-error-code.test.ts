// The README is the reference: every flag, every metric the sidecar exports, every error code.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RUN_OPTIONS } from '../../src/cli.js';
import { documentedMetrics, readme } from '../helpers/readme.js';

const errorsSource = readFileSync(new URL('../../src/errors.ts', import.meta.url), 'utf8');

describe('the README documents every flag, metric and error code', () => {
  it.each(Object.keys(RUN_OPTIONS))('flag --%s', (flag) => {
    expect(readme).toMatch(new RegExp(`\\| \`--${flag}[ \`/]`));
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
