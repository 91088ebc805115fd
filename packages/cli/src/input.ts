// Turning command-line text into what the key manager takes: ids, scopes, metadata, times, durations.
// Everything here is checked before Redis is contacted, so bad input never reaches the store.
import {
  isValidIdentityId,
  AUDIT_TYPES,
  ID_LENGTH,
  isTillError,
  isValidGrant,
  isValidKeyId,
  isValidRoleName,
  normalizeAllowlist,
  normalizeCredits,
  normalizeRateLimits,
  parseDuration,
  parseKey,
  type AuditType,
  type CreditsInput,
  type RateLimitInput,
} from '@till/core';
import { failed, plainMessage } from './errors.js';

/** Commander's collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * A key id. The message never repeats the input: someone may have pasted a whole key. If they did,
 * the message names the key's id, which is public.
 */
export function keyId(text: string): string {
  // (Through `unknown`: the guard would otherwise narrow `text` to never below.)
  if (isValidKeyId(text as unknown)) return text;
  const parsed = parseKey(text.trim());
  if (parsed.ok) throw failed(`that is a whole key, not a key id: use its id ${parsed.id}, and keep the key itself out of commands and shell history`);
  throw failed(`invalid key id: an id is the ${ID_LENGTH} characters A-Z a-z 0-9 printed with the key (got ${text.length} characters)`);
}

/** `--scope a --scope b,c` -> ['a', 'b', 'c'], each a valid grant. */
export function scopes(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const scope = part.trim();
      if (scope === '') throw failed('empty scope in --scope: give scopes like users:read, separated by commas or repeated --scope');
      if (!isValidGrant(scope as unknown)) {
        throw failed(`invalid scope ${JSON.stringify(scope.slice(0, 64))}: use segments of A-Z a-z 0-9 _ . - joined by ":", optionally ending in ":*", or "*"`);
      }
      out.push(scope);
    }
  }
  return out;
}

/** `--meta team=billing --meta tier=2` -> { team: 'billing', tier: '2' }. Values stay strings. */
export function metadata(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq < 1) throw failed(`invalid --meta ${JSON.stringify(value.slice(0, 64))}: use key=value`);
    // defineProperty, not assignment: `__proto__=x` must become an entry, not vanish.
    Object.defineProperty(out, value.slice(0, eq), { value: value.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** A duration like `24h`, `30d` or `1h30m`, in milliseconds. */
export function duration(text: string, option: string): number {
  try {
    return parseDuration(text, option);
  } catch (error) {
    if (isTillError(error)) throw failed(plainMessage(error.message));
    throw error;
  }
}

const DURATION_START = /^\d+(?:ms|s|m|h|d|w)/;
/** Digits alone: a duration without its unit, refused by core with "a bare number has no unit". */
const BARE_NUMBER = /^\d{1,20}$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * An ISO 8601 date or date-time. A date alone is midnight UTC; a time without an offset is local
 * time (as in JavaScript). Impossible dates like 2027-02-30 are refused, not rolled over.
 */
function isoTime(text: string): number | null {
  const m = ISO.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = '00', mi = '00', s = '00'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return null;
  const offset = m[8] && m[8].toUpperCase() !== 'Z' && !m[8].includes(':') ? `${m[8].slice(0, 3)}:${m[8].slice(3)}` : m[8];
  const normalized = m[4] === undefined ? `${y}-${mo}-${d}` : `${y}-${mo}-${d}T${h}:${mi}:${s}${(m[7] ?? '').slice(0, 4)}${offset ?? ''}`;
  const ms = Date.parse(normalized);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * A point in time for `--expires` or `--not-before`: an ISO 8601 date or time, or a duration from
 * now. `never` gives null where `allowNever` (removing an expiry).
 */
export function time(text: string, option: string, now: number, allowNever = false): number | null {
  const value = text.trim();
  if (allowNever && value.toLowerCase() === 'never') return null;
  const iso = isoTime(value);
  if (iso !== null) return iso;
  if (DURATION_START.test(value) || BARE_NUMBER.test(value)) return now + duration(value, option);
  const never = allowNever ? ', or never' : '';
  throw failed(
    `invalid ${option} ${JSON.stringify(value.slice(0, 40))}: give an ISO 8601 date or time (2027-01-31, 2027-01-31T12:00Z) or a duration from now (30d, 12h, 1h30m)${never}`,
  );
}

/**
 * `--expires` as core takes it: a duration as `expiresIn` (counted on core's clock), a date as
 * `expiresAt`, `never` (where allowed) as `expiresAt: null`.
 */
export function expiry(text: string, now: number, allowNever = false): { expiresAt: number | null } | { expiresIn: string } {
  const at = time(text, '--expires', now, allowNever);
  const value = text.trim();
  if (at !== null && at <= now) throw failed(`--expires ${JSON.stringify(value.slice(0, 40))} is not in the future`);
  return at !== null && DURATION_START.test(value) ? { expiresIn: value } : { expiresAt: at };
}

/** `--limit`: a page size of 1-1000. */
export function limit(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isInteger(n) || n < 1 || n > 1000)
    throw failed(`invalid --limit ${JSON.stringify(text.slice(0, 20))}: give a whole number from 1 to 1000`);
  return n;
}

/** Free text such as a reason, checked as core checks it (1-200 characters, no control characters). */
export function text(value: string, option: string): string {
  if (value.trim().length === 0 || value.length > 200 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw failed(`invalid ${option}: give 1-200 characters without control characters`);
  }
  return value;
}

/** `--rate name=N/window` (repeatable), like `per-second=10/1s`; `none` alone means no limits. */
export function rateLimits(values: readonly string[]): RateLimitInput[] {
  if (values.length === 1 && values[0]!.trim().toLowerCase() === 'none') return [];
  const limits = values.map((value) => {
    const m = /^([^=]+)=(\d+)\/(.+)$/.exec(value.trim());
    if (!m) throw failed(`invalid --rate ${JSON.stringify(value.slice(0, 40))}: give name=count/window, like per-second=10/1s or per-day=10000/1d`);
    return { name: m[1]!, limit: Number(m[2]), window: m[3]! };
  });
  return checked(() => normalizeRateLimits(limits, 'keys'));
}

/** `--credits N` with an optional `--refill amount/interval`; `--credits none` removes them. */
export function credits(count: string, refill: string | undefined): CreditsInput | null {
  if (count.trim().toLowerCase() === 'none') {
    if (refill !== undefined) throw failed('--refill needs --credits with a number');
    return null;
  }
  if (!/^\d+$/.test(count.trim())) throw failed(`invalid --credits ${JSON.stringify(count.slice(0, 20))}: give a whole number of uses, or none`);
  let parsed: CreditsInput['refill'] = null;
  if (refill !== undefined) {
    const m = /^(\d+)\/(.+)$/.exec(refill.trim());
    if (!m) throw failed(`invalid --refill ${JSON.stringify(refill.slice(0, 40))}: give amount/interval, like 1000/30d`);
    parsed = { amount: Number(m[1]), interval: m[2]! };
  }
  const result: CreditsInput = { remaining: Number(count.trim()), refill: parsed };
  checked(() => normalizeCredits(result, 'keys', 0, 0));
  return result;
}

/** Runs core's own check, turning its error into the CLI's. */
function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (isTillError(error)) throw failed(plainMessage(error.message));
    throw error;
  }
}

/**
 * A point in the past for `--since`/`--until`: an ISO 8601 date or time, or a duration back from now
 * (`24h`, `7d`).
 */
export function past(text: string, option: string, now: number): number {
  const value = text.trim();
  const iso = isoTime(value);
  if (iso !== null) return iso;
  if (DURATION_START.test(value) || BARE_NUMBER.test(value)) return now - duration(value, option);
  throw failed(`invalid ${option} ${JSON.stringify(value.slice(0, 40))}: give an ISO 8601 date or time (2027-01-31) or a duration back from now (24h, 7d)`);
}

/** A whole number of at least 1, like `--failures 100`. */
export function count(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d{1,9}$/.test(text) || n < 1) throw failed(`invalid ${option} ${JSON.stringify(text.slice(0, 20))}: give a whole number of at least 1`);
  return n;
}

/** `--rate`, `--credits` and `--refill` as the key manager takes them (create and update alike). */
export function limitsAndCredits(options: { rate?: string[]; credits?: string; refill?: string }): {
  limits?: RateLimitInput[];
  credits?: CreditsInput | null;
} {
  if (options.refill !== undefined && options.credits === undefined) throw failed('--refill needs --credits');
  return {
    ...(options.rate !== undefined && { limits: rateLimits(options.rate) }),
    ...(options.credits !== undefined && { credits: credits(options.credits, options.refill) }),
  };
}

/**
 * `--allow-ip 203.0.113.0/24 --allow-ip 2001:db8::/32` (repeatable, or separated by commas) as the key
 * manager takes them, checked; `none` alone means no allowlist (update only: `allowNone`).
 */
export function allowedIps(values: readonly string[], allowNone = false): string[] {
  if (allowNone && values.length === 1 && values[0]!.trim().toLowerCase() === 'none') return [];
  const ranges: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const range = part.trim();
      if (range === '') throw failed('empty range in --allow-ip: give ranges like 203.0.113.0/24 or 2001:db8::/32, separated by commas or repeated');
      ranges.push(range);
    }
  }
  return checked(() => normalizeAllowlist(ranges, 'keys'));
}

/**
 * `--role reporting --role billing,ops` as the key manager takes them, each a valid role name; `none`
 * alone means no roles (update only: `allowNone`). Whether each is defined, the key manager checks.
 */
export function roles(values: readonly string[], allowNone = false): string[] {
  if (allowNone && values.length === 1 && values[0]!.trim().toLowerCase() === 'none') return [];
  const out: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const name = part.trim();
      if (name === '') throw failed('empty role in --role: give role names like reporting, separated by commas or repeated');
      if (!isValidRoleName(name as unknown)) {
        throw failed(`invalid role name ${JSON.stringify(name.slice(0, 64))}: 1-64 characters of a-z 0-9 _ . -, starting with a letter or digit`);
      }
      out.push(name);
    }
  }
  return out;
}

/** `--type` values (repeatable) checked against the audit entry types. */
export function auditTypes(values: readonly string[]): AuditType[] {
  for (const t of values) {
    if (!(AUDIT_TYPES as readonly string[]).includes(t)) throw failed(`invalid --type ${JSON.stringify(t.slice(0, 40))}: one of ${AUDIT_TYPES.join(', ')}`);
  }
  return values as AuditType[];
}

/** An identity id, like `acme` or `team-7` (`--identity`, `till identities show <id>`). */
export function identityId(text: string): string {
  const value = text.trim();
  if (!isValidIdentityId(value as unknown))
    throw failed(`invalid identity id ${JSON.stringify(value.slice(0, 70))}: 1-64 letters, digits, "_", ".", "-", "@" or ":", starting with a letter or digit`);
  return value;
}
