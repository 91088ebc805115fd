// @koa/router matches use() middleware and routes with different case rules: a check that refuses such a router.
import type { TillError } from '@till/core';
import { tillError } from '@till/core/http';
import type { Context } from 'koa';

/** Every `apiKeyAuth()` middleware made here: how a router's stack shows where authentication is mounted. */
export const authMiddlewares = new WeakSet<object>();

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
export function checkRouter(ctx: Context): void {
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
        verdict = tillError(
          'INVALID_OPTIONS',
          'koa',
          `apiKeyAuth() is mounted with router.use() under a path (${String(layer.path).slice(0, 60)}) on an @koa/router Router whose routes match paths in any case while its use() middleware matches only the exact case: a request that changes the path's case would reach the routes without authentication. Create the router with { sensitive: true }, or mount apiKeyAuth() on the app or on each route`,
        );
        break;
      }
    }
    routerVerdicts.set(router, verdict);
  }
  if (verdict !== null) throw verdict;
}
