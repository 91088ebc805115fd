// Property tests: hostile key headers against apiKeyAuth() for Koa, over HTTP and on a context made by the app.
import { createServer, IncomingMessage, ServerResponse, type IncomingHttpHeaders, type Server } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import Koa, { type Middleware } from 'koa';
import koa2 from 'koa2';
import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, MemoryStore, silentLogger, type Till } from '@till/core';
import { apiKeyAuth, requireAnyScope, requireScopes } from '@till/koa';
import { anyRequestHeaders, checkAnswer, expectedOutcome, expectOutcome, quietly, sendableHeaders, stringsIn } from '../../../test/helpers/fuzzing.js';
import { T0 } from '../../../test/helpers/adapter-support.js';

const RUNS = 300;
const PATHS = ['/', '/read', '/admin'] as const;
/** Scopes each path requires: `/admin` refuses the good key with 403. */
const REQUIRED: Record<string, string[] | undefined> = { '/': undefined, '/read': ['users:read'], '/admin': ['admin'] };

let till: Till;
let good: { key: string; id: string };
let revoked: string;

beforeAll(async () => {
  till = createTill({ store: new MemoryStore(), clock: () => T0, logger: silentLogger });
  const created = await till.keys.create({ name: 'fuzz', scopes: ['users:read'] });
  good = { key: created.key, id: created.record.id };
  const other = await till.keys.create({ name: 'revoked', scopes: ['*'] });
  revoked = other.key;
  await till.keys.revoke(other.record.id);
});

/** Runs `middlewares` in order, then `next`. */
function chain(middlewares: Middleware[]): Middleware {
  return (ctx, next) => {
    const run = (i: number): Promise<void> => (i === middlewares.length ? next() : Promise.resolve(middlewares[i]!(ctx, () => run(i + 1))));
    return run(0);
  };
}

/** The routes of every app, as middleware chains. */
function chains(): Record<string, Middleware> {
  const auth = apiKeyAuth({ till });
  return {
    '/': chain([auth]),
    '/read': chain([auth, requireAnyScope('users:read')]),
    '/admin': chain([auth, requireScopes('admin')]),
  };
}

describe.each([
  ['Koa 3', Koa],
  ['Koa 2', koa2],
])('%s', (_name, Framework) => {
  describe('over HTTP', () => {
    let server: Server;
    let url: string;

    beforeAll(async () => {
      const app = new Framework();
      const routes = chains();
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (error) {
          ctx.status = 500;
          ctx.body = { error: (error as Error).name };
        }
      });
      app.use((ctx, next) => {
        const route = routes[ctx.path];
        if (!route) return next();
        return route(ctx, async () => {
          ctx.body = { id: ctx.state.apiKey!.id };
        });
      });
      // One server for all runs: supertest would otherwise start one per request.
      server = createServer(app.callback());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it('answers every sendable header as the design says, with 200, 401 or 403, never echoing it', async () => {
      await fc.assert(
        fc.asyncProperty(sendableHeaders([good.key, revoked]), fc.constantFrom(...PATHS), async (headers, path) => {
          let req = request(url).get(path);
          // A list sends the header once per value.
          for (const [name, value] of headers) req = req.set(name, value as string);
          const res = await req;
          const answer = { status: res.status, body: res.text, headers: res.headers as Record<string, unknown> };
          const code = checkAnswer(answer, headers.flatMap(([, v]) => v), good, REQUIRED[path]);
          expectOutcome(code, expectedOutcome(headers, good.key), path === '/admin');
        }),
        quietly({ good: good.key, revoked }, { numRuns: RUNS }),
      );
    });

    it('accepts the good key however the Bearer scheme is cased and spaced, and nothing one character off', async () => {
      const spaces = fc.string({ unit: fc.constant(' '), minLength: 1, maxLength: 4 });
      const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'beaRER');
      await fc.assert(
        fc.asyncProperty(scheme, spaces, spaces, fc.boolean(), fc.nat(), async (s, before, after, viaApiKey, at) => {
          const value = viaApiKey ? `${before}${good.key}${after}` : `${s}${before}${good.key}${after}`;
          const header = viaApiKey ? 'x-api-key' : 'authorization';
          expect((await request(url).get('/').set(header, value)).status).toBe(200);
          const i = at % good.key.length;
          const near = good.key.slice(0, i) + (good.key[i] === 'x' ? 'y' : 'x') + good.key.slice(i + 1);
          expect((await request(url).get('/').set(header, value.replace(good.key, near))).status).toBe(401);
        }),
        quietly({ good: good.key, revoked }, { numRuns: 100 }),
      );
    });
  });

  describe('on a context made by the app, with anything in the header slots', () => {
    let app: Koa;
    let routes: Record<string, Middleware>;

    beforeAll(() => {
      app = new Framework();
      routes = chains();
    });

    /** A real request and response with no socket behind them, and the headers a middleware upstream might leave. */
    function contextWith(fake: { headers: Record<string, unknown>; rawHeaders?: unknown[] }, path: string) {
      const req = new IncomingMessage(new Socket());
      req.method = 'GET';
      req.url = path;
      req.headers = fake.headers as IncomingHttpHeaders;
      (req as { rawHeaders: unknown }).rawHeaders = fake.rawHeaders;
      return app.createContext(req, new ServerResponse(req));
    }

    /** Runs the route; resolves whether it passed the request on (throws if the middleware did). */
    async function run(path: string, fake: { headers: Record<string, unknown>; rawHeaders?: unknown[] }) {
      const ctx = contextWith(fake, path);
      let passed = false;
      await routes[path]!(ctx, async () => {
        passed = true;
      });
      return { ctx, passed };
    }

    it('never throws; answers 401 or 403 with a fixed problem, or passes only the good key on', async () => {
      await fc.assert(
        fc.asyncProperty(anyRequestHeaders([good.key, revoked]), fc.constantFrom(...PATHS), async (fake, path) => {
          const { ctx, passed } = await run(path, fake);
          const presented = stringsIn(fake.headers);
          if (passed) {
            expect(path).not.toBe('/admin');
            expect(ctx.state.apiKey?.id).toBe(good.id);
            expect(presented.some((v) => v.includes(good.key))).toBe(true);
          } else {
            const answer = { status: ctx.status, body: String(ctx.body), headers: ctx.res.getHeaders() as Record<string, unknown> };
            checkAnswer(answer, presented, good, REQUIRED[path]);
          }
        }),
        quietly({ good: good.key, revoked }, { numRuns: RUNS }),
      );
    });

    it('treats lists holding non-strings as malformed instead of throwing', async () => {
      for (const header of ['authorization', 'x-api-key']) {
        for (const list of [[5], [null], [undefined], [{}], [['Bearer x']], [5, 5]]) {
          const outcome = await run('/', { headers: { [header]: list } }).catch((error: unknown) => error);
          expect(outcome, `${header}: ${JSON.stringify(list)}`).toMatchObject({ passed: false, ctx: { status: 401 } });
          expect(JSON.parse(String((outcome as { ctx: { body: unknown } }).ctx.body))).toMatchObject({ code: 'MALFORMED' });
        }
      }
    });
  });
});
