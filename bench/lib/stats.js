// Small statistics helpers: medians of rounds, percentiles of latencies, ratios that tolerate missing data.

/**
 * The p-th percentile (0..100) of values, nearest-rank on a sorted copy; undefined when empty.
 * @param {ArrayLike<number>} values
 * @param {number} p
 * @returns {number | undefined}
 */
export function percentile(values, p) {
  if (values.length === 0) return undefined;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/**
 * The median of the defined, finite values; undefined when there are none.
 * @param {(number | undefined)[]} values
 * @returns {number | undefined}
 */
export function median(values) {
  const defined = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  if (defined.length === 0) return undefined;
  defined.sort((a, b) => a - b);
  const mid = defined.length >> 1;
  return defined.length % 2 === 1 ? defined[mid] : (defined[mid - 1] + defined[mid]) / 2;
}

/**
 * a / b, or undefined when either is missing or b is not positive.
 * @param {number | undefined} a
 * @param {number | undefined} b
 * @returns {number | undefined}
 */
export function ratio(a, b) {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return undefined;
  return a / b;
}

/**
 * The largest defined value; undefined when there are none.
 * @param {(number | undefined)[]} values
 */
export function max(values) {
  const defined = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  return defined.length === 0 ? undefined : Math.max(...defined);
}
