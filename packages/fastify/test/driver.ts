// Fastify's side of the shared adapter suites (@till/testkit/adapter-suite, fuzz-suite.ts): how an app is built.
import { createServer, type RequestListener } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { apiKeyAuth, rateLimit, requireAnyScope, requireScopes, sendProblem, type FailureHandler, type TillHook } from '@till/fastify';
import type { AdapterDriver } from '@till/testkit/adapter-suite';

/**
 * Where a route's chain of hooks goes: all in `onRequest` (before the body is read), all in
 * `preHandler`, or split, the first half in `onRequest` and the rest in `preHandler`.
 */
export type Placement = 'onRequest' | 'preHandler' | 'split';

export const PLACEMENTS: readonly Placement[] = ['onRequest', 'preHandler', 'split'];

/** The route options that put `chain` where `placement` says. */
export function placed(chain: readonly TillHook[], placement: Placement): { onRequest: TillHook[]; preHandler: TillHook[] } {
  const at = placement === 'onRequest' ? chain.length : placement === 'preHandler' ? 0 : Math.ceil(chain.length / 2);
  return { onRequest: chain.slice(0, at), preHandler: chain.slice(at) };
}

/**
 * A Fastify app as a Node request listener, as supertest takes it: requests wait until the app is
 * ready, then go through the handler Fastify would give its own server.
 */
export function listenerOf(build: (app: FastifyInstance) => void, options: FastifyServerOptions = {}): RequestListener {
  let handle: RequestListener | undefined;
  const app = Fastify({
    ...options,
    serverFactory: (handler) => {
      handle = handler;
      return createServer();
    },
  });
  build(app);
  const ready = app.ready();
  return (req, res) => {
    ready.then(
      () => handle!(req, res),
      (error: Error) => res.writeHead(500).end(error.message),
    );
  };
}

/** The driver for Fastify, with each route's hooks placed as `placement` says. */
export function fastifyDriver(placement: Placement): AdapterDriver<TillHook, FailureHandler> {
  return {
    keyAt: 'request.apiKey',
    apiKeyAuth,
    requireScopes,
    requireAnyScope,
    rateLimit: rateLimit as AdapterDriver<TillHook, FailureHandler>['rateLimit'],
    app(routes, answer, settings = {}) {
      return listenerOf(
        (app) => {
          for (const [path, chain] of Object.entries(routes)) {
            app.get(path, placed(chain, placement), async (request) => answer(request.apiKey));
          }
          app.setErrorHandler((error: Error, _request, reply) => reply.code(500).send({ handled: error.message }));
        },
        { trustProxy: settings.trustProxy === true },
      );
    },
    problem: (response) => async (_request, reply) => {
      await sendProblem(reply, response);
    },
    passingOnFailure: () => () => {},
    setKey: (key) => async (request) => {
      request.apiKey = key;
    },
    onFailure: (answer) => (failure, _request, reply, response) => {
      const { status, body } = answer(failure, response);
      return reply.code(status).send(body);
    },
  };
}
