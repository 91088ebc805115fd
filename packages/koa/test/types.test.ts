// The Koa adapter's public types: what middlewares see, and misuse the compiler refuses. Checked by `pnpm typecheck`.
import type { Context, Middleware } from 'koa';
import { describe, expectTypeOf, it } from 'vitest';
import type { Till, VerifiedKey, VerifyFailure } from '@till/core';
import type { ProblemResponse } from '@till/core/http';
import * as tillKoa from '@till/koa';

// Declared, never called: the calls below only need to compile (or not).
declare const till: Till;

describe('@till/koa types', () => {
  it('ctx.state.apiKey is VerifiedKey | undefined in a middleware', () => {
    const middleware: Middleware = (ctx) => {
      expectTypeOf(ctx.state.apiKey).toEqualTypeOf<VerifiedKey | undefined>();
    };
    expectTypeOf(middleware).toBeFunction();
  });

  it('the middlewares are Koa middlewares and onFailure gets the failure and the default response', () => {
    expectTypeOf(tillKoa.apiKeyAuth).returns.toEqualTypeOf<Middleware>();
    expectTypeOf(tillKoa.requireScopes).returns.toEqualTypeOf<Middleware>();
    expectTypeOf(tillKoa.requireAnyScope).returns.toEqualTypeOf<Middleware>();
    expectTypeOf<Parameters<tillKoa.FailureHandler>>().toEqualTypeOf<[VerifyFailure, Context, ProblemResponse]>();
    expectTypeOf(tillKoa.sendProblem).parameters.toEqualTypeOf<[Context, ProblemResponse]>();
  });

  it('refuses misuse at compile time', () => {
    const misuse = (ctx: Context) => {
      // @ts-expect-error scopes is a list, not a string
      tillKoa.apiKeyAuth({ till, scopes: 'users:read' });
      // @ts-expect-error an unknown option (a typo) does not compile
      tillKoa.apiKeyAuth({ till, realms: 'api' });
      // @ts-expect-error onFailure must be a function
      tillKoa.apiKeyAuth({ till, onFailure: 418 });
      // @ts-expect-error scopes are strings
      tillKoa.requireAnyScope(['users:read']);
      // @ts-expect-error a verified key never carries the hash
      void ctx.state.apiKey?.hash;
    };
    expectTypeOf(misuse).toBeFunction();
  });
});
