// @till/express: API key middleware for Express 4 and 5. Thin: core verifies, this maps to HTTP.
import {
  createAuthenticator,
  createScopeCheck,
  problemResponse,
  TillError,
  type AuthOptions,
  type ProblemResponse,
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
    }
  }
}

/**
 * Replaces the default response for a failure. `response` is what Till would send; call
 * `sendProblem(res, response)` to send it after all, or write your own.
 */
export type FailureHandler = (failure: VerifyFailure, req: Request, res: Response, next: NextFunction, response: ProblemResponse) => void;

export interface ApiKeyAuthOptions extends AuthOptions {
  /** Replaces the default RFC 9457 response (also used by `requireScopes` after this middleware). */
  onFailure?: FailureHandler;
}

/** Writes a problem response. */
export function sendProblem(res: Response, response: ProblemResponse): void {
  res.status(response.status);
  for (const name in response.headers) res.setHeader(name, response.headers[name]!);
  res.end(JSON.stringify(response.body));
}

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
      next();
    } else respond(result, req, res, next);
  };

  // requireScopes answers like this middleware; with default options that is its own default.
  const customized = onFailure !== undefined || options?.realm !== undefined;

  return function tillApiKeyAuth(req: Request, res: Response, next: NextFunction): void {
    if (customized) (req as TillRequest)[RESPONDER] = respond;
    const result = auth.authenticate(req);
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

export type { VerifiedKey, VerifyFailure, ProblemResponse } from '@till/core';
