// Small helpers shared by the benchmarks: configuration from the environment, medians, number formatting.
import { readFileSync } from 'node:fs';

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
