// @till/console/koa: the console as Koa middleware, `app.use(tillConsole({ till, prefix: '/console' }))`.
import type { Context, Middleware, Next } from 'koa';
import { createConsole, type ConsoleOptions } from './console.js';
import { redirectToSlash } from './respond.js';

export interface KoaConsoleOptions extends ConsoleOptions {
  /** The path the console answers under. Default `/console`. */
  prefix?: string;
}

/**
 * The console under `prefix`; other requests go on down the middleware chain. The console writes
 * Node's response itself (`ctx.respond = false`). A body koa-bodyparser already read is taken as read.
 */
export function tillConsole(options: KoaConsoleOptions): Middleware {
  const { prefix: given, ...rest } = options ?? ({} as KoaConsoleOptions);
  const prefix = (given ?? '/console').replace(/\/+$/, '');
  if (!/^(?:\/[\w.~-]+)*$/.test(prefix)) throw new TypeError('[till] [console] prefix must be a path like /console');
  const console = createConsole(rest);
  return async (ctx: Context, next: Next): Promise<void> => {
    const path = ctx.path;
    if (path !== prefix && !path.startsWith(`${prefix}/`)) return next();
    ctx.respond = false;
    if (path === prefix && prefix !== '' && ctx.method === 'GET') return redirectToSlash(ctx.res, path, ctx.search);
    const url = ctx.url.slice(prefix.length) || '/';
    const parsed = (ctx.request as { body?: unknown }).body;
    const body = ctx.req.readableEnded && parsed !== undefined ? { parsed } : undefined;
    await console.handle(ctx.req, ctx.res, url.startsWith('/') ? url : `/${url}`, body, ctx.ip);
  };
}

export type { ConsoleOptions } from './console.js';
