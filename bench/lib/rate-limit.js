// The two rate-limit rows: the same policy file (one rule allowing the load generator's ID with a rate
// limit it never reaches), counted in the sidecar's local buckets or in a shared Redis
// (`--rate-limit-store`). The store row is valid only while the sidecar counts in the store: it starts
// measuring once the sidecar logged `{"event":"rate_limit_store","mode":"shared"}`, and a round during which
// it logged another mode (its `--rate-limit-store-failure` fallback) is marked invalid.
import { Buffer } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { CLIENT_ID } from './pki.js';

/**
 * The largest limit a policy accepts (src/authz/policy-file.ts: MAX_RATE_REQUESTS): a million requests a
 * second per caller, with a bucket as large, is far beyond what one sidecar serves here, so no request is
 * refused and every one still takes from a bucket.
 */
export const RATE_LIMIT = { requests: 1_000_000, per: '1s', burst: 1_000_000 };

/** Writes the rows' policy file. @param {string} file */
export async function writeRateLimitPolicy(file) {
  const policy = {
    version: 1,
    rules: [{ name: 'bench-client', effect: 'allow', callers: { ids: [CLIENT_ID] }, rate_limit: RATE_LIMIT }],
  };
  await writeFile(file, `${JSON.stringify(policy, null, 2)}\n`);
}

/**
 * @typedef {object} StoreModeLine
 * @property {string} mode shared, or the failure mode (local, allow, deny)
 * @property {string} [reason] connecting, timeout, error
 * @property {string} [error]
 */

/**
 * Follows the `rate_limit_store` lines of a sidecar's log file (one JSON object per line), reading only what
 * was appended since the previous call: the file also holds one audit line per request.
 */
export class StoreModeWatch {
  #file;
  #offset = 0;
  /** @type {string | undefined} */
  mode;

  /** @param {string} file */
  constructor(file) {
    this.#file = file;
  }

  /**
   * The `rate_limit_store` lines appended since the previous call (complete lines only).
   * @returns {Promise<StoreModeLine[]>}
   */
  async changes() {
    const size = (await stat(this.#file)).size;
    if (size <= this.#offset) return [];
    /** @type {StoreModeLine[]} */
    const found = [];
    let rest = '';
    let consumed = this.#offset;
    const stream = createReadStream(this.#file, { start: this.#offset, end: size - 1, encoding: 'utf8' });
    for await (const chunk of stream) {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        consumed += Buffer.byteLength(line) + 1;
        if (!line.includes('"event":"rate_limit_store"')) continue;
        try {
          const entry = JSON.parse(line);
          found.push({ mode: String(entry.mode), reason: entry.reason, error: entry.error });
          this.mode = String(entry.mode);
        } catch {
          // not a JSON line
        }
      }
    }
    // A line still being written is read next time.
    this.#offset = consumed;
    return found;
  }

  /**
   * Waits until the last `rate_limit_store` line says shared.
   * @param {number} timeoutMs
   */
  async waitShared(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    /** @type {StoreModeLine[]} */
    const seen = [];
    for (;;) {
      seen.push(...(await this.changes()));
      if (this.mode === 'shared') return;
      if (Date.now() > deadline) {
        const last = seen.at(-1);
        throw new Error(
          `the sidecar did not log {"event":"rate_limit_store","mode":"shared"} within ${timeoutMs} ms` +
            (last ? `; last: mode ${last.mode}${last.reason ? ` (${last.reason})` : ''}` : ''),
        );
      }
      await delay(50);
    }
  }
}

/** @param {StoreModeLine} line */
export function describeModeLine(line) {
  return `mode ${line.mode}${line.reason ? ` (${line.reason}${line.error ? `: ${line.error}` : ''})` : ''}`;
}
