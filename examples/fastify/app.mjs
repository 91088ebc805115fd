// The Fastify 5 example app: a public health check, and a /v1 API that every route guards with an API key.
import Fastify from 'fastify';
import { isTillError, isValidKeyId } from '@till/core';
import { apiKeyAuth, requireScopes } from '@till/fastify';

const PROBLEM = 'application/problem+json';

/** Answers with an RFC 9457 problem, shaped like Till's own (a stable `code` beside the status). */
function problem(reply, status, code, title, detail) {
  return reply
    .code(status)
    .type(PROBLEM)
    .send(JSON.stringify({ type: 'about:blank', title, status, detail, code }));
}

/**
 * Builds the app around a Till instance (from `createTill()`): the app never creates keys itself,
 * so the demo, the tests and a real service can each hand it the Till they have.
 * Serve it with `app.listen({ port })`, or `app.routing` as a Node request handler once `app.ready()`.
 */
export function createApp({ till }) {
  // Bodies past 16 kB are refused unread.
  const app = Fastify({ bodyLimit: 16 * 1024 });

  // Reports live in this app's memory: the example is about the keys, not the data.
  const reports = [{ id: 1, title: 'Q1 revenue', createdBy: null }];

  app.get('/health', async () => ({ status: 'ok' }));

  // Everything under /v1 needs a valid key; each route then names the scope it needs. The hook is
  // added in this plugin, so it guards this plugin's routes (and its not-found answers) only.
  app.register(
    async (v1) => {
      // onRequest runs before Fastify reads the body: an unauthenticated client gets nothing parsed.
      // Served to browsers, @fastify/cors would go before this: a CORS preflight (OPTIONS) carries no key.
      v1.addHook('onRequest', apiKeyAuth({ till }));

      v1.get('/me', async (request) => {
        const { id, name, scopes } = request.apiKey;
        return { id, name, scopes };
      });

      v1.get('/reports', { preHandler: requireScopes('reports:read') }, async () => ({ reports }));

      v1.post('/reports', { preHandler: requireScopes('reports:write') }, async (request, reply) => {
        const given = request.body?.title;
        const title = typeof given === 'string' && given.trim() ? given.trim().slice(0, 200) : 'Untitled';
        // The key's public id is safe to keep with the data it wrote; the key itself never is.
        const report = { id: reports.length + 1, title, createdBy: request.apiKey.id };
        reports.push(report);
        return reply.code(201).send(report);
      });

      v1.delete('/keys/:id', { preHandler: requireScopes('keys:admin') }, async (request, reply) => {
        const { id } = request.params;
        // Something that cannot be a key id is as unknown as an id nobody issued.
        if (!isValidKeyId(id)) return problem(reply, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
        const given = request.body?.reason ?? request.query.reason;
        const reason = typeof given === 'string' && given.trim() ? given : `revoked by key ${request.apiKey.id}`;
        try {
          // The audit trail names the key that made the change (its public id), whatever reason the caller wrote.
          await till.keys.revoke(id, { reason, actor: `key:${request.apiKey.id}` });
        } catch (error) {
          if (isTillError(error, 'KEY_NOT_FOUND')) return problem(reply, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
          if (isTillError(error, 'INVALID_ARGUMENT'))
            return problem(reply, 400, 'INVALID_ARGUMENT', 'Bad request', 'reason must be at most 200 characters without control characters.');
          throw error;
        }
        return reply.code(204).send();
      });

      // An unknown path under /v1 is answered here, after the key check, like the routes.
      v1.setNotFoundHandler((_request, reply) => problem(reply, 404, 'NOT_FOUND', 'Not found', 'No route matches this method and path.'));
    },
    { prefix: '/v1' },
  );

  app.setNotFoundHandler((_request, reply) => problem(reply, 404, 'NOT_FOUND', 'Not found', 'No route matches this method and path.'));

  // Errors thrown by handlers, and what Fastify refuses itself (a body it cannot parse, or too large).
  app.setErrorHandler((error, _request, reply) => {
    const status = Number.isInteger(error?.statusCode) && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) console.error('[example] unexpected error:', error instanceof Error ? error.message : error);
    return problem(
      reply,
      status,
      status === 500 ? 'INTERNAL' : 'BAD_REQUEST',
      status === 500 ? 'Internal error' : 'Bad request',
      status === 500 ? 'Something went wrong.' : 'The request could not be read.',
    );
  });

  return app;
}
