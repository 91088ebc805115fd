// Small helpers shared by the benchmarks: configuration from the environment, medians, percentiles,
// number formatting, and which code was measured.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

/** A positive number from the environment, or `fallback`; anything else is a configuration error. */
export function envNumber(name, fallback, { integer = false, min = 0 } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= min || (integer && !Number.isInteger(value))) {
    throw new Error(`[bench] ${name} must be ${integer ? 'an integer' : 'a number'} above ${min}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The 25th and 75th percentiles: how far the rounds spread around their median. */
export function quartiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => {
    const i = (sorted.length - 1) * q;
    const lo = Math.floor(i);
    return sorted[lo] + (sorted[Math.ceil(i)] - sorted[lo]) * (i - lo);
  };
  return [at(0.25), at(0.75)];
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
 * Whether round-by-round ratios meet a target (`atLeast`, or above `above`), judged on the median's
 * confidence interval: PASS when all of it is on the right side, FAIL when all of it is on the wrong
 * side, NOT DECIDED when the target lies inside it (this machine's noise is then larger than the
 * difference measured: more rounds, or a quieter machine, decide it).
 */
export function verdict(values, { atLeast, above }, confidence = 0.9) {
  const interval = medianInterval(values, confidence);
  if (interval === null) return { verdict: 'NOT DECIDED', interval: null, why: `${values.length} rounds are too few for a ${Math.round(confidence * 100)}% interval` };
  const meets = (x) => (atLeast !== undefined ? x >= atLeast : x > above);
  const result = meets(interval.low) ? 'PASS' : meets(interval.high) ? 'NOT DECIDED' : 'FAIL';
  return { verdict: result, interval };
}

/** A verdict with its interval, for one line of output: `93% interval of the median 0.912-0.951 -> FAIL`. */
export function verdictText(v) {
  const range = v.interval === null ? v.why : `${Math.round(v.interval.coverage * 100)}% interval of the median ${fixed(v.interval.low, 3)}-${fixed(v.interval.high, 3)}`;
  return `${range} -> ${v.verdict}`;
}

/** Combines verdicts that must all pass: FAIL if one fails, PASS if all pass, NOT DECIDED otherwise. */
export function allOf(verdicts) {
  if (verdicts.some((v) => v.verdict === 'FAIL')) return 'FAIL';
  return verdicts.every((v) => v.verdict === 'PASS') ? 'PASS' : 'NOT DECIDED';
}

/** Nearest-rank percentile (0-100) of values sorted in ascending order. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** count, min, p50, p90, p99, max and mean of a list of numbers. */
export function distribution(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, v) => sum + v, 0) / sorted.length;
  return {
    count: sorted.length,
    min: sorted[0],
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1],
    mean,
  };
}

/** 1234567.8 -> "1,234,568" */
export const int = (n) => Math.round(n).toLocaleString('en-US');

export const fixed = (n, digits = 2) => n.toFixed(digits);

/** Right-aligned columns: rows of cells, the first row a header. */
export function table(rows, indent = '  ') {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map((r) => indent + r.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]))).join('   '))
    .join('\n');
}

/** CPU time the whole machine has been busy, in microseconds (Linux), or null where /proc/stat is missing. */
export function machineBusy() {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    // Ticks of 10 ms (USER_HZ is 100 on Linux).
    return (user + nice + system + irq + softirq + steal) * 10_000;
  } catch {
    return null;
  }
}

/** The machine a benchmark runs on, as its results record it. */
export function machineInfo() {
  return { node: process.version, platform: `${process.platform} ${process.arch}`, cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism() };
}

/** A benchmark's first line: what runs, on which machine, built from which commit. */
export function runHeader(title, machine, source) {
  return `${title}: Node ${machine.node}, ${machine.platform}, ${machine.cores} x ${machine.cpu}` +
    (source ? `; packages built from ${source.commit}${source.dirty ? ' with uncommitted changes' : ''}` : '');
}

/** Which code was measured: the commit, and whether packages/ had uncommitted changes (best effort). */
export function sourceState() {
  const cwd = fileURLToPath(new URL('..', import.meta.url));
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'packages'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return { commit, dirty };
  } catch {
    return null;
  }
}
