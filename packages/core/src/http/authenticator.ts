// What `apiKeyAuth()` runs per request: key extraction, client blocking, verification, and what a refusal leaves behind.
import { tillError } from '../errors.js';
import { BruteForceGuard, type BruteForceOptions } from '../limits/brute-force.js';
import { normalizeRateLimits, type RateLimitInput } from '../limits/rules.js';
import { defaultTill, type Till } from '../till.js';
import { failure, type MaybePromise, type VerifiedKey, type VerifyFailure, type VerifyResult } from '../verify/outcome.js';
import { normalizeRequired } from '../verify/scopes.js';
import type { VerifyOptions } from '../verify/verifier.js';
import { createExtractor, NO_KEY, type KeySource } from './extract.js';
import { checkCost, checkHeaderStyle, checkOptionNames, checkTill } from './options.js';
import { problemResponse, rateLimitHeaders, type ProblemOptions, type ProblemResponse, type RateLimitHeaderStyle } from './problem.js';
import { keyHeaderReader, type RequestHeaders } from './raw-headers.js';
import { auditRefusal, isAudited, observeOutcome } from './refusal.js';
import { addCharge, claimLimitName, hasContext, markVerified, openContext, sharedAnswer, type Answer } from './request-context.js';

/** Options of `apiKeyAuth()`; `Req` is the framework's request (Express `req`, Koa `ctx`). */
export interface AuthOptions<Req = never> {
  /** The Till instance to verify with. Default: `defaultTill()` (Redis at REDIS_URL, else memory). */
  till?: Till;
  /**
   * Lets a request that carries no key through without `apiKey` (a key that is sent and fails is still
   * refused with its 401, 403 or 429). Route guards (`requireScopes`, `rateLimit` by key) refuse such a
   * request with 401. Default false.
   */
  optional?: boolean;
  /** Headers a key may come in. Default: `Authorization: Bearer <key>`, then `X-API-Key`. */
  sources?: readonly KeySource[];
  /** Longest header value read; longer ones are rejected unread. Default 512. */
  maxHeaderLength?: number;
  /** Scopes every request through this middleware needs (all of them). Default none. */
  scopes?: readonly string[];
  /** `realm` of the `WWW-Authenticate` challenge. Default none. */
  realm?: string;
  /**
   * Rate limits every key is held to, each counted per key, beside the key's own limits and in the
   * same store round trip (all or nothing with them and the credits).
   */
  limits?: readonly RateLimitInput[];
  /** Credits a request spends when its key has credits: a number or a function of the request. Default 1. */
  cost?: number | ((req: Req) => number);
  /** Failed authentications per client IP before the IP is refused for a while; `false` turns it off. */
  bruteForce?: BruteForceOptions | false;
  /** Rate-limit headers on responses of limited keys. Default `draft-11`. */
  rateLimitHeaders?: RateLimitHeaderStyle;
}

export interface Authenticator<Req = never> {
  readonly till: Till;
  /**
   * Verifies the key in a Node request's headers; synchronous when the key is cached and not
   * limited. `context` is the framework's request (what a `cost` function receives) and `ipOf`
   * reads its client address (only when needed: a blocked client, a failure). Resolves to null when
   * the request carries no key and authentication is optional: it goes on without a key.
   */
  authenticate(req: RequestHeaders, context: Req, ipOf: (context: Req) => string | undefined): MaybePromise<VerifyResult | null>;
  /** The default HTTP response for a failure. */
  problem(result: VerifyFailure): ProblemResponse;
  /** Rate-limit headers for a verified request that was charged; null when there are none. */
  headers(result: VerifyResult): Record<string, string> | null;
}

const AUTH_OPTION_NAMES = ['till', 'optional', 'sources', 'maxHeaderLength', 'scopes', 'realm', 'limits', 'cost', 'bruteForce', 'rateLimitHeaders'];

const COUNTED = new Set(['NOT_FOUND', 'MALFORMED']);
const MISSING = failure('MISSING');
const MALFORMED = failure('MALFORMED');

/**
 * Builds what `apiKeyAuth()` runs per request, checking every option once, at creation.
 * `extraOptions` names the adapter's own options (like `onFailure`, checked by the adapter), and
 * `onFailure` is the handler that this middleware and the route guards after it answer refusals with.
 */
export function createAuthenticator<Req>(
  options: AuthOptions<Req> | undefined,
  where: string,
  extraOptions: readonly string[] = [],
  onFailure?: unknown,
): Authenticator<Req> {
  const opts = checkOptionNames(options, [...AUTH_OPTION_NAMES, ...extraOptions], where) as AuthOptions<Req>;
  checkTill(opts.till, where);
  // The realm goes into a header value: printable ASCII only, or every 401 would become a 500.
  if (opts.realm !== undefined && (typeof opts.realm !== 'string' || !/^[\x20-\x7e]*$/.test(opts.realm))) {
    throw tillError('INVALID_OPTIONS', where, `realm must be a string of printable ASCII characters`);
  }
  const { scan, origin } = createExtractor(opts.sources, opts.maxHeaderLength);
  const readHeaders = keyHeaderReader(opts.sources);
  let verifyOptions: VerifyOptions | undefined;
  if (opts.scopes !== undefined) {
    if (!Array.isArray(opts.scopes)) throw tillError('INVALID_OPTIONS', where, `scopes must be an array of strings`);
    verifyOptions = { scopes: normalizeRequired(opts.scopes, where), scopeMode: 'all' };
  }
  const limits = opts.limits === undefined ? [] : normalizeRateLimits(opts.limits, where);
  const cost = checkCost<Req>(opts.cost, where);
  const style = checkHeaderStyle(opts.rateLimitHeaders, where);
  if (opts.bruteForce !== undefined && opts.bruteForce !== false && (opts.bruteForce === null || typeof opts.bruteForce !== 'object')) {
    throw tillError('INVALID_OPTIONS', where, `bruteForce must be an object of options or false`);
  }
  if (opts.optional !== undefined && typeof opts.optional !== 'boolean') {
    throw tillError('INVALID_OPTIONS', where, `optional must be true or false`);
  }
  const optional = opts.optional === true;
  const till = opts.till ?? defaultTill();
  const brute =
    opts.bruteForce === false
      ? null
      : new BruteForceGuard(opts.bruteForce, till.limiter, till.verifier.clock, till.events, where, till.store.kind !== 'memory');
  if (limits.length > 0) {
    const charges = limits.map((l) => Object.freeze({ ...l, cost: 1, bucket: `a.${l.name}` }));
    for (const c of charges) claimLimitName(till, c.bucket, where, `the rate limit name "${c.name}"`);
    verifyOptions = { ...verifyOptions, limits: charges };
  }
  if (typeof cost === 'number' && cost !== 1) verifyOptions = { ...verifyOptions, cost };
  const costOf = typeof cost === 'function' ? cost : null;
  const problemOptions: ProblemOptions = { rateLimitHeaders: style, ...(opts.realm !== undefined && { realm: opts.realm }) };
  const answer: Answer = Object.freeze({ onFailure, problem: problemOptions, logger: till.logger });
  /** What a refusal leaves behind: a count toward blocking its client, and an audit entry. */
  const refused = (result: VerifyFailure, key: string | null, req: RequestHeaders, context: Req, ipOf: (context: Req) => string | undefined): VerifyFailure => {
    let address: string | undefined;
    if (brute !== null && COUNTED.has(result.code)) {
      address = ipOf(context);
      if (address !== undefined) brute.failed(address);
    }
    if (till.auditWriter !== null && isAudited(result.code)) {
      auditRefusal(till, result, key, address ?? ipOf(context), req.headers['user-agent']);
    }
    return result;
  };
  const shared = sharedAnswer(till, answer);
  let lastMarked: VerifiedKey | null = null;
  /**
   * A verified request: guards find its key and this middleware's answer through the key itself
   * (markVerified), unless the request was charged (its context keeps the charge, to be given back if a
   * guard refuses it), already has a context (an earlier middleware's, whose charges it keeps), or
   * another middleware on this Till answers differently.
   */
  const verified = (result: VerifyResult, req: RequestHeaders): VerifyResult => {
    if (!result.valid) return result;
    if (result.usage === undefined && !shared.mixed && !hasContext(req)) {
      // The key of the last such request is marked already (a key object, never its secret).
      if (result.key !== lastMarked) {
        markVerified(result.key, shared);
        lastMarked = result.key;
      }
      return result;
    }
    const state = openContext(req, till, answer, result.key);
    if (result.usage !== undefined) addCharge(state, () => till.verifier.refund(result));
    return result;
  };
  return {
    till,
    authenticate(req, context, ipOf) {
      if (brute?.active) {
        const address = ipOf(context);
        const wait = address === undefined ? 0 : brute.blockedFor(address);
        // A blocked client is refused whatever it sends; with optional authentication, a request
        // without a key is no attempt at one and goes on.
        if (wait > 0 && !(optional && scan(readHeaders(req)) === NO_KEY)) {
          const blocked: VerifyFailure = Object.freeze({ valid: false, code: 'BLOCKED', retryAfter: wait });
          if (till.auditWriter !== null) auditRefusal(till, blocked, null, address, req.headers['user-agent']);
          if (till.events.observed) observeOutcome(till, blocked, null, address, req.headers['user-agent']);
          return blocked;
        }
      }
      const key = scan(readHeaders(req));
      if (typeof key !== 'string') {
        const early = key === NO_KEY ? MISSING : refused(MALFORMED, null, req, context, ipOf);
        if (till.events.observed) observeOutcome(till, early, null, ipOf(context), req.headers['user-agent']);
        if (early !== MISSING || !optional) return early;
        // Let through without a key: the guards after it refuse it, answered as this middleware answers.
        openContext(req, till, answer);
        return null;
      }
      const options = costOf === null ? verifyOptions : { ...verifyOptions, cost: costOf(context) };
      // The client address is read only for a key with an IP allowlist (see Verifier.verify); the key is
      // compared where it lies in its header value (see KeyExtractor.origin).
      const result = till.verifier.verifyIn(key, origin.text, origin.at, options, ipOf, context);
      if (result instanceof Promise) {
        return result.then((r) => {
          if (till.events.observed) observeOutcome(till, r, key, ipOf(context), req.headers['user-agent']);
          return r.valid ? verified(r, req) : refused(r, key, req, context, ipOf);
        });
      }
      if (till.events.observed) observeOutcome(till, result, key, ipOf(context), req.headers['user-agent']);
      return result.valid ? verified(result, req) : refused(result, key, req, context, ipOf);
    },
    problem: (result) => problemResponse(result, problemOptions),
    headers: (result) => (result.valid && result.usage !== undefined && style !== false ? rateLimitHeaders(result.usage.limits, style) : null),
  };
}
