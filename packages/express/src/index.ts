// @till/express: API key middleware for Express 4 and 5, the mapping of @till/core/http to Express.
import { createAdapter, warnOnce, type AuthOptions, type ProblemResponse, type RateLimitOptions, type Refusal, type Step } from '@till/core/http';
import type { Usage, VerifiedKey, VerifyFailure } from '@till/core';
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

const kit = createAdapter<Request, Response, FailureHandler>({
  name: 'express',
  node: (req) => req,
  // The client IP as Express sees it, by the app's `trust proxy` setting.
  ip: (req) => req.ip,
  getHeader: (res, name) => res.getHeader(name),
  setHeader: (res, name, value) => void res.setHeader(name, value),
  holder: (req) => req,
});

/** Writes a problem response. */
export function sendProblem(res: Response, response: ProblemResponse): void {
  res.status(response.status);
  kit.setHeaders(res, response.headers);
  res.end(JSON.stringify(response.body));
}

/**
 * Answers a refusal with `onFailure` (or the default), giving it a `next` that passes errors on but
 * can never continue the chain: `next()`, `next('route')` and `next('router')` send the default
 * response instead (unless the handler has answered already).
 */
function refuse({ failure, response, onFailure, logger }: Refusal<FailureHandler>, req: Request, res: Response, next: NextFunction): void {
  if (onFailure === undefined) return sendProblem(res, response);
  const refusalNext: NextFunction = (error?: unknown) => {
    if (error !== undefined && error !== null && error !== 'route' && error !== 'router') return next(error);
    warnOnce(
      logger,
      'express',
      'an onFailure handler called next() to let a refused request through; a refusal cannot be turned into a pass, so the default response was sent. Use apiKeyAuth({ optional: true }) for routes open to requests without a key',
    );
    if (!res.headersSent) sendProblem(res, response);
  };
  onFailure(failure, req, res, refusalNext, response);
}

const settle = (refusal: Refusal<FailureHandler> | null, req: Request, res: Response, next: NextFunction): void =>
  refusal === null ? next() : refuse(refusal, req, res, next);

/** A step of the kit as Express middleware: the cached path answers synchronously (a throw there reaches Express too). */
function middleware(name: string, step: (req: Request, res: Response) => Step<FailureHandler>): RequestHandler {
  const handler = (req: Request, res: Response, next: NextFunction): void => {
    const result = step(req, res);
    if (!(result instanceof Promise)) return settle(result, req, res, next);
    // An error thrown by onFailure goes to Express's error handling, not to an unhandled rejection.
    result.then((r) => settle(r, req, res, next)).catch(next);
  };
  return Object.defineProperty(handler, 'name', { value: name });
}

/**
 * Verifies the API key of every request. On success `req.apiKey` holds the key (never its
 * secret); on failure the request ends with 401, 403, 429 or 503 and a problem+json body.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): RequestHandler {
  return middleware('tillApiKeyAuth', kit.apiKeyAuth(options));
}

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): RequestHandler {
  return middleware('tillRequireScopes', kit.scopeGuard(scopes, 'all'));
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): RequestHandler {
  return middleware('tillRequireScopes', kit.scopeGuard(scopes, 'any'));
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
  return middleware('tillRateLimit', kit.rateLimit(options));
}

export type { VerifiedKey, VerifyFailure, Usage, LimitState } from '@till/core';
export type { ProblemResponse, RateLimitHeaderStyle } from '@till/core/http';
