// The README as test data: the reference tables that code must match.
import { readFileSync } from 'node:fs';

export const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** Metric names from the README's Metrics table. */
export function documentedMetrics(): string[] {
  return [...readme.matchAll(/^\| `(spiffe_sidecar_[a-z_]+)` /gm)].map((m) => m[1]);
}
