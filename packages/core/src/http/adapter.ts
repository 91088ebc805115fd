// The framework-neutral half of every adapter: each middleware as a step that either lets the request go
// on or hands back a refusal to answer. The adapter says how to read its request and write its response.
import { tillMessage } from '../errors.js';
import { consoleLogger, type Logger } from '../util/logger.js';
import type { MaybePromise, Usage, VerifiedKey, VerifyFailure, VerifyResult } from '../verify/outcome.js';
import { createAuthenticator, type AuthOptions } from './authenticator.js';
import { checkOnFailure } from './options.js';
import { problemResponse, type ProblemResponse } from './problem.js';
import { createRateLimitGuard, type RateLimitOptions, type RateLimitVerdict } from './rate-limit.js';
import type { RequestHeaders } from './raw-headers.js';
import { contextOf } from './request-context.js';
import { createScopeCheck } from './scope-check.js';

/** What the kit needs of a framework. `Req` and `Res` are its request and response (Koa: both `ctx`). */
export interface FrameworkBinding<Req, Res> {
  /** The adapter's name in messages: `[till] [<name>] ...`. */
  readonly name: string;
  /** The Node request under the framework's (Express: `req`; Koa: `ctx.req`): where Till keeps its context. */
  node(req: Req): RequestHeaders;
  /** The client IP as the framework sees it, by the app's trust-proxy setting. */
  ip(req: Req): string | undefined;
  /** A response header set so far, if any. */
  getHeader(res: Res, name: string): unknown;
  setHeader(res: Res, name: string, value: string): void;
  /** Where the app reads the verified key and its usage (Express: `req`; Koa: `ctx.state`). */
  holder(req: Req): KeyHolder;
}

/** What the app reads: the key that authenticated the request, and its limits and credits once it was charged. */
export interface KeyHolder {
  apiKey?: VerifiedKey;
  apiKeyUsage?: Usage;
}

/** A request refused: the adapter sends `response`, or calls the app's `onFailure` with it. */
export interface Refusal<Handler> {
  readonly failure: VerifyFailure;
  /** What Till sends unless `onFailure` answers otherwise. */
  readonly response: ProblemResponse;
  /** The app's handler for this refusal; undefined: send `response`. */
  readonly onFailure: Handler | undefined;
  /** Where to say that a handler misbehaved. */
  readonly logger: Logger;
}

/** One middleware's verdict on a request: null, go on; else the refusal. Synchronous whenever nothing waited. */
export type Step<Handler> = MaybePromise<Refusal<Handler> | null>;

/** The options an adapter adds to the kit's: a handler that replaces the default response. */
export interface WithFailureHandler<Handler> {
  onFailure?: Handler;
}

export interface Adapter<Req, Res, Handler> {
  /** `apiKeyAuth(options)`: verifies the key, attaches it and sets the rate-limit headers before passing. */
  apiKeyAuth(options: (AuthOptions<Req> & WithFailureHandler<Handler>) | undefined): (req: Req, res: Res) => Step<Handler>;
  /** `requireScopes(...)` (`all`) and `requireAnyScope(...)` (`any`). */
  scopeGuard(scopes: readonly unknown[], mode: 'all' | 'any'): (req: Req) => Step<Handler>;
  /** `rateLimit(options)`: charges the request and sets the rate-limit headers before passing. */
  rateLimit(options: RateLimitOptions<Req> & WithFailureHandler<Handler>): (req: Req, res: Res) => Step<Handler>;
  /** Sets headers; the rate-limit lists join what an earlier Till middleware set (one item per limit). */
  setHeaders(res: Res, headers: Readonly<Record<string, string>>): void;
}

const warned = new Set<string>();

/** Says something about the app's code once per process: it would otherwise repeat on every request. */
export function warnOnce(logger: Logger, where: string, text: string): void {
  if (warned.has(text)) return;
  warned.add(text);
  logger.warn(tillMessage(where, text));
}

function then<T, U>(value: MaybePromise<T>, next: (value: T) => U): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/** Builds the steps of an adapter's middlewares; every option is checked when a middleware is made. */
export function createAdapter<Req, Res, Handler>(binding: FrameworkBinding<Req, Res>): Adapter<Req, Res, Handler> {
  const where = binding.name;
  const setHeaders = (res: Res, headers: Readonly<Record<string, string>>): void => {
    for (const name in headers) {
      const value = headers[name]!;
      const before = (name === 'ratelimit' || name === 'ratelimit-policy') && binding.getHeader(res, name);
      binding.setHeader(res, name, typeof before === 'string' && before !== '' ? `${before}, ${value}` : value);
    }
  };
  const loggerOf = (req: Req): Logger => contextOf(binding.node(req), binding.holder(req).apiKey)?.till.logger ?? consoleLogger;
  return {
    setHeaders,
    apiKeyAuth(options) {
      // Checked first: a bad option must fail before any default Till is made.
      const onFailure = checkOnFailure<Handler>(options, where);
      const auth = createAuthenticator(options, where, ['onFailure'], onFailure);
      const { logger } = auth.till;
      const settle = (result: VerifyResult | null, req: Req, res: Res): Refusal<Handler> | null => {
        if (result === null) return null;
        if (!result.valid) return { failure: result, response: auth.problem(result), onFailure, logger };
        const holder = binding.holder(req);
        holder.apiKey = result.key;
        if (result.usage !== undefined) holder.apiKeyUsage = result.usage;
        const headers = auth.headers(result);
        if (headers !== null) setHeaders(res, headers);
        return null;
      };
      // No closure per request on the cached path: only a miss (a promise) makes one.
      return (req, res) => {
        const result = auth.authenticate(binding.node(req), req, binding.ip);
        return result instanceof Promise ? result.then((r) => settle(r, req, res)) : settle(result, req, res);
      };
    },
    scopeGuard(scopes, mode) {
      const check = createScopeCheck(scopes, mode, where);
      return (req) => {
        const refusal = check(binding.node(req), binding.holder(req).apiKey, () => binding.ip(req));
        if (refusal === null) return null;
        const { failure, answer } = refusal;
        // Answered like the apiKeyAuth() before it; without one, with the default response.
        const out: Refusal<Handler> =
          answer === null
            ? { failure, response: problemResponse(failure), onFailure: undefined, logger: consoleLogger }
            : { failure, response: problemResponse(failure, answer.problem), onFailure: answer.onFailure as Handler | undefined, logger: answer.logger };
        return refusal.settled === null ? out : refusal.settled.then(() => out);
      };
    },
    rateLimit(options) {
      const onFailure = checkOnFailure<Handler>(options, where);
      const guard = createRateLimitGuard(options, where, ['onFailure']);
      const apply = (verdict: RateLimitVerdict | null, req: Req, res: Res): Refusal<Handler> | null => {
        if (verdict === null) return null;
        if (verdict.ok) {
          setHeaders(res, verdict.headers);
          return null;
        }
        return { failure: verdict.failure, response: verdict.response, onFailure, logger: loggerOf(req) };
      };
      return (req, res) => then(guard.check(binding.node(req), binding.holder(req).apiKey, req, binding.ip), (verdict) => apply(verdict, req, res));
    },
  };
}
