// @till/koa: API key middleware for Koa 2 and 3. Thin: core verifies, this maps to HTTP.
import {
  createAuthenticator,
  createRateLimitGuard,
  createScopeCheck,
  problemResponse,
  TillError,
  tillError,
  type AuthOptions,
  type ProblemResponse,
  type RateLimitOptions,
  type Usage,
  type VerifiedKey,
  type VerifyFailure,
} from '@till/core';
import type { Context, Middleware, Next } from 'koa';

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

/** Sets a problem response on the context. */
export function sendProblem(ctx: Context, response: ProblemResponse): void {
  ctx.status = response.status;
  setHeaders(ctx, response.headers);
  ctx.body = JSON.stringify(response.body);
  ctx.type = response.headers['content-type']!;
}

/** Sets headers; the rate-limit lists join what an earlier Till middleware set (one item per limit). */
function setHeaders(ctx: Context, headers: Readonly<Record<string, string>>): void {
  for (const name in headers) {
    const value = headers[name]!;
    const before = (name === 'ratelimit' || name === 'ratelimit-policy') && ctx.response.get(name);
    ctx.set(name, typeof before === 'string' && before !== '' ? `${before}, ${value}` : value);
  }
}

/** The client IP as Koa sees it, by the app's `proxy` setting. */
const ipOf = (ctx: Context): string | undefined => ctx.ip;

type Responder = (failure: VerifyFailure, ctx: Context) => void | Promise<void>;

/** Every `apiKeyAuth()` middleware made here: how a router's stack shows where authentication is mounted. */
const authMiddlewares = new WeakSet<object>();

/** What Till reads of an @koa/router `Router` (`ctx.router`) and its layers; nothing else is assumed. */
interface RouterLike {
  stack?: unknown;
}
interface LayerLike {
  methods?: unknown;
  stack?: unknown;
  regexp?: unknown;
  path?: unknown;
}

/** The verdict on each router seen: null when authentication on it cannot be skipped by a path's case. */
const routerVerdicts = new WeakMap<object, TillError | null>();

/**
 * @koa/router matches a router's `use()` middleware by its prefix case-sensitively but its routes
 * case-insensitively (unless the router has `sensitive: true`): with
 * `new Router({ prefix: '/api' }).use(apiKeyAuth())`, `GET /API/invoices` runs the route without
 * authentication. Till cannot see the requests that skip it, but it sees the router whenever
 * authentication or a route guard runs in it: such a router is refused (an error, never a pass) so
 * that the hole shows at the first request instead of in production.
 */
function checkRouter(ctx: Context): void {
  const router = (ctx as { router?: unknown }).router;
  if (router === null || typeof router !== 'object') return;
  let verdict = routerVerdicts.get(router);
  if (verdict === undefined) {
    verdict = null;
    const stack = (router as RouterLike).stack;
    const layers = Array.isArray(stack) ? (stack as LayerLike[]) : [];
    const caseless = (l: LayerLike) => l.regexp instanceof RegExp && l.regexp.flags.includes('i');
    const routes = layers.filter((l) => Array.isArray(l.methods) && l.methods.length > 0);
    for (const layer of layers) {
      const isUse = Array.isArray(layer.methods) && layer.methods.length === 0;
      const authenticates = Array.isArray(layer.stack) && layer.stack.some((fn) => typeof fn === 'function' && authMiddlewares.has(fn));
      // A use() layer whose path has letters and matches them only in one case, on a router whose routes match any case.
      if (isUse && authenticates && layer.regexp instanceof RegExp && !caseless(layer) && /[A-Za-z]/.test(String(layer.path)) && routes.some(caseless)) {
        verdict = tillError('INVALID_OPTIONS', 'koa', `apiKeyAuth() is mounted with router.use() under a path (${String(layer.path).slice(0, 60)}) on an @koa/router Router whose routes match paths in any case while its use() middleware matches only the exact case: a request that changes the path's case would reach the routes without authentication. Create the router with { sensitive: true }, or mount apiKeyAuth() on the app or on each route`,
        );
        break;
      }
    }
    routerVerdicts.set(router, verdict);
  }
  if (verdict !== null) throw verdict;
}

/**
 * Answers a refusal with `onFailure` (or the default). The handler may change the response; one that
 * leaves it untouched (Koa's default 404, no body) gets the default response.
 */
async function refuse(onFailure: FailureHandler | undefined, failure: VerifyFailure, response: ProblemResponse, ctx: Context): Promise<void> {
  if (onFailure === undefined) return sendProblem(ctx, response);
  await onFailure(failure, ctx, response);
  if (ctx.status === 404 && ctx.body == null) sendProblem(ctx, response);
}

function checkOnFailure(options: unknown): FailureHandler | undefined {
  const onFailure = options !== null && typeof options === 'object' ? (options as { onFailure?: unknown }).onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') {
    throw tillError('INVALID_OPTIONS', 'koa', 'onFailure must be a function');
  }
  return onFailure as FailureHandler | undefined;
}

/**
 * Verifies the API key of every request. On success `ctx.state.apiKey` holds the key (never its
 * secret); on failure the response is 401, 403, 429 or 503 with a problem+json body.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): Middleware {
  // Checked first: a bad option must fail before any default Till is made.
  const onFailure = checkOnFailure(options);
  const auth = createAuthenticator(options, 'koa', ['onFailure']);
  const respond: Responder = (failure, ctx) => refuse(onFailure, failure, auth.problem(failure), ctx);
  // Guards after this middleware answer like it; with default options that is their own default.
  const custom = onFailure !== undefined || options?.realm !== undefined ? respond : null;

  const middleware = async function tillApiKeyAuth(ctx: Context, next: Next): Promise<void> {
    checkRouter(ctx);
    let result = auth.authenticate(ctx.req, ctx, ipOf, custom);
    if (result instanceof Promise) result = await result;
    if (result === null) return next();
    if (!result.valid) return respond(result, ctx);
    ctx.state.apiKey = result.key;
    if (result.usage !== undefined) {
      ctx.state.apiKeyUsage = result.usage;
      const headers = auth.headers(result);
      if (headers !== null) setHeaders(ctx, headers);
    }
    return next();
  };
  authMiddlewares.add(middleware);
  return middleware;
}

function scopeGuard(scopes: readonly unknown[], mode: 'all' | 'any'): Middleware {
  const check = createScopeCheck(scopes, mode, 'koa');
  return async function tillRequireScopes(ctx: Context, next: Next): Promise<void> {
    const refusal = check(ctx.req, () => ctx.ip);
    if (refusal === null) return next();
    // A request no apiKeyAuth() saw: on a router that skips it by case, say so (an error, still no pass).
    if (refusal.failure.code === 'MISSING') checkRouter(ctx);
    if (refusal.settled !== null) await refusal.settled;
    const respond = refusal.respond as Responder | null;
    // Without apiKeyAuth() before it there is no key (and no custom handler): refuse with the default.
    return respond !== null ? respond(refusal.failure, ctx) : sendProblem(ctx, problemResponse(refusal.failure));
  };
}

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): Middleware {
  return scopeGuard(scopes, 'all');
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): Middleware {
  return scopeGuard(scopes, 'any');
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
  const onFailure = checkOnFailure(options);
  const guard = createRateLimitGuard(options, 'koa', ['onFailure']);
  return async function tillRateLimit(ctx: Context, next: Next): Promise<void> {
    let verdict = guard.check(ctx.req, ctx, ipOf);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict === null) return next();
    if (verdict.ok) {
      setHeaders(ctx, verdict.headers);
      return next();
    }
    return refuse(onFailure, verdict.failure, verdict.response, ctx);
  };
}

export type { VerifiedKey, VerifyFailure, ProblemResponse, Usage, LimitState, RateLimitHeaderStyle } from '@till/core';
