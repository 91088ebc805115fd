// What `requireScopes()` and `requireAnyScope()` run per request: the verified key's scopes against the route's.
import { failure, type VerifiedKey, type VerifyFailure } from '../verify/outcome.js';
import { ScopeSet, normalizeRequired } from '../verify/scopes.js';
import type { RequestHeaders } from './raw-headers.js';
import { recordRefusal } from './refusal.js';
import { contextOf, refundCharges, type Answer } from './request-context.js';

/** What a route guard's refusal carries to the adapter: the failure, and how the app wants it answered. */
export interface GuardRefusal {
  readonly failure: VerifyFailure;
  /** How the `apiKeyAuth()` that saw the request answers (its onFailure, realm), or null: the default. */
  readonly answer: Answer | null;
  /** Resolves once the request's earlier charges are given back; null when there were none. */
  readonly settled: Promise<void> | null;
}

/**
 * A compiled scope requirement for a route, run against the key that `apiKeyAuth()` verified for the
 * request (`apiKey`: what the request holds as `req.apiKey`, trusted only as the very object Till
 * verified; see contextOf). A refusal is recorded in the trail of the
 * Till that verified the key, and gives back what the request was charged: a request refused for
 * scope spends no credit and no limit unit.
 */
export function createScopeCheck(
  scopes: readonly unknown[],
  mode: 'all' | 'any',
  where: string,
): (node: RequestHeaders, apiKey: unknown, ip: () => string | undefined) => GuardRefusal | null {
  const required = Object.freeze(normalizeRequired(scopes, where));
  const missing = failure('MISSING');
  const insufficient: VerifyFailure = Object.freeze({ valid: false, code: 'INSUFFICIENT_SCOPE', requiredScopes: required, scopeMode: mode });
  const compiled = new WeakMap<VerifiedKey, boolean>();
  return (node, apiKey, ip) => {
    const state = contextOf(node, apiKey);
    // Without a verified key the route is misconfigured or the key is absent: refuse, never pass.
    if (state?.key === undefined) return { failure: missing, answer: state?.answer ?? null, settled: refundCharges(state) };
    const key = state.key;
    let ok = compiled.get(key);
    if (ok === undefined) {
      const set = new ScopeSet(key.scopes);
      ok = mode === 'all' ? set.hasAll(required) : set.hasAny(required);
      compiled.set(key, ok);
    }
    if (ok) return null;
    recordRefusal(state.till, { ...insufficient, keyId: key.id }, ip, node.headers['user-agent'], key.ownerId);
    return { failure: insufficient, answer: state.answer, settled: refundCharges(state) };
  };
}
