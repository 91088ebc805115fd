// @till/express: API key middleware for Express 4 and 5. Thin: core verifies, this maps to HTTP.
import {
  createAuthenticator,
  createRateLimitGuard,
  createScopeCheck,
  consoleLogger,
  contextOf,
  problemResponse,
  tillError,
  type Logger,
  type AuthOptions,
  type ProblemResponse,
  type RateLimitOptions,
  type RateLimitVerdict,
  type Usage,
  type VerifiedKey,
  type VerifyFailure,
  type VerifyResult,
} from '@till/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The key that authenticated this request, set by `apiKeyAuth()`. */
      apiKey?: VerifiedKey;
      /** The key's limits and credits after this request was charged, when it was. */
      apiKeyUsage?: Usage;
    }
  }
}

/**
 * Replaces the default response for a failure. `response` is what Till would send; call
 * `sendProblem(res, response)` to send it after all, or write your own. A refusal stays a refusal:
 * `next(error)` hands an error to Express, but `next()` cannot let the request through (Till then
 * sends `response`); to let requests without a key through, use `apiKeyAuth({ optional: true })`.
 */
export type FailureHandler = (failure: VerifyFailure, req: Request, res: Response, next: NextFunction, response: ProblemResponse) => void;

export interface ApiKeyAuthOptions extends AuthOptions<Request> {
  /** Replaces the default RFC 9457 response (also used by `requireScopes` after this middleware). */
  onFailure?: FailureHandler;
}

/** Writes a problem response. */
export function sendProblem(res: Response, response: ProblemResponse): void {
  res.status(response.status);
  setHeaders(res, response.headers);
  res.end(JSON.stringify(response.body));
}

/** Sets headers; the rate-limit lists join what an earlier Till middleware set (one item per limit). */
function setHeaders(res: Response, headers: Readonly<Record<string, string>>): void {
  for (const name in headers) {
    const value = headers[name]!;
    const before = (name === 'ratelimit' || name === 'ratelimit-policy') && res.getHeader(name);
    res.setHeader(name, typeof before === 'string' && before !== '' ? `${before}, ${value}` : value);
  }
}

/** The client IP as Express sees it, by the app's `trust proxy` setting. */
const ipOf = (req: Request): string | undefined => req.ip;

type Responder = (failure: VerifyFailure, req: Request, res: Response, next: NextFunction) => void;

/** Said once per process: a handler tried to pass a refused request. */
let warnedPass = false;

/**
 * Answers a refusal with `onFailure` (or the default), giving it a `next` that passes errors on but
 * can never continue the chain: `next()`, `next('route')` and `next('router')` send the default
 * response instead (unless the handler has answered already).
 */
function refuse(onFailure: FailureHandler | undefined, failure: VerifyFailure, response: ProblemResponse, req: Request, res: Response, next: NextFunction, logger: Logger): void {
  if (onFailure === undefined) return sendProblem(res, response);
  const refusalNext: NextFunction = (error?: unknown) => {
    if (error !== undefined && error !== null && error !== 'route' && error !== 'router') return next(error);
    if (!warnedPass) {
      warnedPass = true;
      logger.warn('[till] [express] an onFailure handler called next() to let a refused request through; a refusal cannot be turned into a pass, so the default response was sent. Use apiKeyAuth({ optional: true }) for routes open to requests without a key');
    }
    if (!res.headersSent) sendProblem(res, response);
  };
  onFailure(failure, req, res, refusalNext, response);
}

function checkOnFailure(options: unknown): FailureHandler | undefined {
  const onFailure = options !== null && typeof options === 'object' ? (options as { onFailure?: unknown }).onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') {
    throw tillError('INVALID_OPTIONS', 'express', 'onFailure must be a function');
  }
  return onFailure as FailureHandler | undefined;
}

/**
 * Verifies the API key of every request. On success `req.apiKey` holds the key (never its
 * secret); on failure the request ends with 401, 403, 429 or 503 and a problem+json body.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): RequestHandler {
  // Checked first: a bad option must fail before any default Till is made.
  const onFailure = checkOnFailure(options);
  const auth = createAuthenticator(options, 'express', ['onFailure']);
  const respond: Responder = (failure, req, res, next) => refuse(onFailure, failure, auth.problem(failure), req, res, next, auth.till.logger);
  // Guards after this middleware answer like it; with default options that is their own default.
  const custom = onFailure !== undefined || options?.realm !== undefined ? respond : null;
  const settle = (result: VerifyResult | null, req: Request, res: Response, next: NextFunction): void => {
    if (result === null) return next();
    if (!result.valid) return respond(result, req, res, next);
    req.apiKey = result.key;
    if (result.usage !== undefined) {
      req.apiKeyUsage = result.usage;
      const headers = auth.headers(result);
      if (headers !== null) setHeaders(res, headers);
    }
    next();
  };

  return function tillApiKeyAuth(req: Request, res: Response, next: NextFunction): void {
    const result = auth.authenticate(req, req, ipOf, custom);
    // The cached path answers synchronously: no promise, no extra tick.
    if (!(result instanceof Promise)) return settle(result, req, res, next);
    // An error thrown by onFailure goes to Express's error handling, not to an unhandled rejection.
    result.then((r) => settle(r, req, res, next)).catch(next);
  };
}

function scopeGuard(scopes: readonly unknown[], mode: 'all' | 'any'): RequestHandler {
  const check = createScopeCheck(scopes, mode, 'express');
  return function tillRequireScopes(req: Request, res: Response, next: NextFunction): void {
    const refusal = check(req, () => req.ip);
    if (refusal === null) return next();
    const answer = () => {
      const respond = refusal.respond as Responder | null;
      // Without apiKeyAuth() before it there is no key (and no custom handler): refuse with the default.
      if (respond !== null) respond(refusal.failure, req, res, next);
      else sendProblem(res, problemResponse(refusal.failure));
    };
    if (refusal.settled === null) return answer();
    refusal.settled.then(answer).catch(next);
  };
}

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): RequestHandler {
  return scopeGuard(scopes, 'all');
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): RequestHandler {
  return scopeGuard(scopes, 'any');
}

export interface RateLimitMiddlewareOptions extends RateLimitOptions<Request> {
  /** Replaces the default 429 (or the 401 of `by: 'key'` without a key). */
  onFailure?: FailureHandler;
}

/**
 * Limits a route: `limit` requests per `window` per API key (default), per client IP (`req.ip`,
 * so Express's `trust proxy` setting decides what the client IP is) or per the value of a function.
 * Sets the `RateLimit` headers; refuses with 429, `Retry-After` and a problem+json body, and gives
 * back what the request was charged before it. Counts in the Till of the `apiKeyAuth()` before it;
 * on its own (`by: 'ip'` or a function), give it `{ till }`.
 */
export function rateLimit(options: RateLimitMiddlewareOptions): RequestHandler {
  const onFailure = checkOnFailure(options);
  const guard = createRateLimitGuard(options, 'express', ['onFailure']);
  const apply = (verdict: RateLimitVerdict | null, req: Request, res: Response, next: NextFunction): void => {
    if (verdict === null) return next();
    if (verdict.ok) {
      setHeaders(res, verdict.headers);
      return next();
    }
    refuse(onFailure, verdict.failure, verdict.response, req, res, next, contextOf(req)?.till.logger ?? consoleLogger);
  };
  return function tillRateLimit(req: Request, res: Response, next: NextFunction): void {
    let verdict;
    try {
      verdict = guard.check(req, req, ipOf);
    } catch (error) {
      return next(error);
    }
    if (!(verdict instanceof Promise)) return apply(verdict, req, res, next);
    verdict.then((v) => apply(v, req, res, next)).catch(next);
  };
}

export type { VerifiedKey, VerifyFailure, ProblemResponse, Usage, LimitState, RateLimitHeaderStyle } from '@till/core';
