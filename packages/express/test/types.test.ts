// The public types of both adapters: what handlers see, and misuse the compiler refuses. Checked by `pnpm typecheck`.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Context, Middleware } from 'koa';
import { describe, expectTypeOf, it } from 'vitest';
import type { Till, VerifiedKey, VerifyFailure } from '@till/core';
import type { ProblemResponse } from '@till/core/http';
import * as tillExpress from '@till/express';
import * as tillKoa from '@till/koa';

// Declared, never called: the calls below only need to compile (or not).
declare const till: Till;

describe('@till/express types', () => {
  it('req.apiKey is VerifiedKey | undefined in a handler', () => {
    const handler: RequestHandler = (req, res) => {
      expectTypeOf(req.apiKey).toEqualTypeOf<VerifiedKey | undefined>();
      if (req.apiKey) expectTypeOf(req.apiKey.scopes).toEqualTypeOf<readonly string[]>();
      res.end();
    };
    expectTypeOf(handler).toBeFunction();
    expectTypeOf<Request['apiKey']>().toEqualTypeOf<VerifiedKey | undefined>();
  });

  it('the middlewares are RequestHandlers and onFailure gets the failure and the default response', () => {
    expectTypeOf(tillExpress.apiKeyAuth).returns.toEqualTypeOf<RequestHandler>();
    expectTypeOf(tillExpress.requireScopes).returns.toEqualTypeOf<RequestHandler>();
    expectTypeOf(tillExpress.requireAnyScope).returns.toEqualTypeOf<RequestHandler>();
    expectTypeOf<Parameters<tillExpress.FailureHandler>>().toEqualTypeOf<[VerifyFailure, Request, Response, NextFunction, ProblemResponse]>();
    expectTypeOf(tillExpress.sendProblem).parameters.toEqualTypeOf<[Response, ProblemResponse]>();
  });

  it('refuses misuse at compile time', () => {
    const misuse = (req: Request) => {
      // @ts-expect-error scopes is a list, not a string
      tillExpress.apiKeyAuth({ till, scopes: 'users:read' });
      // @ts-expect-error an unknown option (a typo) does not compile
      tillExpress.apiKeyAuth({ till, scope: ['users:read'] });
      // @ts-expect-error till must be a Till
      tillExpress.apiKeyAuth({ till: {} });
      // @ts-expect-error onFailure must be a function
      tillExpress.apiKeyAuth({ till, onFailure: 'deny' });
      // @ts-expect-error sources are objects naming a header
      tillExpress.apiKeyAuth({ till, sources: ['authorization'] });
      // @ts-expect-error scopes are strings
      tillExpress.requireScopes(5);
      // @ts-expect-error the key may be absent: narrow first
      void req.apiKey.id;
      // @ts-expect-error a verified key never carries the hash
      void req.apiKey?.hash;
      // @ts-expect-error nor the secret
      void req.apiKey?.secret;
      // @ts-expect-error and it is read-only
      if (req.apiKey) req.apiKey.id = 'another';
    };
    expectTypeOf(misuse).toBeFunction();
  });
});

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
