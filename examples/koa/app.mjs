// The Koa 3 example app: a public health check, and a /v1 API that every route guards with an API key.
import Koa from 'koa';
import Router from '@koa/router';
import { bodyParser } from '@koa/bodyparser';
import { isTillError, isValidKeyId } from '@till/core';
import { apiKeyAuth, requireScopes } from '@till/koa';

const PROBLEM = 'application/problem+json';

/** Sets an RFC 9457 problem, shaped like Till's own (a stable `code` beside the status). */
function problem(ctx, status, code, title, detail) {
  ctx.status = status;
  ctx.type = PROBLEM;
  ctx.body = JSON.stringify({ type: 'about:blank', title, status, detail, code });
}

/**
 * Builds the app around a Till instance (from `createTill()`): the app never creates keys itself,
 * so the demo, the tests and a real service can each hand it the Till they have.
 * Serve it with `app.listen(port)`, or `app.callback()` for supertest.
 */
export function createApp({ till }) {
  const app = new Koa();

  // First in the chain, so that errors thrown anywhere become problem responses, not HTML or stack traces.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      const status = Number.isInteger(error?.status) && error.status >= 400 && error.status < 500 ? error.status : 500;
      if (status === 500) console.error('[example] unexpected error:', error instanceof Error ? error.message : error);
      problem(
        ctx,
        status,
        status === 500 ? 'INTERNAL' : 'BAD_REQUEST',
        status === 500 ? 'Internal error' : 'Bad request',
        status === 500 ? 'Something went wrong.' : 'The request could not be read.',
      );
    }
  });
  // Koa answers 404 with a plain-text body; make it a problem like every other error here.
  app.use(async (ctx, next) => {
    await next();
    if (ctx.status === 404 && ctx.body == null) problem(ctx, 404, 'NOT_FOUND', 'Not found', 'No route matches this path.');
  });

  // Reports live in this app's memory: the example is about the keys, not the data.
  const reports = [{ id: 1, title: 'Q1 revenue', createdBy: null }];

  const root = new Router();
  root.get('/health', (ctx) => {
    ctx.body = { status: 'ok' };
  });

  // Everything under /v1 needs a valid key; each route then names the scope it needs.
  // `sensitive: true`: @koa/router matches use() middleware by the exact case of its prefix but
  // routes in any case, so without it `GET /V1/me` would reach the route and skip apiKeyAuth().
  const v1 = new Router({ prefix: '/v1', sensitive: true });
  // Served to browsers, cors() would go before this: a CORS preflight (OPTIONS) carries no key.
  v1.use(apiKeyAuth({ till }));
  // Bodies are parsed only once the key checks out: an unauthenticated client gets nothing parsed.
  // DELETE too: a revocation may carry its reason in the body.
  v1.use(bodyParser({ enableTypes: ['json'], jsonLimit: '16kb', parsedMethods: ['POST', 'PUT', 'PATCH', 'DELETE'] }));

  v1.get('/me', (ctx) => {
    const { id, name, scopes } = ctx.state.apiKey;
    ctx.body = { id, name, scopes };
  });

  v1.get('/reports', requireScopes('reports:read'), (ctx) => {
    ctx.body = { reports };
  });

  v1.post('/reports', requireScopes('reports:write'), (ctx) => {
    const given = ctx.request.body?.title;
    const title = typeof given === 'string' && given.trim() ? given.trim().slice(0, 200) : 'Untitled';
    // The key's public id is safe to keep with the data it wrote; the key itself never is.
    const report = { id: reports.length + 1, title, createdBy: ctx.state.apiKey.id };
    reports.push(report);
    ctx.status = 201;
    ctx.body = report;
  });

  v1.delete('/keys/:id', requireScopes('keys:admin'), async (ctx) => {
    const { id } = ctx.params;
    // Something that cannot be a key id is as unknown as an id nobody issued.
    if (!isValidKeyId(id)) return problem(ctx, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
    const given = ctx.request.body?.reason ?? ctx.query.reason;
    const reason = typeof given === 'string' && given.trim() ? given : `revoked by key ${ctx.state.apiKey.id}`;
    try {
      // The audit trail names the key that made the change (its public id), whatever reason the caller wrote.
      await till.keys.revoke(id, { reason, actor: `key:${ctx.state.apiKey.id}` });
    } catch (error) {
      if (isTillError(error, 'KEY_NOT_FOUND')) return problem(ctx, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
      if (isTillError(error, 'INVALID_ARGUMENT'))
        return problem(ctx, 400, 'INVALID_ARGUMENT', 'Bad request', 'reason must be at most 200 characters without control characters.');
      throw error;
    }
    ctx.status = 204;
  });

  app.use(root.routes());
  app.use(v1.routes());
  app.use(v1.allowedMethods());

  return app;
}
