// What the framework adapters share: option checks, header-to-outcome, and scope checks on a verified key.
import { TillError } from './errors.js';
import { createExtractor, type KeySource } from './extract.js';
import { keyHeaderReader, type RequestHeaders } from './raw-headers.js';
import { problemResponse, type ProblemOptions, type ProblemResponse } from './http.js';
import { failure, type MaybePromise, type VerifiedKey, type VerifyFailure, type VerifyResult } from './outcome.js';
import { ScopeSet, normalizeRequired } from './scopes.js';
import { defaultTill, isTill, type Till } from './till.js';
import type { VerifyOptions } from './verifier.js';

export interface AuthOptions {
  /** The Till instance to verify with. Default: `defaultTill()` (Redis at REDIS_URL, else memory). */
  till?: Till;
  /** Headers a key may come in. Default: `Authorization: Bearer <key>`, then `X-API-Key`. */
  sources?: readonly KeySource[];
  /** Longest header value read; longer ones are rejected unread. Default 512. */
  maxHeaderLength?: number;
  /** Scopes every request through this middleware needs (all of them). Default none. */
  scopes?: readonly string[];
  /** `realm` of the `WWW-Authenticate` challenge. Default none. */
  realm?: string;
}

export interface Authenticator {
  readonly till: Till;
  /** Verifies the key in a Node request's headers; synchronous when the key is cached. */
  authenticate(req: RequestHeaders): MaybePromise<VerifyResult>;
  /** The default HTTP response for a failure. */
  problem(result: VerifyFailure): ProblemResponse;
}

const AUTH_OPTION_NAMES = ['till', 'sources', 'maxHeaderLength', 'scopes', 'realm'];

/** Rejects anything that is not a plain object of known options: a typo must not silently weaken auth. */
export function checkOptionNames(options: unknown, allowed: readonly string[], where: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TillError('INVALID_OPTIONS', `[till] [${where}] options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new TillError('INVALID_OPTIONS', `[till] [${where}] unknown option "${name}"; known options: ${allowed.join(', ')}`);
    }
  }
  return options as Record<string, unknown>;
}

/**
 * Builds what `apiKeyAuth()` runs per request, checking every option once, at creation.
 * `extraOptions` names the adapter's own options (like `onFailure`), checked by the adapter.
 */
export function createAuthenticator(options: AuthOptions | undefined, where: string, extraOptions: readonly string[] = []): Authenticator {
  const opts = checkOptionNames(options, [...AUTH_OPTION_NAMES, ...extraOptions], where) as AuthOptions;
  if (opts.till !== undefined && !isTill(opts.till)) {
    throw new TillError('INVALID_OPTIONS', `[till] [${where}] till must be an instance from createTill()`);
  }
  // The realm goes into a header value: printable ASCII only, or every 401 would become a 500.
  if (opts.realm !== undefined && (typeof opts.realm !== 'string' || !/^[\x20-\x7e]*$/.test(opts.realm))) {
    throw new TillError('INVALID_OPTIONS', `[till] [${where}] realm must be a string of printable ASCII characters`);
  }
  const extract = createExtractor(opts.sources, opts.maxHeaderLength);
  const readHeaders = keyHeaderReader(opts.sources);
  let verifyOptions: VerifyOptions | undefined;
  if (opts.scopes !== undefined) {
    if (!Array.isArray(opts.scopes)) throw new TillError('INVALID_OPTIONS', `[till] [${where}] scopes must be an array of strings`);
    verifyOptions = { scopes: normalizeRequired(opts.scopes, where), scopeMode: 'all' };
  }
  const till = opts.till ?? defaultTill();
  const problemOptions: ProblemOptions = opts.realm === undefined ? {} : { realm: opts.realm };
  return {
    till,
    authenticate(req) {
      const found = extract(readHeaders(req));
      if (!found.found) return failure(found.code);
      return till.verifier.verify(found.key, verifyOptions);
    },
    problem: (result) => problemResponse(result, problemOptions),
  };
}

/** A compiled scope requirement for a route, run against the key that `apiKeyAuth()` attached. */
export function createScopeCheck(scopes: readonly unknown[], mode: 'all' | 'any', where: string): (key: VerifiedKey | undefined) => VerifyFailure | null {
  const required = Object.freeze(normalizeRequired(scopes, where));
  const missing = failure('MISSING');
  const insufficient: VerifyFailure = Object.freeze({ valid: false, code: 'INSUFFICIENT_SCOPE', requiredScopes: required, scopeMode: mode });
  const compiled = new WeakMap<VerifiedKey, boolean>();
  return (key) => {
    // Without a verified key the route is misconfigured or the key is absent: refuse, never pass.
    if (key === undefined) return missing;
    let ok = compiled.get(key);
    if (ok === undefined) {
      const set = new ScopeSet(key.scopes);
      ok = mode === 'all' ? set.hasAll(required) : set.hasAny(required);
      compiled.set(key, ok);
    }
    return ok ? null : insufficient;
  };
}
