// @till/koa: API key middleware for Koa 2 and 3, the mapping of @till/core/http to Koa.
import { createAdapter, type AuthOptions, type ProblemResponse, type RateLimitOptions, type Refusal, type Step } from '@till/core/http';
import type { Usage, VerifiedKey, VerifyFailure } from '@till/core';
import type { Context, Middleware, Next } from 'koa';
import { authMiddlewares, checkRouter } from './router-check.js';

declare module 'koa' {
  interface DefaultState {
    /** The key that authenticated this request, set by `apiKeyAuth()`. */
    apiKey?: VerifiedKey;
    /** The key's limits and credits after this request was charged, when it was. */
    apiKeyUsage?: Usage;
  }
}

/**
 * Replaces the default response for a failure. `response` is what Till would send; call
 * `sendProblem(ctx, response)` to send it after all, or set `ctx` yourself.
 */
export type FailureHandler = (failure: VerifyFailure, ctx: Context, response: ProblemResponse) => void | Promise<void>;

export interface ApiKeyAuthOptions extends AuthOptions<Context> {
  /** Replaces the default RFC 9457 response (also used by `requireScopes` after this middleware). */
  onFailure?: FailureHandler;
}

const kit = createAdapter<Context, Context, FailureHandler>({
  name: 'koa',
  node: (ctx) => ctx.req,
  // The client IP as Koa sees it, by the app's `proxy` setting.
  ip: (ctx) => ctx.ip,
  getHeader: (ctx, name) => ctx.response.get(name),
  setHeader: (ctx, name, value) => ctx.set(name, value),
  holder: (ctx) => ctx.state,
});

/** Sets a problem response on the context. */
export function sendProblem(ctx: Context, response: ProblemResponse): void {
  ctx.status = response.status;
  kit.setHeaders(ctx, response.headers);
  ctx.body = JSON.stringify(response.body);
  ctx.type = response.headers['content-type']!;
}

/**
 * Answers a refusal with `onFailure` (or the default). The handler may change the response; one that
 * leaves it untouched (Koa's default 404, no body) gets the default response.
 */
async function refuse({ failure, response, onFailure }: Refusal<FailureHandler>, ctx: Context): Promise<void> {
  if (onFailure === undefined) return sendProblem(ctx, response);
  await onFailure(failure, ctx, response);
  if (ctx.status === 404 && ctx.body == null) sendProblem(ctx, response);
}

/** A step of the kit as Koa middleware; `before` sees the refusal first (the router check). */
function middleware(
  name: string,
  step: (ctx: Context, res: Context) => Step<FailureHandler>,
  before?: (refusal: Refusal<FailureHandler>, ctx: Context) => void,
): Middleware {
  const handler = async (ctx: Context, next: Next): Promise<void> => {
    let refusal = step(ctx, ctx);
    // Awaited only when it is a promise: the cached path takes no extra tick.
    if (refusal instanceof Promise) refusal = await refusal;
    if (refusal === null) return next();
    before?.(refusal, ctx);
    return refuse(refusal, ctx);
  };
  return Object.defineProperty(handler, 'name', { value: name });
}

/**
 * Verifies the API key of every request. On success `ctx.state.apiKey` holds the key (never its
 * secret); on failure the response is 401, 403, 429 or 503 with a problem+json body.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): Middleware {
  const step = kit.apiKeyAuth(options);
  const auth = middleware('tillApiKeyAuth', (ctx) => {
    checkRouter(ctx);
    return step(ctx, ctx);
  });
  authMiddlewares.add(auth);
  return auth;
}

// A request no apiKeyAuth() saw: on a router that skips it by case, say so (an error, still no pass).
const checkMissing = (refusal: Refusal<FailureHandler>, ctx: Context): void => {
  if (refusal.failure.code === 'MISSING') checkRouter(ctx);
};

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): Middleware {
  return middleware('tillRequireScopes', kit.scopeGuard(scopes, 'all'), checkMissing);
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): Middleware {
  return middleware('tillRequireScopes', kit.scopeGuard(scopes, 'any'), checkMissing);
}

export interface RateLimitMiddlewareOptions extends RateLimitOptions<Context> {
  /** Replaces the default 429 (or the 401 of `by: 'key'` without a key). */
  onFailure?: FailureHandler;
}

/**
 * Limits a route: `limit` requests per `window` per API key (default), per client IP (`ctx.ip`, so
 * the app's `proxy` setting decides what the client IP is) or per the value of a function. Sets
 * the `RateLimit` headers; refuses with 429, `Retry-After` and a problem+json body. Usable after
 * `apiKeyAuth()` or, with `by: 'ip'` or a function, on its own.
 */
export function rateLimit(options: RateLimitMiddlewareOptions): Middleware {
  return middleware('tillRateLimit', kit.rateLimit(options));
}

export type { VerifiedKey, VerifyFailure, Usage, LimitState } from '@till/core';
export type { ProblemResponse, RateLimitHeaderStyle } from '@till/core/http';
