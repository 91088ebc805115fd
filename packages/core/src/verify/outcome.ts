import type { LimitState, RateLimit } from '../limits/rules.js';

// The closed union of verification outcomes shared by every package, and the result shapes.

export const OUTCOME_CODES = [
  'VALID',
  'MISSING',
  'MALFORMED',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'NOT_YET_VALID',
  'INSUFFICIENT_SCOPE',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
  'BLOCKED',
  'STORE_UNAVAILABLE',
  'IP_NOT_ALLOWED',
] as const;

export type OutcomeCode = (typeof OUTCOME_CODES)[number];
export type FailureCode = Exclude<OutcomeCode, 'VALID'>;

/** What a request learns about the key that authenticated it. Never holds the secret or its hash. */
export interface VerifiedKey {
  /** Public id of the key: safe to log and show. */
  readonly id: string;
  readonly prefix: string;
  readonly name: string;
  readonly ownerId: string | null;
  readonly scopes: readonly string[];
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  /** The key's own rate limits. */
  readonly limits: readonly RateLimit[];
  /** Whether the key spends credits (the live count is on the verification result), and their refill. */
  readonly credits: { readonly refill: { readonly amount: number; readonly interval: number } | null } | null;
  /** The identity the key belongs to (whose limits and credits it shares), or null. */
  readonly identityId: string | null;
}

/** What a request's limits and credits looked like after it was charged. */
export interface Usage {
  /** Every limit checked, in order: the key's own, then the middleware's. */
  readonly limits: readonly LimitState[];
  /** Credits left, or null when the key has none. */
  readonly credits: number | null;
}

export interface VerifySuccess {
  readonly valid: true;
  readonly code: 'VALID';
  readonly key: VerifiedKey;
  /** True when the store was unreachable and the key was accepted from the stale window of the cache. */
  readonly stale: boolean;
  /** Present when the request was charged against rate limits or credits. */
  readonly usage?: Usage;
}

/**
 * The fields a failure may carry, each one on the codes it belongs to; the other codes declare it
 * absent (`?: undefined`), so that code reading it from any failure still compiles, and narrowing on
 * `code` tells which are there.
 */
interface FailureFields {
  readonly valid: false;
  /** Public id of the presented key when it parsed; never set for NOT_FOUND so unknown and wrong secret look alike. */
  readonly keyId?: string | undefined;
  /** For INSUFFICIENT_SCOPE: the scopes the route asked for. */
  readonly requiredScopes?: undefined;
  /** For INSUFFICIENT_SCOPE: whether one of them was enough. */
  readonly scopeMode?: undefined;
  /** Seconds until retrying may succeed (429 and 503 outcomes). */
  readonly retryAfter?: undefined;
  /** For RATE_LIMITED and USAGE_EXCEEDED: the limits and credits as they stand. */
  readonly usage?: undefined;
}

/** No key, no key of this shape, or no such key (an unknown id and a wrong secret alike): nothing to tell. */
export interface KeylessFailure extends FailureFields {
  readonly code: 'MISSING' | 'MALFORMED' | 'NOT_FOUND';
  readonly keyId?: undefined;
}

/** The key is real but not usable now: its own state says why. */
export interface KeyStateFailure extends FailureFields {
  readonly code: 'REVOKED' | 'DISABLED' | 'EXPIRED' | 'NOT_YET_VALID';
  readonly keyId: string;
}

/** The key lacks scopes the route asked for. */
export interface ScopeFailure extends Omit<FailureFields, 'requiredScopes' | 'scopeMode'> {
  readonly code: 'INSUFFICIENT_SCOPE';
  /** The scopes the route asked for. */
  readonly requiredScopes: readonly string[];
  /** Whether one of them was enough. */
  readonly scopeMode: 'all' | 'any';
}

/** A rate limit or the credits refused the request; nothing was charged. */
export interface LimitFailure extends Omit<FailureFields, 'retryAfter' | 'usage'> {
  readonly code: 'RATE_LIMITED' | 'USAGE_EXCEEDED';
  /** The limits and credits as they stand. */
  readonly usage: Usage;
  /** Seconds until retrying may succeed; absent when waiting will not help (no refill, or a cost above the limit). */
  readonly retryAfter?: number;
}

/** The client failed too often and is refused for a while, before any key lookup. */
export interface BlockedFailure extends Omit<FailureFields, 'retryAfter'> {
  readonly code: 'BLOCKED';
  readonly keyId?: undefined;
  /** Seconds until the block ends. */
  readonly retryAfter: number;
}

/** The store could not answer and the key was not in the cache's stale window. */
export interface UnavailableFailure extends Omit<FailureFields, 'retryAfter'> {
  readonly code: 'STORE_UNAVAILABLE';
  readonly keyId?: undefined;
  /** Seconds a client is told to wait. */
  readonly retryAfter: number;
}

/**
 * The key is real and usable, but the request came from a client address none of the key's allowed
 * ranges holds (or from no address an IP can be read from). Which ranges are allowed is never told.
 */
export interface AddressFailure extends FailureFields {
  readonly code: 'IP_NOT_ALLOWED';
  readonly keyId: string;
}

/** A refused verification: one member per failure code, each with exactly the details that belong to it. */
export type VerifyFailure = KeylessFailure | KeyStateFailure | ScopeFailure | LimitFailure | BlockedFailure | UnavailableFailure | AddressFailure;

/** The failure of one code (or of each code of a union of them). */
export type FailureOf<C extends FailureCode> = VerifyFailure extends infer F
  ? F extends { readonly code: infer K }
    ? [Extract<C, K>] extends [never]
      ? never
      : F & { readonly code: Extract<C, K> }
    : never
  : never;

/** What a failure of one code carries beside `valid` and `code`. */
export type FailureDetails<C extends FailureCode> = Omit<FailureOf<C>, 'valid' | 'code'>;

export type VerifyResult = VerifySuccess | VerifyFailure;

/** A value, or a promise of it: the cached path of the verifier answers synchronously. */
export type MaybePromise<T> = T | Promise<T>;

/** The codes whose failures carry no details. */
export type KeylessCode = KeylessFailure['code'];

const failureCache = new Map<FailureCode, VerifyFailure>();

/**
 * A frozen failure. Without details (MISSING, MALFORMED, NOT_FOUND) an instance shared per code, which
 * keeps the hot path allocation-free; the other codes must be given the details that belong to them.
 */
export function failure<C extends KeylessCode>(code: C): FailureOf<C>;
export function failure<C extends FailureCode>(code: C, details: FailureDetails<C>): FailureOf<C>;
export function failure(code: FailureCode, details?: object): VerifyFailure {
  if (details !== undefined) return Object.freeze({ valid: false, code, ...details }) as VerifyFailure;
  let f = failureCache.get(code);
  if (!f) {
    f = Object.freeze({ valid: false, code }) as VerifyFailure;
    failureCache.set(code, f);
  }
  return f;
}

/**
 * What a wrong secret for a real key id returns: equal to `failure('NOT_FOUND')` in every field, so
 * nothing a client or an application sees tells it from an unknown id, but a distinct object, so that
 * Till itself can record it as probing of that id (never as a failure of the key: ids are public, and
 * anyone can send a made-up secret with one).
 */
export const WRONG_SECRET: KeylessFailure = Object.freeze({ valid: false, code: 'NOT_FOUND' });

/** Whether a result is a wrong secret presented for a real key id (see WRONG_SECRET). */
export function isWrongSecret(result: VerifyResult): boolean {
  return result === WRONG_SECRET;
}
