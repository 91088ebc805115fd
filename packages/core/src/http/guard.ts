// What the framework adapters share: option checks, header-to-outcome, and scope checks on a verified key.
// One file because the authenticator, the rate-limit guard and the scope check share their option checks and refusal recording.
import { tillError } from '../errors.js';
import { createExtractor, NO_KEY, type KeySource } from './extract.js';
import { keyHeaderReader, type RequestHeaders } from './raw-headers.js';
import { BruteForceGuard, type BruteForceOptions } from '../limits/brute-force.js';
import { createHash } from 'node:crypto';
import { problemResponse, rateLimitHeaders, RATE_LIMIT_HEADER_STYLES, type ProblemOptions, type ProblemResponse, type RateLimitHeaderStyle } from './problem.js';
import { UNAVAILABLE } from '../limits/limiter.js';
import { isValidCost, normalizeRateLimit, normalizeRateLimits, type LimitCharge, type RateLimitInput } from '../limits/rules.js';
import { failure, isWrongSecret, type MaybePromise, type VerifiedKey, type VerifyFailure, type VerifyResult } from '../verify/outcome.js';
import { clientKey, DEFAULT_IPV6_SUBNET, isValidSubnet } from '../limits/client-ip.js';
import { addCharge, contextOf, openContext, refundCharges, type RequestContext } from './request-context.js';
import type { SecurityType } from '../audit/trail.js';
import { parseKey } from '../key/format.js';
import { ScopeSet, normalizeRequired } from '../verify/scopes.js';
import { defaultTill, isTill, type Till } from '../till.js';
import type { VerifyOptions } from '../verify/verifier.js';

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
   * reads its client address (only when needed: a blocked client, a failure). `respond` is the
   * adapter's refusal responder that later guards of this request use (null: the default response).
   * Resolves to null when the request carries no key and authentication is optional: it goes on
   * without a key.
   */
  authenticate(req: RequestHeaders, context: Req, ipOf: (context: Req) => string | undefined, respond: unknown): MaybePromise<VerifyResult | null>;
  /** The default HTTP response for a failure. */
  problem(result: VerifyFailure): ProblemResponse;
  /** Rate-limit headers for a verified request that was charged; null when there are none. */
  headers(result: VerifyResult): Record<string, string> | null;
}

const AUTH_OPTION_NAMES = ['till', 'optional', 'sources', 'maxHeaderLength', 'scopes', 'realm', 'limits', 'cost', 'bruteForce', 'rateLimitHeaders'];

/** Limit names in use on each Till: two guards with one name would share (and double-count) a bucket. */
const claimed = new WeakMap<Till, Set<string>>();

function claim(till: Till, bucket: string, where: string, what: string): void {
  let names = claimed.get(till);
  if (names === undefined) claimed.set(till, (names = new Set()));
  if (names.has(bucket)) {
    throw tillError('INVALID_OPTIONS', where, `${what} is already used by another middleware on this Till: the two would count in one bucket. Give each a distinct name, or create the middleware once and mount it on several routes`,
    );
  }
  names.add(bucket);
}

function checkHeaderStyle(style: unknown, where: string): RateLimitHeaderStyle {
  if (style === undefined) return 'draft-11';
  if (!RATE_LIMIT_HEADER_STYLES.includes(style as RateLimitHeaderStyle)) {
    throw tillError('INVALID_OPTIONS', where, `rateLimitHeaders must be "draft-11", "draft-6" or false`);
  }
  return style as RateLimitHeaderStyle;
}

function checkCost<Req>(cost: unknown, where: string): ((req: Req) => number) | number {
  if (cost === undefined) return 1;
  if (typeof cost === 'function') {
    return (req: Req) => {
      const n = (cost as (req: Req) => unknown)(req);
      if (!isValidCost(n)) throw tillError('INVALID_ARGUMENT', where, `the cost function returned ${String(n).slice(0, 20)}; it must return a non-negative integer`);
      return n;
    };
  }
  if (!isValidCost(cost)) throw tillError('INVALID_OPTIONS', where, `cost must be a non-negative integer or a function of the request`);
  return cost;
}

const COUNTED = new Set(['NOT_FOUND', 'MALFORMED']);
const MISSING = failure('MISSING');
const MALFORMED = failure('MALFORMED');

/** How each refusal goes into the audit trail. A request without any key is no attempt; an outage is not the client's. */
const AUDITED: Partial<Record<string, SecurityType>> = {
  MALFORMED: 'auth.failed',
  NOT_FOUND: 'auth.failed',
  INSUFFICIENT_SCOPE: 'auth.failed',
  REVOKED: 'key.misused',
  DISABLED: 'key.misused',
  EXPIRED: 'key.misused',
  NOT_YET_VALID: 'key.misused',
  RATE_LIMITED: 'limit.refused',
  USAGE_EXCEEDED: 'limit.refused',
  BLOCKED: 'client.blocked',
};

/**
 * The key id a refusal names: its own, or the id of the well-formed key that did not verify (public,
 * and what an operator searches by).
 */
function keyIdOf(failure: VerifyFailure, key: string | null): string | null {
  if (failure.keyId !== undefined) return failure.keyId;
  if (key === null) return null;
  const parsed = parseKey(key);
  return parsed.ok ? parsed.id : null;
}

/**
 * A client address as events and the trail carry it: a valid IP as canonical text, anything else (what
 * a proxy header may hold: kilobytes, braces, escapes) as a short hash, never the client's text.
 */
function textOfAddress(address: string | undefined): string | undefined {
  return address === undefined ? undefined : clientKey(address, 128);
}

/** Tells verification listeners of an outcome (only called when someone listens). */
function observe(till: Till, result: VerifyResult, key: string | null, address: string | undefined, userAgent: unknown): void {
  const keyId = result.valid ? result.key.id : keyIdOf(result, key);
  const ip = textOfAddress(address);
  const credits = result.usage?.credits;
  till.events.emitVerification({
    code: result.code,
    keyId,
    at: till.verifier.clock(),
    ...(isWrongSecret(result) && { probe: true }),
    ...(ip !== undefined && { ip }),
    ...(typeof userAgent === 'string' && { userAgent: userAgent.slice(0, 200) }),
    ...(credits !== undefined && { credits }),
  });
}

/**
 * Records a refusal in the audit trail (in batches, off the request path), under the key's owner when
 * the key is known: `till events list --owner` then finds what was tried with an owner's keys.
 */
function audit(till: Till, failure: VerifyFailure, key: string | null, address: string | undefined, userAgent: unknown, detail?: string, ownerId?: string | null): void {
  const type = isWrongSecret(failure) ? 'key.probed' : AUDITED[failure.code];
  if (type === undefined || till.auditWriter === null) return;
  const ip = textOfAddress(address);
  const keyId = keyIdOf(failure, key);
  const owner = ownerId !== undefined ? ownerId : keyId === null || failure.code === 'MALFORMED' ? null : till.verifier.ownerOf(keyId);
  till.auditWriter.record({ type, code: failure.code, keyId, ownerId: owner, ip, userAgent, ...(detail !== undefined && { detail }) });
}

/** Rejects anything that is not a plain object of known options: a typo must not silently weaken auth. */
export function checkOptionNames(options: unknown, allowed: readonly string[], where: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw tillError('INVALID_OPTIONS', where, `options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw tillError('INVALID_OPTIONS', where, `unknown option "${name}"; known options: ${allowed.join(', ')}`);
    }
  }
  return options as Record<string, unknown>;
}

/**
 * Builds what `apiKeyAuth()` runs per request, checking every option once, at creation.
 * `extraOptions` names the adapter's own options (like `onFailure`), checked by the adapter.
 */
export function createAuthenticator<Req>(options: AuthOptions<Req> | undefined, where: string, extraOptions: readonly string[] = []): Authenticator<Req> {
  const opts = checkOptionNames(options, [...AUTH_OPTION_NAMES, ...extraOptions], where) as AuthOptions<Req>;
  if (opts.till !== undefined && !isTill(opts.till)) {
    throw tillError('INVALID_OPTIONS', where, `till must be an instance from createTill()`);
  }
  // The realm goes into a header value: printable ASCII only, or every 401 would become a 500.
  if (opts.realm !== undefined && (typeof opts.realm !== 'string' || !/^[\x20-\x7e]*$/.test(opts.realm))) {
    throw tillError('INVALID_OPTIONS', where, `realm must be a string of printable ASCII characters`);
  }
  const scan = createExtractor(opts.sources, opts.maxHeaderLength).scan;
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
  const till = opts.till ?? defaultTill();
  const brute = opts.bruteForce === false ? null : new BruteForceGuard(opts.bruteForce, till.limiter, till.verifier.clock, till.events, where, till.store.kind !== 'memory');
  if (limits.length > 0) {
    const charges = limits.map((l) => Object.freeze({ ...l, cost: 1, bucket: `a.${l.name}` }));
    for (const c of charges) claim(till, c.bucket, where, `the rate limit name "${c.name}"`);
    verifyOptions = { ...verifyOptions, limits: charges };
  }
  if (typeof cost === 'number' && cost !== 1) verifyOptions = { ...verifyOptions, cost };
  const costOf = typeof cost === 'function' ? cost : null;
  const problemOptions: ProblemOptions = { rateLimitHeaders: style, ...(opts.realm !== undefined && { realm: opts.realm }) };
  /** What a refusal leaves behind: a count toward blocking its client, and an audit entry. */
  const refused = (result: VerifyResult, key: string | null, req: RequestHeaders, context: Req, ipOf: (context: Req) => string | undefined): VerifyResult => {
    if (result.valid) return result;
    let address: string | undefined;
    if (brute !== null && COUNTED.has(result.code)) {
      address = ipOf(context);
      if (address !== undefined) brute.failed(address);
    }
    if (till.auditWriter !== null && AUDITED[result.code] !== undefined) {
      audit(till, result, key, address ?? ipOf(context), req.headers['user-agent']);
    }
    return result;
  };
  if (opts.optional !== undefined && typeof opts.optional !== 'boolean') {
    throw tillError('INVALID_OPTIONS', where, `optional must be true or false`);
  }
  const optional = opts.optional === true;
  /** A verified request: its key goes into the request's context (where guards read it), and so does its charge. */
  const verified = (result: VerifyResult, state: RequestContext): VerifyResult => {
    if (result.valid) {
      state.key = result.key;
      if (result.usage !== undefined) addCharge(state, () => till.verifier.refund(result));
    }
    return result;
  };
  return {
    till,
    authenticate(req, context, ipOf, respond) {
      const state = openContext(req, till, respond);
      if (brute !== null && brute.active) {
        const address = ipOf(context);
        const wait = address === undefined ? 0 : brute.blockedFor(address);
        // A blocked client is refused whatever it sends; with optional authentication, a request
        // without a key is no attempt at one and goes on.
        if (wait > 0 && !(optional && scan(readHeaders(req)) === NO_KEY)) {
          const blocked: VerifyFailure = Object.freeze({ valid: false, code: 'BLOCKED', retryAfter: wait });
          if (till.auditWriter !== null) audit(till, blocked, null, address, req.headers['user-agent']);
          if (till.events.observed) observe(till, blocked, null, address, req.headers['user-agent']);
          return blocked;
        }
      }
      const key = scan(readHeaders(req));
      if (typeof key !== 'string') {
        const early = key === NO_KEY ? MISSING : refused(MALFORMED, null, req, context, ipOf);
        if (till.events.observed) observe(till, early, null, ipOf(context), req.headers['user-agent']);
        return early === MISSING && optional ? null : early;
      }
      const options = costOf === null ? verifyOptions : { ...verifyOptions, cost: costOf(context) };
      const result = till.verifier.verify(key, options);
      if (result instanceof Promise) {
        return result.then((r) => {
          if (till.events.observed) observe(till, r, key, ipOf(context), req.headers['user-agent']);
          return r.valid ? verified(r, state) : refused(r, key, req, context, ipOf);
        });
      }
      if (till.events.observed) observe(till, result, key, ipOf(context), req.headers['user-agent']);
      return result.valid ? verified(result, state) : refused(result, key, req, context, ipOf);
    },
    problem: (result) => problemResponse(result, problemOptions),
    headers: (result) => (result.valid && result.usage !== undefined && style !== false ? rateLimitHeaders(result.usage.limits, style) : null),
  };
}

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
   * one path, charges it once); the key is the one `apiKeyAuth()` verified for it, if any. A refusal
   * resolves once the request's earlier charges are given back.
   */
  check(node: RequestHeaders, context: Req, ipOf: (context: Req) => string | undefined): MaybePromise<RateLimitVerdict | null>;
}

const RATE_LIMIT_OPTION_NAMES = ['name', 'limit', 'window', 'by', 'cost', 'till', 'headers', 'ipv6Subnet'];

/** Subjects go into Redis key names inside a hash tag: no braces, and bounded in length. */
function subjectOf(kind: string, value: string): string {
  if (value.length <= 200 && !/[{}\s]/.test(value)) return `${kind}:${value}`;
  return `${kind}#${createHash('sha256').update(value).digest('base64url')}`;
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
  if (opts.till !== undefined && !isTill(opts.till)) throw tillError('INVALID_OPTIONS', where, `till must be an instance from createTill()`);
  const subnet = opts.ipv6Subnet ?? DEFAULT_IPV6_SUBNET;
  if (!isValidSubnet(subnet)) throw tillError('INVALID_OPTIONS', where, `ipv6Subnet must be an integer from 1 to 128`);
  const bucket = `r.${policy.name}`;
  // The name is claimed on each Till the guard counts in: at creation when it is given one, else on first use.
  const claimedOn = new WeakSet<Till>();
  const tillFor = (state: RequestContext | undefined): Till => {
    const till = opts.till ?? state?.till;
    if (till === undefined) {
      throw tillError('INVALID_OPTIONS', where, `rate limit "${policy.name}" has no Till to count in: no apiKeyAuth() saw this request. Mount it after apiKeyAuth(), or give it { till } (the one your apiKeyAuth() uses, or defaultTill())`,
      );
    }
    if (!claimedOn.has(till)) {
      claim(till, bucket, where, `the rate limit name "${policy.name}"`);
      claimedOn.add(till);
    }
    return till;
  };
  if (opts.till !== undefined) tillFor(undefined);
  const fixed: LimitCharge & { bucket: string } = Object.freeze({ ...policy, cost: typeof cost === 'number' ? cost : 1, bucket });
  const problemOptions: ProblemOptions = { rateLimitHeaders: style };
  const seen = new WeakSet<object>();
  let warned = false;
  const missing = problemResponse(failure('MISSING'), problemOptions);
  const unavailable: VerifyFailure = Object.freeze({ valid: false, code: 'STORE_UNAVAILABLE', retryAfter: 2 });
  /** A refusal, once what the request was charged before it is given back. */
  const refuse = (state: RequestContext | undefined, verdict: RateLimitVerdict): MaybePromise<RateLimitVerdict> => {
    const refunded = refundCharges(state);
    return refunded === null ? verdict : refunded.then(() => verdict);
  };

  return {
    name: policy.name,
    check(node, context, ipOf) {
      let state = contextOf(node);
      const key = state?.key;
      if (by === 'key' && key === undefined) return refuse(state, { ok: false, failure: failure('MISSING'), response: missing });
      const till = tillFor(state);
      if (seen.has(node)) {
        if (!warned) {
          warned = true;
          till.events.emit({ type: 'guard.repeated', name: policy.name });
          till.logger.warn(`[till] [${where}] rate limit "${policy.name}" ran twice for one request (mounted twice on one path?); it counts each request once`);
        }
        return null;
      }
      seen.add(node);
      let subject: string;
      if (by === 'key') {
        subject = key!.id;
      } else if (by === 'ip') {
        // The client, not the address: an IPv6 host rotates within its prefix.
        subject = `ip:${clientKey(ipOf(context), subnet)}`;
      } else {
        const value = by(context);
        if (value === undefined) return null;
        if (typeof value !== 'string' || value.length === 0) throw tillError('INVALID_ARGUMENT', where, `the by function of rate limit "${policy.name}" must return a non-empty string or undefined`);
        subject = subjectOf('u', value);
      }
      const charge = typeof cost === 'number' ? fixed : { ...fixed, cost: cost(context) };
      const request = { subject, limits: [charge] };
      return till.limiter.consume(request, false).then((result): MaybePromise<RateLimitVerdict> => {
        if (result === UNAVAILABLE) return refuse(state, { ok: false, failure: unavailable, response: problemResponse(unavailable, problemOptions) });
        if (!('limits' in result)) throw new Error('unreachable: a charge without a key version has no record outcome');
        const usage = { limits: result.limits, credits: null };
        if (result.outcome === 'OK') {
          // Given back if a later guard refuses the request.
          state ??= openContext(node, till, null);
          addCharge(state, () => till.limiter.refund(request, result));
          return { ok: true, headers: rateLimitHeaders(result.limits, style) };
        }
        const refused: VerifyFailure = result.retryAfter === null
          ? { valid: false, code: 'RATE_LIMITED', usage, ...(key !== undefined && { keyId: key.id }) }
          : { valid: false, code: 'RATE_LIMITED', usage, retryAfter: Math.max(1, Math.ceil(result.retryAfter / 1000)), ...(key !== undefined && { keyId: key.id }) };
        const userAgent = node.headers['user-agent'];
        if (till.auditWriter !== null) audit(till, refused, null, ipOf(context), userAgent, `rate limit ${policy.name}`, key === undefined ? null : key.ownerId);
        if (till.events.observed) observe(till, refused, null, ipOf(context), userAgent);
        return refuse(state, { ok: false, failure: refused, response: problemResponse(refused, problemOptions) });
      });
    },
  };
}

/** What a route guard's refusal carries to the adapter: the failure, and how the app wants it answered. */
export interface GuardRefusal {
  readonly failure: VerifyFailure;
  /** The responder of the `apiKeyAuth()` that saw the request (its onFailure, realm), or null: the default. */
  readonly respond: unknown;
  /** Resolves once the request's earlier charges are given back; null when there were none. */
  readonly settled: Promise<void> | null;
}

/**
 * A compiled scope requirement for a route, run against the key that `apiKeyAuth()` verified for the
 * request (never `req.apiKey`, which other code could set). A refusal is recorded in the trail of the
 * Till that verified the key, and gives back what the request was charged: a request refused for
 * scope spends no credit and no limit unit.
 */
export function createScopeCheck(scopes: readonly unknown[], mode: 'all' | 'any', where: string): (node: RequestHeaders, ip: () => string | undefined) => GuardRefusal | null {
  const required = Object.freeze(normalizeRequired(scopes, where));
  const missing = failure('MISSING');
  const insufficient: VerifyFailure = Object.freeze({ valid: false, code: 'INSUFFICIENT_SCOPE', requiredScopes: required, scopeMode: mode });
  const compiled = new WeakMap<VerifiedKey, boolean>();
  return (node, ip) => {
    const state = contextOf(node);
    const key = state?.key;
    // Without a verified key the route is misconfigured or the key is absent: refuse, never pass.
    if (key === undefined) return { failure: missing, respond: state?.respond ?? null, settled: refundCharges(state) };
    let ok = compiled.get(key);
    if (ok === undefined) {
      const set = new ScopeSet(key.scopes);
      ok = mode === 'all' ? set.hasAll(required) : set.hasAny(required);
      compiled.set(key, ok);
    }
    if (ok) return null;
    const till = state!.till;
    const refusal = { ...insufficient, keyId: key.id };
    const userAgent = node.headers['user-agent'];
    if (till.auditWriter !== null) audit(till, refusal, null, ip(), userAgent, undefined, key.ownerId);
    if (till.events.observed) observe(till, refusal, null, ip(), userAgent);
    return { failure: insufficient, respond: state!.respond, settled: refundCharges(state) };
  };
}
