// The public types of @till/fastify: what handlers see, and misuse the compiler refuses. Checked by `pnpm typecheck`.
import Fastify, { type FastifyReply, type FastifyRequest, type onRequestAsyncHookHandler, type preHandlerAsyncHookHandler } from 'fastify';
import { describe, expectTypeOf, it } from 'vitest';
import type { Till, Usage, VerifiedKey, VerifyFailure } from '@till/core';
import type { ProblemResponse } from '@till/fastify';
import * as tillFastify from '@till/fastify';

// Declared, never called: the calls below only need to compile (or not).
declare const till: Till;

describe('@till/fastify types', () => {
  it('request.apiKey is VerifiedKey | undefined in a handler, and apiKeyUsage is Usage | undefined', () => {
    const app = Fastify();
    app.get('/', async (request) => {
      expectTypeOf(request.apiKey).toEqualTypeOf<VerifiedKey | undefined>();
      expectTypeOf(request.apiKeyUsage).toEqualTypeOf<Usage | undefined>();
      if (request.apiKey) expectTypeOf(request.apiKey.scopes).toEqualTypeOf<readonly string[]>();
      return null;
    });
    expectTypeOf<FastifyRequest['apiKey']>().toEqualTypeOf<VerifiedKey | undefined>();
  });

  it('every function returns an async hook that Fastify takes as onRequest and as preHandler', () => {
    expectTypeOf(tillFastify.apiKeyAuth).returns.toEqualTypeOf<tillFastify.TillHook>();
    expectTypeOf(tillFastify.requireScopes).returns.toEqualTypeOf<tillFastify.TillHook>();
    expectTypeOf(tillFastify.requireAnyScope).returns.toEqualTypeOf<tillFastify.TillHook>();
    expectTypeOf(tillFastify.rateLimit).returns.toEqualTypeOf<tillFastify.TillHook>();
    expectTypeOf<tillFastify.TillHook>().toEqualTypeOf<(request: FastifyRequest, reply: FastifyReply) => Promise<void>>();
    expectTypeOf<tillFastify.TillHook>().toMatchTypeOf<onRequestAsyncHookHandler>();
    expectTypeOf<tillFastify.TillHook>().toMatchTypeOf<preHandlerAsyncHookHandler>();
    const mount = () => {
      const app = Fastify();
      app.addHook('onRequest', tillFastify.apiKeyAuth({ till }));
      app.addHook('preHandler', tillFastify.requireScopes('a:read'));
      app.get(
        '/',
        {
          onRequest: tillFastify.apiKeyAuth({ till }),
          preHandler: [tillFastify.requireAnyScope('a:read'), tillFastify.rateLimit({ name: 'n', limit: 1, window: '1s' })],
        },
        async () => null,
      );
    };
    expectTypeOf(mount).toBeFunction();
  });

  it('onFailure gets the failure, the request, the reply and the default response', () => {
    expectTypeOf<Parameters<tillFastify.FailureHandler>>().toEqualTypeOf<[VerifyFailure, FastifyRequest, FastifyReply, ProblemResponse]>();
    expectTypeOf(tillFastify.sendProblem).parameters.toEqualTypeOf<[FastifyReply, ProblemResponse]>();
    const handlers = () => {
      tillFastify.apiKeyAuth({ till, onFailure: (_failure, _request, reply, response) => tillFastify.sendProblem(reply, response) });
      tillFastify.apiKeyAuth({ till, onFailure: async (_failure, _request, reply) => reply.code(401).send({ no: true }) });
    };
    expectTypeOf(handlers).toBeFunction();
  });

  it('refuses misuse at compile time', () => {
    const misuse = (request: FastifyRequest) => {
      // @ts-expect-error scopes is a list, not a string
      tillFastify.apiKeyAuth({ till, scopes: 'users:read' });
      // @ts-expect-error an unknown option (a typo) does not compile
      tillFastify.apiKeyAuth({ till, scope: ['users:read'] });
      // @ts-expect-error till must be a Till
      tillFastify.apiKeyAuth({ till: {} });
      // @ts-expect-error onFailure must be a function
      tillFastify.apiKeyAuth({ till, onFailure: 'deny' });
      // @ts-expect-error scopes are strings
      tillFastify.requireScopes(5);
      // @ts-expect-error rateLimit needs a name, a limit and a window
      tillFastify.rateLimit({ limit: 1 });
      // @ts-expect-error the key may be absent: narrow first
      void request.apiKey.id;
      // @ts-expect-error a verified key never carries the hash
      void request.apiKey?.hash;
      // @ts-expect-error and it is read-only
      if (request.apiKey) request.apiKey.id = 'another';
    };
    expectTypeOf(misuse).toBeFunction();
  });
});
