// Durations as operators write them: `90s`, `15m`, `1h`, `7d`, or a combination like `1h30m`.
import { SidecarError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string, flag: string): number {
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `${flag} ${JSON.stringify(text)}: not a duration; write e.g. 90s, 15m, 1h or 7d`,
    );
  }
  const ms = parts.reduce((sum, [, n, unit]) => sum + Number(n) * UNIT_MS[unit], 0);
  if (ms <= 0)
    throw new SidecarError('ERR_CONFIG_INVALID', `${flag} ${JSON.stringify(text)}: must be longer than zero`);
  return ms;
}
