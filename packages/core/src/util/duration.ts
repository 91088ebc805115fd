// Durations like `30d`, `24h` or `1h30m`, for expiries and rotation grace periods.
import { tillError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /(\d+)(ms|s|m|h|d|w)/y;
/** Longest duration accepted: 100 years, far beyond any sane key lifetime, safely inside a Date. */
export const MAX_DURATION = 100 * 365 * UNITS.d!;

/**
 * Milliseconds in a duration: a sequence of `<integer><unit>` with units ms, s, m, h, d, w
 * (`30d`, `1h30m`, `500ms`), or a non-negative integer number of milliseconds given as a number.
 * Text of digits alone (`"5000"`) is refused: it names no unit.
 */
export function parseDuration(value: string | number, what = 'duration'): number {
  let total = 0;
  if (typeof value === 'number') {
    total = value;
  } else if (typeof value === 'string' && value.length > 0 && value.length <= 64) {
    PART.lastIndex = 0;
    let matched = 0;
    for (let m = PART.exec(value); m !== null; m = PART.exec(value)) {
      total += Number(m[1]) * UNITS[m[2]!]!;
      matched = PART.lastIndex;
    }
    if (matched !== value.length) total = Number.NaN;
  } else {
    total = Number.NaN;
  }
  if (!Number.isSafeInteger(total) || total < 0 || total > MAX_DURATION) {
    if (typeof value === 'string' && /^\d{1,20}$/.test(value)) {
      // Text like "5000" (a command-line option, an environment variable): seconds or milliseconds?
      const ms = Number(value);
      const seconds = ms % 1000 === 0 && ms > 0 ? ` or ${ms / 1000}s` : '';
      throw tillError('INVALID_ARGUMENT', 'keys', `${what} "${value}": a bare number has no unit: write ${value}ms${seconds}`);
    }
    const numeric = typeof value === 'number' ? ', or a whole number of milliseconds' : '';
    throw tillError(
      'INVALID_ARGUMENT',
      'keys',
      `${what} must be like 30d, 24h, 1h30m or 500ms (units ms s m h d w)${numeric}, up to 100 years; got ${JSON.stringify(String(value).slice(0, 40))}`,
    );
  }
  return total;
}
