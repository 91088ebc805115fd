// Koa's side of the shared adapter suites (tools/testkit/src/adapter-suite.ts, fuzz-suite.ts): how an app is built.
import type Koa from 'koa';
import type { Middleware } from 'koa';
import { apiKeyAuth, rateLimit, requireAnyScope, requireScopes, sendProblem, type FailureHandler } from '@till/koa';
import type { AdapterDriver } from '@till/testkit/adapter-suite';

/** Runs `middlewares` in order, then `next` (a tiny koa-compose). */
export function chain(middlewares: Middleware[]): Middleware {
  return (ctx, next) => {
    const run = (i: number): Promise<void> => (i === middlewares.length ? next() : Promise.resolve(middlewares[i]!(ctx, () => run(i + 1))));
    return run(0);
  };
}

/** The driver for one Koa version: `Framework` is the Koa class of that version. */
export function koaDriver(Framework: typeof Koa): AdapterDriver<Middleware, FailureHandler> {
  return {
    keyAt: 'ctx.state.apiKey',
    apiKeyAuth,
    requireScopes,
    requireAnyScope,
    rateLimit: rateLimit as AdapterDriver<Middleware, FailureHandler>['rateLimit'],
    app(routes, answer, settings = {}) {
      const app = new Framework();
      if (settings.trustProxy) app.proxy = true;
      // Thrown errors become a 500 the tests can inspect.
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (error) {
          ctx.status = 500;
          ctx.body = { handled: (error as Error).message };
        }
      });
      // A router in three lines: exact paths, GET only, 404 otherwise.
      const ok: Middleware = (ctx) => {
        ctx.body = answer(ctx.state.apiKey);
      };
      app.use((ctx, next) => {
        const route = routes[ctx.path];
        return route && ctx.method === 'GET' ? chain([...route, ok])(ctx, next) : next();
      });
      return app.callback();
    },
    problem: (response) => (ctx) => sendProblem(ctx, response),
    passingOnFailure: () => () => {},
    setKey: (key) => (ctx, next) => {
      ctx.state.apiKey = key;
      return next();
    },
    onFailure: (answer) => (failure, ctx, response) => {
      const { status, body } = answer(failure, response);
      ctx.status = status;
      ctx.body = body;
    },
  };
}
