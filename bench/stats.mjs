// The benchmarks' statistics. A machine's speed drifts, so every figure is a ratio against a baseline
// measured in the same run, round by round, and a target is decided on an interval, never on a median alone.

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The 25th and 75th percentiles (interpolated): how far the rounds spread around their median. */
export function quartiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => {
    const i = (sorted.length - 1) * q;
    const lo = Math.floor(i);
    return sorted[lo] + (sorted[Math.ceil(i)] - sorted[lo]) * (i - lo);
  };
  return [at(0.25), at(0.75)];
}

/** count, min, p50, p90, p99 (nearest rank), max and mean of a list of numbers. */
export function distribution(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]);
  return {
    count: sorted.length,
    min: sorted[0],
    p50: rank(50),
    p90: rank(90),
    p99: rank(99),
    max: sorted[sorted.length - 1],
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
  };
}

/**
 * Round by round, variant `a`'s requests/s over variant `b`'s. Runs carry their `round`; the runs of one
 * round are added up first, so each ratio compares the same stretch of time (a round of interleaved runs
 * sits its variants at the same middle, so a machine that speeds up or slows down moves them alike).
 */
export function roundRatios(a, b, value = (run) => run.rps) {
  const sums = (runs) => {
    const out = [];
    for (const r of runs) out[r.round] = (out[r.round] ?? 0) + value(r);
    return out;
  };
  const y = sums(b);
  return sums(a).map((v, i) => v / y[i]);
}

/**
 * A confidence interval for the median of `values` that assumes nothing of their distribution: the
 * k-th smallest to the k-th largest value, for the largest k whose coverage (from the binomial
 * distribution: each value falls below the true median with probability 1/2) reaches `confidence`.
 * Null when there are too few values for it (fewer than 5 for 90%).
 */
export function medianInterval(values, confidence = 0.9) {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  let best = null;
  let below = 0; // P(fewer than k values below the median)
  let exactly = 0.5 ** n; // P(exactly k - 1 values below it)
  for (let k = 1; 2 * k <= n; k++) {
    below += exactly;
    const coverage = 1 - 2 * below;
    if (coverage < confidence) break;
    best = { low: sorted[k - 1], high: sorted[n - k], coverage };
    exactly = (exactly * (n - k + 1)) / k;
  }
  return best;
}

/**
 * Whether round-by-round ratios meet a target (`atLeast`, or strictly `above`), judged on the median's
 * interval: PASS when all of it is on the right side, FAIL when all of it is on the wrong side, NOT
 * DECIDED when the target lies inside it (the machine's noise is then larger than the difference
 * measured: more rounds, or a quieter machine, decide it).
 */
export function verdict(values, { atLeast, above }, confidence = 0.9) {
  const interval = medianInterval(values, confidence);
  if (interval === null)
    return { verdict: 'NOT DECIDED', interval: null, why: `${values.length} rounds are too few for a ${Math.round(confidence * 100)}% interval` };
  const meets = (x) => (atLeast !== undefined ? x >= atLeast : x > above);
  return { verdict: meets(interval.low) ? 'PASS' : meets(interval.high) ? 'NOT DECIDED' : 'FAIL', interval };
}

/** A verdict with its interval, for one line of output: `93% interval of the median 0.912-0.951 -> FAIL`. */
export function verdictText(v) {
  const range =
    v.interval === null ? v.why : `${Math.round(v.interval.coverage * 100)}% interval of the median ${v.interval.low.toFixed(3)}-${v.interval.high.toFixed(3)}`;
  return `${range} -> ${v.verdict}`;
}

/** Verdicts that must all pass: FAIL if one fails, PASS if all pass, NOT DECIDED otherwise. */
export function allOf(verdicts) {
  if (verdicts.some((v) => v.verdict === 'FAIL')) return 'FAIL';
  return verdicts.every((v) => v.verdict === 'PASS') ? 'PASS' : 'NOT DECIDED';
}

/**
 * One variant against a baseline measured in the same rounds: the median round ratio, its middle half and
 * the verdict on a target. `runs` and `baseRuns` are runs tagged with their round (see roundRatios).
 */
export function compare(runs, baseRuns, target = null, value) {
  const ratios = roundRatios(runs, baseRuns, value);
  return { ratio: median(ratios), quartiles: quartiles(ratios), roundRatios: ratios, decision: target === null ? null : verdict(ratios, target) };
}
