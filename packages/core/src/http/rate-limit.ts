// What the `rateLimit()` route guard runs per request: whose requests count together, the charge, and its refusal.
import { createHash } from 'node:crypto';
import { tillError, tillMessage } from '../errors.js';
import { clientKey, DEFAULT_IPV6_SUBNET, isValidSubnet } from '../limits/client-ip.js';
import { UNAVAILABLE } from '../limits/limiter.js';
import { normalizeRateLimit, type LimitCharge } from '../limits/rules.js';
import type { Till } from '../till.js';
import { failure, type MaybePromise, type VerifiedKey, type VerifyFailure } from '../verify/outcome.js';
import { checkCost, checkHeaderStyle, checkOptionNames, checkTill } from './options.js';
import { problemResponse, rateLimitHeaders, type ProblemOptions, type ProblemResponse, type RateLimitHeaderStyle } from './problem.js';
import type { RequestHeaders } from './raw-headers.js';
import { recordRefusal } from './refusal.js';
import { addCharge, claimLimitName, contextOf, contextToCharge, refundCharges, type RequestContext } from './request-context.js';

/** Options of the `rateLimit()` route guard; `Req` is the framework's request. */
export interface RateLimitOptions<Req = never> {
  /** Names the limit in headers and in the store. Unique per Till. */
  name: string;
  /** Requests (of cost 1) admitted per window, with bursts of up to this many. */
  limit: number;
  /** The window: a duration like `1s`, `1m`, `1d`, or milliseconds. */
  window: string | number;
  /**
   * Whose requests count together: `key` (default: the API key that `apiKeyAuth()` verified; a
   * request without one is refused with 401), `ip` (the client IP, as the framework sees it with its
   * trust-proxy setting) or a function of the request returning a string (undefined: not limited).
   */
  by?: 'key' | 'ip' | ((req: Req) => string | undefined);
  /** Units of the limit one request uses: a number or a function of the request. Default 1. */
  cost?: number | ((req: Req) => number);
  /**
   * The Till whose store keeps the counts. Default: the Till of the `apiKeyAuth()` that saw the
   * request; a request that no `apiKeyAuth()` saw then fails with an error (never counts elsewhere).
   */
  till?: Till;
  /** Which rate-limit headers to send. Default `draft-11`. */
  headers?: RateLimitHeaderStyle;
  /** With `by: 'ip'`: IPv6 addresses count as one client per prefix of this length. Default 56. */
  ipv6Subnet?: number;
}

export type RateLimitVerdict =
  | { readonly ok: true; readonly headers: Record<string, string> }
  | { readonly ok: false; readonly failure: VerifyFailure; readonly response: ProblemResponse };

export interface RateLimitGuard<Req = never> {
  readonly name: string;
  /**
   * Charges one request. `node` is the Node request (a guard that meets it twice, mounted twice on
   * one path, charges it once); the key is the one `apiKeyAuth()` verified for it, if any (`apiKey`, what
   * the request holds as `req.apiKey`, trusted only as the object Till verified; see contextOf). A refusal
   * resolves once the request's earlier charges are given back. Null: the request is not limited
   * (counted already, or a `by` function said so).
   */
  check(node: RequestHeaders, apiKey: unknown, context: Req, ipOf: (context: Req) => string | undefined): MaybePromise<RateLimitVerdict | null>;
}

const RATE_LIMIT_OPTION_NAMES = ['name', 'limit', 'window', 'by', 'cost', 'till', 'headers', 'ipv6Subnet'];

/** Subjects go into Redis key names inside a hash tag: no braces, and bounded in length. */
function subjectOf(kind: string, value: string): string {
  if (value.length <= 200 && !/[{}\s]/.test(value)) return `${kind}:${value}`;
  return `${kind}#${createHash('sha256').update(value).digest('base64url')}`;
}

/** A refusal, once what the request was charged before it is given back. */
function refuse(state: RequestContext | undefined, verdict: RateLimitVerdict): MaybePromise<RateLimitVerdict> {
  const refunded = refundCharges(state);
  return refunded === null ? verdict : refunded.then(() => verdict);
}

/** Builds what `rateLimit()` runs per request, checking every option at creation. */
export function createRateLimitGuard<Req>(options: RateLimitOptions<Req>, where: string, extraOptions: readonly string[] = []): RateLimitGuard<Req> {
  if (options === undefined) throw tillError('INVALID_OPTIONS', where, `rateLimit needs { name, limit, window }`);
  const opts = checkOptionNames(options, [...RATE_LIMIT_OPTION_NAMES, ...extraOptions], where) as unknown as RateLimitOptions<Req>;
  const policy = normalizeRateLimit({ name: opts.name, limit: opts.limit, window: opts.window }, where);
  const by = opts.by ?? 'key';
  if (by !== 'key' && by !== 'ip' && typeof by !== 'function') throw tillError('INVALID_OPTIONS', where, `by must be "key", "ip" or a function of the request`);
  const cost = checkCost<Req>(opts.cost, where);
  if (typeof cost === 'number' && cost > policy.limit) {
    throw tillError('INVALID_OPTIONS', where, `cost ${cost} is above the limit ${policy.limit}: no request could ever pass`);
  }
  const style = checkHeaderStyle(opts.headers, where);
  checkTill(opts.till, where);
  const subnet = opts.ipv6Subnet ?? DEFAULT_IPV6_SUBNET;
  if (!isValidSubnet(subnet)) throw tillError('INVALID_OPTIONS', where, `ipv6Subnet must be an integer from 1 to 128`);
  const bucket = `r.${policy.name}`;
  // The name is claimed on each Till the guard counts in: at creation when it is given one, else on first use.
  const claimedOn = new WeakSet<Till>();
  const tillFor = (state: RequestContext | undefined): Till => {
    const till = opts.till ?? state?.till;
    if (till === undefined) {
      throw tillError(
        'INVALID_OPTIONS',
        where,
        `rate limit "${policy.name}" has no Till to count in: no apiKeyAuth() saw this request. Mount it after apiKeyAuth(), or give it { till } (the one your apiKeyAuth() uses, or defaultTill())`,
      );
    }
    if (!claimedOn.has(till)) {
      claimLimitName(till, bucket, where, `the rate limit name "${policy.name}"`);
      claimedOn.add(till);
    }
    return till;
  };
  if (opts.till !== undefined) tillFor(undefined);
  const fixed: LimitCharge & { bucket: string } = Object.freeze({ ...policy, cost: typeof cost === 'number' ? cost : 1, bucket });
  const problemOptions: ProblemOptions = { rateLimitHeaders: style };
  // Requests this guard has counted: mounted twice on one path, it meets a request twice.
  const seen = new WeakSet<object>();
  let warned = false;
  const missing = problemResponse(failure('MISSING'), problemOptions);
  const unavailable: VerifyFailure = Object.freeze({ valid: false, code: 'STORE_UNAVAILABLE', retryAfter: 2 });

  return {
    name: policy.name,
    check(node, apiKey, context, ipOf) {
      let state = contextOf(node, apiKey);
      const key = state?.key;
      if (by === 'key' && key === undefined) return refuse(state, { ok: false, failure: failure('MISSING'), response: missing });
      const till = tillFor(state);
      if (seen.has(node)) {
        if (!warned) {
          warned = true;
          till.events.emit({ type: 'guard.repeated', name: policy.name });
          till.logger.warn(
            tillMessage(where, `rate limit "${policy.name}" ran twice for one request (mounted twice on one path?); it counts each request once`),
          );
        }
        return null;
      }
      seen.add(node);
      let subject: string;
      if (by === 'ip') {
        // The client, not the address: an IPv6 host rotates within its prefix.
        subject = `ip:${clientKey(ipOf(context), subnet)}`;
      } else if (typeof by === 'function') {
        const value = by(context);
        if (value === undefined) return null;
        if (typeof value !== 'string' || value.length === 0)
          throw tillError('INVALID_ARGUMENT', where, `the by function of rate limit "${policy.name}" must return a non-empty string or undefined`);
        subject = subjectOf('u', value);
      } else {
        // By key: a request without one was refused above.
        subject = (key as VerifiedKey).id;
      }
      const charge = typeof cost === 'number' ? fixed : { ...fixed, cost: cost(context) };
      const request = { subject, limits: [charge] };
      return till.limiter.consume(request, false).then((result): MaybePromise<RateLimitVerdict> => {
        if (result === UNAVAILABLE) return refuse(state, { ok: false, failure: unavailable, response: problemResponse(unavailable, problemOptions) });
        if (!('limits' in result)) throw new Error('unreachable: a charge without a key version has no record outcome');
        const usage = { limits: result.limits, credits: null };
        if (result.outcome === 'OK') {
          // Given back if a later guard refuses the request.
          state = contextToCharge(node, state, till);
          addCharge(state, () => till.limiter.refund(request, result));
          return { ok: true, headers: rateLimitHeaders(result.limits, style) };
        }
        const refused: VerifyFailure =
          result.retryAfter === null
            ? { valid: false, code: 'RATE_LIMITED', usage, ...(key !== undefined && { keyId: key.id }) }
            : {
                valid: false,
                code: 'RATE_LIMITED',
                usage,
                retryAfter: Math.max(1, Math.ceil(result.retryAfter / 1000)),
                ...(key !== undefined && { keyId: key.id }),
              };
        recordRefusal(till, refused, () => ipOf(context), node.headers['user-agent'], key === undefined ? null : key.ownerId, `rate limit ${policy.name}`);
        return refuse(state, { ok: false, failure: refused, response: problemResponse(refused, problemOptions) });
      });
    },
  };
}
