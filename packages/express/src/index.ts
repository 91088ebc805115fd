// @till/express: API key middleware for Express 4 and 5. Thin: core verifies, this maps to HTTP.
import {
  createAuthenticator,
  createRateLimitGuard,
  createScopeCheck,
  problemResponse,
  recordRefusal,
  TillError,
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
 * `sendProblem(res, response)` to send it after all, or write your own.
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
const RESPONDER = Symbol('till.responder');
type TillRequest = Request & { [RESPONDER]?: Responder };

/**
 * Verifies the API key of every request. On success `req.apiKey` holds the key (never its
 * secret); on failure the request ends with 401, 403, 429 or 503 and a problem+json body.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): RequestHandler {
  // Checked first: a bad option must fail before any default Till is made.
  const onFailure = options !== null && typeof options === 'object' ? options.onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') {
    throw new TillError('INVALID_OPTIONS', '[till] [express] onFailure must be a function');
  }
  const auth = createAuthenticator(options, 'express', ['onFailure']);
  const respond: Responder = (failure, req, res, next) => {
    const response = auth.problem(failure);
    if (onFailure) onFailure(failure, req, res, next, response);
    else sendProblem(res, response);
  };
  const settle = (result: VerifyResult, req: Request, res: Response, next: NextFunction): void => {
    if (result.valid) {
      req.apiKey = result.key;
      if (result.usage !== undefined) {
        req.apiKeyUsage = result.usage;
        const headers = auth.headers(result);
        if (headers !== null) setHeaders(res, headers);
      }
      next();
    } else respond(result, req, res, next);
  };

  // requireScopes answers like this middleware; with default options that is its own default.
  const customized = onFailure !== undefined || options?.realm !== undefined;

  return function tillApiKeyAuth(req: Request, res: Response, next: NextFunction): void {
    if (customized) (req as TillRequest)[RESPONDER] = respond;
    const result = auth.authenticate(req, req, ipOf);
    // The cached path answers synchronously: no promise, no extra tick.
    if (!(result instanceof Promise)) return settle(result, req, res, next);
    // An error thrown by onFailure goes to Express's error handling, not to an unhandled rejection.
    result.then((r) => settle(r, req, res, next)).catch(next);
  };
}

function scopeGuard(scopes: readonly unknown[], mode: 'all' | 'any'): RequestHandler {
  const check = createScopeCheck(scopes, mode, 'express');
  return function tillRequireScopes(req: Request, res: Response, next: NextFunction): void {
    const failure = check(req.apiKey);
    if (failure === null) return next();
    recordRefusal(req.apiKey, failure, req.ip, req.headers['user-agent']);
    const respond = (req as TillRequest)[RESPONDER];
    if (respond) respond(failure, req, res, next);
    // Without apiKeyAuth() before it there is no key (and no custom handler): refuse with the default.
    else sendProblem(res, problemResponse(failure));
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
 * Sets the `RateLimit` headers; refuses with 429, `Retry-After` and a problem+json body.
 * Usable after `apiKeyAuth()` or, with `by: 'ip'` or a function, on its own.
 */
export function rateLimit(options: RateLimitMiddlewareOptions): RequestHandler {
  const onFailure = options !== null && typeof options === 'object' ? options.onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') {
    throw new TillError('INVALID_OPTIONS', '[till] [express] onFailure must be a function');
  }
  const guard = createRateLimitGuard(options, 'express', ['onFailure']);
  const apply = (verdict: RateLimitVerdict | null, req: Request, res: Response, next: NextFunction): void => {
    if (verdict === null) return next();
    if (verdict.ok) {
      setHeaders(res, verdict.headers);
      return next();
    }
    if (onFailure) onFailure(verdict.failure, req, res, next, verdict.response);
    else sendProblem(res, verdict.response);
  };
  return function tillRateLimit(req: Request, res: Response, next: NextFunction): void {
    let verdict;
    try {
      verdict = guard.check(req, req, req.apiKey, ipOf);
    } catch (error) {
      return next(error);
    }
    if (!(verdict instanceof Promise)) return apply(verdict, req, res, next);
    verdict.then((v) => apply(v, req, res, next)).catch(next);
  };
}

export type { VerifiedKey, VerifyFailure, ProblemResponse, Usage, LimitState, RateLimitHeaderStyle } from '@till/core';
