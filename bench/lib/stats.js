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

/**
 * A distribution-free confidence interval for the median: the k-th smallest and k-th largest of n values, with
 * the largest k whose coverage, 1 − 2·P(Binomial(n, ½) < k), is at least `coverage`. Undefined when n is too
 * small for that coverage (n < 5 at 90%).
 * @param {number[]} values
 * @param {number} [coverage]
 * @returns {{ low: number, high: number, coverage: number } | undefined}
 */
export function medianInterval(values, coverage = 0.9) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const n = sorted.length;
  let below = 0; // P(Binomial(n, ½) < k), for k = 1, 2, ...
  let choose = 1; // C(n, k - 1)
  /** @type {{ low: number, high: number, coverage: number } | undefined} */
  let best;
  for (let k = 1; 2 * k <= n; k++) {
    below += choose / 2 ** n;
    choose = (choose * (n - k + 1)) / k;
    const covered = 1 - 2 * below;
    if (covered < coverage) break;
    best = { low: sorted[k - 1], high: sorted[n - k], coverage: covered };
  }
  return best;
}
