// The Express 5 example app: a public health check, and a /v1 API that every route guards with an API key.
import express from 'express';
import { isTillError, isValidKeyId } from '@till/core';
import { apiKeyAuth, requireScopes } from '@till/express';

const PROBLEM = 'application/problem+json';

/** Answers with an RFC 9457 problem, shaped like Till's own (a stable `code` beside the status). */
function problem(res, status, code, title, detail) {
  res
    .status(status)
    .type(PROBLEM)
    .send(JSON.stringify({ type: 'about:blank', title, status, detail, code }));
}

/**
 * Builds the app around a Till instance (from `createTill()`): the app never creates keys itself,
 * so the demo, the tests and a real service can each hand it the Till they have.
 */
export function createApp({ till }) {
  const app = express();
  app.disable('x-powered-by');

  // Reports live in this app's memory: the example is about the keys, not the data.
  const reports = [{ id: 1, title: 'Q1 revenue', createdBy: null }];

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // Everything under /v1 needs a valid key; each route then names the scope it needs.
  const v1 = express.Router();
  // Served to browsers, cors() would go before this: a CORS preflight (OPTIONS) carries no key.
  v1.use(apiKeyAuth({ till }));
  // Bodies are parsed only once the key checks out: an unauthenticated client gets nothing parsed.
  v1.use(express.json({ limit: '16kb' }));

  v1.get('/me', (req, res) => {
    const { id, name, scopes } = req.apiKey;
    res.json({ id, name, scopes });
  });

  v1.get('/reports', requireScopes('reports:read'), (_req, res) => {
    res.json({ reports });
  });

  v1.post('/reports', requireScopes('reports:write'), (req, res) => {
    const title = typeof req.body?.title === 'string' && req.body.title.trim() ? req.body.title.trim().slice(0, 200) : 'Untitled';
    // The key's public id is safe to keep with the data it wrote; the key itself never is.
    const report = { id: reports.length + 1, title, createdBy: req.apiKey.id };
    reports.push(report);
    res.status(201).json(report);
  });

  v1.delete('/keys/:id', requireScopes('keys:admin'), async (req, res) => {
    const { id } = req.params;
    // Something that cannot be a key id is as unknown as an id nobody issued.
    if (!isValidKeyId(id)) return problem(res, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
    const given = req.body?.reason ?? req.query.reason;
    const reason = typeof given === 'string' && given.trim() ? given : `revoked by key ${req.apiKey.id}`;
    try {
      // The audit trail names the key that made the change (its public id), whatever reason the caller wrote.
      await till.keys.revoke(id, { reason, actor: `key:${req.apiKey.id}` });
    } catch (error) {
      if (isTillError(error, 'KEY_NOT_FOUND')) return problem(res, 404, 'KEY_NOT_FOUND', 'Key not found', 'No API key has this id.');
      if (isTillError(error, 'INVALID_ARGUMENT'))
        return problem(res, 400, 'INVALID_ARGUMENT', 'Bad request', 'reason must be at most 200 characters without control characters.');
      throw error;
    }
    res.status(204).end();
  });

  app.use('/v1', v1);

  app.use((_req, res) => {
    problem(res, 404, 'NOT_FOUND', 'Not found', 'No route matches this method and path.');
  });

  // Express 5 hands rejected promises of async handlers here too.
  app.use((error, _req, res, _next) => {
    const status = Number.isInteger(error?.status) && error.status >= 400 && error.status < 500 ? error.status : 500;
    if (status === 500) console.error('[example] unexpected error:', error instanceof Error ? error.message : error);
    problem(
      res,
      status,
      status === 500 ? 'INTERNAL' : 'BAD_REQUEST',
      status === 500 ? 'Internal error' : 'Bad request',
      status === 500 ? 'Something went wrong.' : 'The request could not be read.',
    );
  });

  return app;
}
