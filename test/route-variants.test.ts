// Guarded paths written another way (case, `//`, `%2F`, `%61`, `;`) never reach a handler without a valid
// key: on Express, Koa and Fastify apps with routers as people write them, and on the example apps.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import Koa from 'koa';
import type { Middleware } from 'koa';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTill, type Till } from '@till/core';
import * as tillExpress from '@till/express';
import * as tillKoa from '@till/koa';
import { createApp as createExpressApp } from '../examples/express/app.mjs';
import { createApp as createKoaApp } from '../examples/koa/app.mjs';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import * as tillFastify from '@till/fastify';
import { createApp as createFastifyApp } from '../examples/fastify/app.mjs';

// @koa/router is a dependency of the Koa example, not of the repository: load the example's copy.
const requireFromKoaExample = createRequire(new URL('../examples/koa/package.json', import.meta.url));
const Router = requireFromKoaExample('@koa/router').Router as new (
  options?: Record<string, unknown>,
) => {
  use(...middleware: unknown[]): unknown;
  get(path: string, ...middleware: Middleware[]): unknown;
  delete(path: string, ...middleware: Middleware[]): unknown;
  routes(): Middleware;
  allowedMethods(): Middleware;
};

/** Ways to write `path` that a router might still match: case, doubled slashes, escapes, `;` parameters. */
function variants(path: string): string[] {
  const segments = path.split('/').slice(1);
  const out = new Set<string>([
    path.toUpperCase(),
    '/' + segments.map((s) => s.charAt(0).toUpperCase() + s.slice(1)).join('/'),
    '/' + segments[0]!.toUpperCase() + '/' + segments.slice(1).join('/'),
    '/' + segments[0] + '/' + segments.slice(1).join('/').toUpperCase(),
    '/' + path,
    path.replace('/', '//').replace(/\/([^/]+)$/, '//$1'),
    '/' + segments[0] + '//' + segments.slice(1).join('/'),
    path + '/',
    path.toUpperCase() + '/',
    '/' + segments[0] + '%2F' + segments.slice(1).join('/'),
    '/' + segments[0] + '%2f' + segments.slice(1).join('%2F'),
    '/%2F' + segments.join('/'),
    // Each segment's first letter percent-encoded (%61 is "a").
    '/' + segments.map((s) => `%${s.charCodeAt(0).toString(16)}${s.slice(1)}`).join('/'),
    '/' + segments.map((s) => `%${s.charCodeAt(0).toString(16).toUpperCase()}${s.slice(1)}`).join('/'),
    '/' + segments[0] + ';x/' + segments.slice(1).join('/'),
    path + ';',
    path + ';x=1',
    '/' + segments[0]!.toUpperCase() + ';/' + segments.slice(1).join('/'),
    path + '%3B',
    path + '.json',
    path + '?',
    '/.' + path,
    '/' + segments[0] + '/./' + segments.slice(1).join('/'),
  ]);
  out.delete(path);
  return [...out];
}

const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

describe('guarded paths written another way', () => {
  let till: Till;
  let key: string;
  /** Paths a handler ran for without a verified key: must stay empty. */
  let reachedWithoutKey: string[];

  beforeEach(async () => {
    till = createTill();
    key = (await till.keys.create({ name: 'billing', scopes: ['billing:read', 'keys:admin'] })).key;
    reachedWithoutKey = [];
  });

  afterEach(async () => {
    await till.close();
  });

  /**
   * Requests every variant without a key: each is refused, and no handler runs. The example apps answer
   * a handler's error with 500 (what `GET /V1/me` got when its handler ran without a key), so for them
   * a refusal is a 4xx.
   */
  async function probe(server: Parameters<typeof request>[0], path: string, method: 'get' | 'delete' = 'get', example = false): Promise<void> {
    for (const variant of variants(path)) {
      const res = await request(server)[method](variant);
      expect(res.status, `${method.toUpperCase()} ${variant}`).toBeGreaterThanOrEqual(400);
      if (example) expect([400, 401, 404, 405], `${method.toUpperCase()} ${variant}`).toContain(res.status);
    }
    expect(reachedWithoutKey).toEqual([]);
  }

  /** The example apps' guarded routes, the revocation route included: no variant revokes anything. */
  async function probeExample(app: Parameters<typeof request>[0]): Promise<void> {
    await probe(app, '/v1/me', 'get', true);
    await probe(app, '/v1/reports', 'get', true);
    const { record } = await till.keys.create({ name: 'victim', scopes: [] });
    await probe(app, `/v1/keys/${record.id}`, 'delete', true);
    expect((await till.keys.get(record.id))?.revokedAt).toBeNull();
  }

  describe('Express', () => {
    const { apiKeyAuth, requireScopes } = tillExpress;
    const handler = (req: express.Request, res: express.Response) => {
      if (req.apiKey === undefined) reachedWithoutKey.push(req.originalUrl);
      res.json({ invoices: [1] });
    };

    it('router.use(apiKeyAuth(), requireScopes()) mounted under a prefix', async () => {
      const app = express();
      const api = express.Router();
      api.use(apiKeyAuth({ till }), requireScopes('billing:read'));
      api.get('/invoices', handler);
      app.use('/api', api);
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('app.use(prefix, apiKeyAuth(), router) and a case-sensitive router', async () => {
      const app = express();
      const api = express.Router({ caseSensitive: true, strict: true });
      api.get('/invoices', requireScopes('billing:read'), handler);
      app.use('/api', apiKeyAuth({ till }), api);
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('the example app', async () => {
      await probeExample(createExpressApp({ till }));
    });
  });

  describe('Koa', () => {
    const { apiKeyAuth, requireScopes } = tillKoa;
    const handler: Middleware = (ctx) => {
      if (ctx.state.apiKey === undefined) reachedWithoutKey.push(ctx.url);
      ctx.body = { invoices: [1] };
    };
    const serve = (...middleware: Middleware[]) => {
      const app = new Koa();
      for (const m of middleware) app.use(m);
      return app.callback();
    };

    it('a prefixed router with { sensitive: true } and router.use(apiKeyAuth(), requireScopes())', async () => {
      const api = new Router({ prefix: '/api', sensitive: true });
      api.use(apiKeyAuth({ till }), requireScopes('billing:read'));
      api.get('/invoices', handler);
      const app = serve(api.routes(), api.allowedMethods());
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('apiKeyAuth() on the app, before a prefixed router', async () => {
      const api = new Router({ prefix: '/api' });
      api.get('/invoices', requireScopes('billing:read'), handler);
      const app = serve(apiKeyAuth({ till }), api.routes(), api.allowedMethods());
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('apiKeyAuth() on each route of a prefixed router', async () => {
      const api = new Router({ prefix: '/api' });
      api.get('/invoices', apiKeyAuth({ till }), requireScopes('billing:read'), handler);
      const app = serve(api.routes(), api.allowedMethods());
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('a nested router mounted under a prefix, with { sensitive: true }', async () => {
      const parent = new Router({ sensitive: true });
      const api = new Router({ sensitive: true });
      api.use(apiKeyAuth({ till }));
      api.get('/invoices', handler);
      parent.use('/api', api.routes());
      const app = serve(parent.routes());
      await probe(app, '/api/invoices');
      expect((await request(app).get('/api/invoices').set(bearer(key))).status).toBe(200);
    });

    it('the example app', async () => {
      await probeExample(createKoaApp({ till }).callback());
    });

    describe('a prefixed router without { sensitive: true }, where router.use() is skipped by case', () => {
      /** A Koa app serving `api` that answers an error with 500 and keeps its message. */
      const catching = (api: InstanceType<typeof Router>) => {
        const errors: string[] = [];
        const app = new Koa();
        app.on('error', () => {});
        app.use(async (ctx, next) => {
          try {
            await next();
          } catch (error) {
            errors.push((error as Error).message);
            ctx.status = 500;
          }
        });
        app.use(api.routes());
        return { app, errors };
      };

      it('is refused with an error at its first authenticated request, never served', async () => {
        const api = new Router({ prefix: '/api' });
        api.use(apiKeyAuth({ till }));
        api.get('/invoices', handler);
        const { app, errors } = catching(api);
        const res = await request(app.callback()).get('/api/invoices').set(bearer(key));
        expect(res.status).toBe(500);
        expect(errors[0]).toMatch(/sensitive: true/);
      });

      it('a route guard that a key-less request reaches there refuses it and names the cause', async () => {
        const api = new Router({ prefix: '/api' });
        api.use(apiKeyAuth({ till }));
        api.get('/invoices', requireScopes('billing:read'), handler);
        const { app, errors } = catching(api);
        const res = await request(app.callback()).get('/API/invoices');
        expect(res.status).toBe(500);
        expect(errors[0]).toMatch(/router\.use\(\)/);
        expect(reachedWithoutKey).toEqual([]);
      });
    });
  });
  describe('Fastify', () => {
    const { apiKeyAuth, requireScopes } = tillFastify;
    const handler = async (request: FastifyRequest) => {
      if (request.apiKey === undefined) reachedWithoutKey.push(request.url);
      return { invoices: [1] };
    };
    /** The app as a request listener: Fastify's own server handler, once the app is ready. */
    const serve = (app: FastifyInstance) => {
      const ready = app.ready();
      return (req: IncomingMessage, res: ServerResponse) => void ready.then(() => app.routing(req, res));
    };
    // Routers that match more ways of writing a path: any case, a trailing slash, doubled slashes.
    const lenient: FastifyServerOptions = { routerOptions: { caseSensitive: false, ignoreTrailingSlash: true, ignoreDuplicateSlashes: true } };

    for (const [name, options] of [
      ['the default router', {}],
      ['a router that ignores case, trailing and doubled slashes', lenient],
    ] as const) {
      it(`an onRequest hook on the app, a scope on the route: ${name}`, async () => {
        const app = Fastify(options);
        app.addHook('onRequest', apiKeyAuth({ till }));
        app.get('/api/invoices', { preHandler: requireScopes('billing:read') }, handler);
        await probe(serve(app), '/api/invoices');
        expect((await request(serve(app)).get('/api/invoices').set(bearer(key))).status).toBe(200);
      });

      it(`the hook in a plugin under a prefix: ${name}`, async () => {
        const app = Fastify(options);
        app.register(
          async (api) => {
            api.addHook('onRequest', apiKeyAuth({ till }));
            api.addHook('preHandler', requireScopes('billing:read'));
            api.get('/invoices', handler);
          },
          { prefix: '/api' },
        );
        const server = serve(app);
        await probe(server, '/api/invoices');
        expect((await request(server).get('/api/invoices').set(bearer(key))).status).toBe(200);
      });

      it(`the hooks on the route itself, with HEAD and DELETE: ${name}`, async () => {
        const app = Fastify(options);
        app.get('/api/invoices', { onRequest: apiKeyAuth({ till }), preHandler: requireScopes('billing:read') }, handler);
        app.delete('/api/invoices/:id', { onRequest: [apiKeyAuth({ till }), requireScopes('keys:admin')] }, handler);
        const server = serve(app);
        await probe(server, '/api/invoices');
        await probe(server, '/api/invoices/7', 'delete');
        for (const variant of ['/api/invoices', ...variants('/api/invoices')]) {
          expect((await request(server).head(variant)).status, `HEAD ${variant}`).toBeGreaterThanOrEqual(400);
        }
        expect(reachedWithoutKey).toEqual([]);
        expect((await request(server).delete('/api/invoices/7').set(bearer(key))).status).toBe(200);
      });
    }

    it('the example app', async () => {
      await probeExample(serve(createFastifyApp({ till })));
    });
  });
});
