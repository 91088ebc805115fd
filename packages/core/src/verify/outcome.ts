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

export interface VerifyFailure {
  readonly valid: false;
  readonly code: FailureCode;
  /** Public id of the presented key when it parsed; never set for NOT_FOUND so unknown and wrong secret look alike. */
  readonly keyId?: string;
  /** For INSUFFICIENT_SCOPE: the scopes the route asked for. */
  readonly requiredScopes?: readonly string[];
  /** For INSUFFICIENT_SCOPE: whether one of them was enough. */
  readonly scopeMode?: 'all' | 'any';
  /** Seconds until retrying may succeed (429 and 503 outcomes). */
  readonly retryAfter?: number;
  /** For RATE_LIMITED and USAGE_EXCEEDED: the limits and credits as they stand. */
  readonly usage?: Usage;
}

export type VerifyResult = VerifySuccess | VerifyFailure;

/** A value, or a promise of it: the cached path of the verifier answers synchronously. */
export type MaybePromise<T> = T | Promise<T>;

const failureCache = new Map<FailureCode, VerifyFailure>();

/** A frozen failure with no details; shared instances keep the hot path allocation-free. */
export function failure(code: FailureCode): VerifyFailure {
  let f = failureCache.get(code);
  if (!f) {
    f = Object.freeze({ valid: false, code });
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
export const WRONG_SECRET: VerifyFailure = Object.freeze({ valid: false, code: 'NOT_FOUND' });

/** Whether a result is a wrong secret presented for a real key id (see WRONG_SECRET). */
export function isWrongSecret(result: VerifyResult): boolean {
  return result === WRONG_SECRET;
}
