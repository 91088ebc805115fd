// Rate limits (GCRA) and credits: the policies, their checks, and the one evaluation every store mirrors.
import { parseDuration } from '../util/duration.js';
import { tillError } from '../errors.js';

/**
 * A rate limit: at most `limit` requests per `window` milliseconds, with bursts of up to `limit`
 * (GCRA: a request is admitted when the bucket it fills would not overflow `window`).
 */
export interface RateLimit {
  /** Names the limit in headers and errors: letters, digits, `_`, `.` and `-`, at most 64. */
  readonly name: string;
  readonly limit: number;
  /** Milliseconds. */
  readonly window: number;
}

/** A rate limit as given by users: the window may be a duration like `1s`, `1m` or `1d`. */
export interface RateLimitInput {
  name: string;
  limit: number;
  window: string | number;
}

/** One limit charged by one request: `cost` units of it (default 1). */
export interface LimitCharge extends RateLimit {
  readonly cost: number;
}

/** A limit after a check: what the `RateLimit` headers report. */
export interface LimitState {
  readonly name: string;
  readonly limit: number;
  readonly window: number;
  /** Requests of cost 1 that would be admitted now. */
  readonly remaining: number;
  /** Milliseconds until the limit is whole again. */
  readonly reset: number;
}

/** Usage credits of a key: a number of uses, optionally topped up every interval. */
export interface Credits {
  /** Credits when they were set (`setAt`); the live count is kept apart by the store. */
  readonly remaining: number;
  /** Every `interval` ms the credits are topped up to `amount` (never lowered). */
  readonly refill: { readonly amount: number; readonly interval: number } | null;
  /** Epoch ms when the credits were set; refills count from here. */
  readonly setAt: number;
  /**
   * Version of the record that set them (or, in a rotation chain, above every generation the chain
   * had before): a store resets its live count when this changes, and never goes back to an older one.
   */
  readonly generation: number;
  /**
   * Whose live count these credits are: the id of the first key of a rotation chain, whose counter
   * every key of the chain charges (rotating a key never copies its balance). Absent: the key's own.
   */
  readonly account?: string;
}

export interface CreditsInput {
  remaining: number;
  refill?: { amount: number; interval: string | number } | null;
}

/** Stored state of one limit: the debt (in 1/limit ms) at time `at`. */
export interface BucketState {
  readonly at: number;
  readonly debt: number;
}

/** Stored state of a key's credits. */
export interface CreditState {
  readonly remaining: number;
  readonly refilledAt: number;
  readonly generation: number;
}

export type ChargeOutcome = 'OK' | 'RATE_LIMITED' | 'USAGE_EXCEEDED';

export interface Evaluation {
  readonly outcome: ChargeOutcome;
  /** States after the charge (or, when refused, as they stand). Same order as the charges. */
  readonly limits: LimitState[];
  /** New bucket states to store when admitted, with the milliseconds each is worth keeping. */
  readonly buckets: Array<{ state: BucketState; ttl: number }>;
  /** Credits left after the charge; null when the key has no credits. */
  readonly credits: number | null;
  /** New credit state to store when admitted (and credits apply). */
  readonly creditState: CreditState | null;
  /** Milliseconds after which the same request may be admitted; null when it never can. */
  readonly retryAfter: number | null;
}

/** limit x window in ms, at most: a debt plus a charge then stays below 2^53, exact in doubles. */
export const MAX_CAPACITY = 2 ** 52;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** Largest credit count or cost: exact integers in JavaScript and in Redis's Lua alike. */
export const MAX_CREDITS = 1e15;

function invalid(where: string, message: string): never {
  throw tillError(where === 'keys' ? 'INVALID_ARGUMENT' : 'INVALID_OPTIONS', where, `${message}`);
}

export function isValidLimitName(name: unknown): name is string {
  return typeof name === 'string' && NAME.test(name);
}

/** Checks and normalizes a rate limit: a positive integer limit and a window in whole milliseconds. */
export function normalizeRateLimit(input: unknown, where: string): RateLimit {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    invalid(where, 'a rate limit must be an object like { name: "api", limit: 100, window: "1m" }');
  const { name, limit, window } = input as Record<string, unknown>;
  if (!isValidLimitName(name))
    invalid(where, `rate limit name must be 1-64 letters, digits, "_", "." or "-"; got ${JSON.stringify(String(name).slice(0, 70))}`);
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) invalid(where, `rate limit "${name}": limit must be a positive integer`);
  let ms: number;
  try {
    ms = parseDuration(window as string | number, `rate limit "${name}" window`);
  } catch (error) {
    invalid(where, (error as Error).message.replace(/^\[till\] \[keys\] /, ''));
  }
  if (ms < 1) invalid(where, `rate limit "${name}": window must be at least 1ms`);
  // GCRA counts in 1/limit ms; every quantity (up to twice this product) stays an exact integer.
  if (ms * limit > MAX_CAPACITY) invalid(where, `rate limit "${name}": limit x window (ms) must stay below 2^52; use a shorter window or a smaller limit`);
  return Object.freeze({ name, limit, window: ms });
}

/** Checks a list of rate limits with distinct names. */
export function normalizeRateLimits(input: unknown, where: string): RateLimit[] {
  if (!Array.isArray(input)) invalid(where, 'limits must be an array of { name, limit, window }');
  const limits = input.map((l) => normalizeRateLimit(l, where));
  const names = new Set<string>();
  for (const l of limits) {
    if (names.has(l.name)) invalid(where, `two rate limits are named "${l.name}"; names must be distinct`);
    names.add(l.name);
  }
  return limits;
}

export function isValidCost(cost: unknown): cost is number {
  return typeof cost === 'number' && Number.isSafeInteger(cost) && cost >= 0 && cost <= MAX_CREDITS;
}

/** Checks credits as given by users; `setAt` and `generation` are filled in by the key manager. */
export function normalizeCredits(input: unknown, where: string, setAt: number, generation: number): Credits {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    invalid(where, 'credits must be an object like { remaining: 1000, refill: { amount: 1000, interval: "30d" } }');
  const { remaining, refill } = input as Record<string, unknown>;
  if (!isValidCost(remaining)) invalid(where, `credits.remaining must be an integer from 0 to ${MAX_CREDITS}`);
  let normalized: Credits['refill'] = null;
  if (refill !== undefined && refill !== null) {
    if (typeof refill !== 'object' || Array.isArray(refill)) invalid(where, 'credits.refill must be { amount, interval }');
    const { amount, interval } = refill as Record<string, unknown>;
    if (!isValidCost(amount) || amount < 1) invalid(where, `credits.refill.amount must be an integer from 1 to ${MAX_CREDITS}`);
    let ms: number;
    try {
      ms = parseDuration(interval as string | number, 'credits.refill.interval');
    } catch (error) {
      invalid(where, (error as Error).message.replace(/^\[till\] \[keys\] /, ''));
    }
    if (ms < 1000) invalid(where, 'credits.refill.interval must be at least 1s');
    normalized = Object.freeze({ amount, interval: ms });
  }
  return Object.freeze({ remaining, refill: normalized, setAt, generation });
}

/** Debt of a bucket at `now`: what is left of the stored debt after the time since. */
export function decayedDebt(state: BucketState | undefined, now: number, limit: number, window: number): number {
  if (state === undefined) return 0;
  const elapsed = now - state.at;
  // A clock that stepped back repays nothing (and never makes a bucket fuller).
  if (elapsed <= 0) return state.debt;
  if (elapsed >= window) return 0;
  return Math.max(0, state.debt - elapsed * limit);
}

/** Live credits at `now`: the stored count (or the policy's, when set anew) plus any refill due. */
export function currentCredits(policy: Credits, state: CreditState | undefined, now: number): CreditState {
  let remaining = policy.remaining;
  let refilledAt = policy.setAt;
  if (state !== undefined && state.generation === policy.generation) {
    remaining = state.remaining;
    refilledAt = state.refilledAt;
  }
  if (policy.refill !== null && now - refilledAt >= policy.refill.interval) {
    const periods = Math.floor((now - refilledAt) / policy.refill.interval);
    if (remaining < policy.refill.amount) remaining = policy.refill.amount;
    refilledAt += periods * policy.refill.interval;
  }
  return { remaining, refilledAt, generation: policy.generation };
}

/**
 * The one evaluation of a request against its limits and credits, all or nothing: when a limit or
 * the credits refuse, nothing is charged. The memory store runs this; the Redis script mirrors it
 * step for step (see redis/charge-scripts.ts), and the conformance suite holds both to the same answers.
 */
export function evaluate(
  now: number,
  charges: readonly LimitCharge[],
  buckets: ReadonlyArray<BucketState | undefined>,
  credits: { policy: Credits; state: CreditState | undefined; cost: number } | null,
): Evaluation {
  const debts: number[] = [];
  const next: Array<{ state: BucketState; ttl: number }> = [];
  let refused = false;
  let impossible = false;
  let retry = 0;
  for (let i = 0; i < charges.length; i++) {
    const { limit, window, cost } = charges[i]!;
    const debt = decayedDebt(buckets[i], now, limit, window);
    const capacity = window * limit;
    const charged = debt + cost * window;
    if (cost > limit || charged > capacity) {
      refused = true;
      if (cost > limit) impossible = true;
      else retry = Math.max(retry, Math.ceil((charged - capacity) / limit));
    }
    debts.push(debt);
    next.push({ state: { at: now, debt: charged }, ttl: Math.max(1, Math.ceil(charged / limit)) });
  }
  // Every limit is reported as it stands after this request: charged only if all of them admitted it.
  const report = (charged: boolean): LimitState[] =>
    charges.map(({ name, limit, window }, i) => {
      const after = charged ? next[i]!.state.debt : debts[i]!;
      return { name, limit, window, remaining: Math.floor((window * limit - after) / window), reset: Math.ceil(after / limit) };
    });
  let creditState: CreditState | null = null;
  let left: number | null = null;
  if (credits !== null) {
    const live = currentCredits(credits.policy, credits.state, now);
    left = live.remaining;
    if (credits.cost > 0 && live.remaining < credits.cost) {
      // Credits come back only with a refill.
      const retryAfter = credits.policy.refill === null ? null : live.refilledAt + credits.policy.refill.interval - now;
      return { outcome: 'USAGE_EXCEEDED', limits: report(false), buckets: [], credits: left, creditState: null, retryAfter };
    }
    creditState = { ...live, remaining: live.remaining - credits.cost };
  }
  if (refused) return { outcome: 'RATE_LIMITED', limits: report(false), buckets: [], credits: left, creditState: null, retryAfter: impossible ? null : retry };
  return { outcome: 'OK', limits: report(true), buckets: next, credits: creditState === null ? null : creditState.remaining, creditState, retryAfter: 0 };
}

/** The fewer of two credit counts (null: none). */
export function leastOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}
