// Property tests: hostile key headers against apiKeyAuth() for Koa, over HTTP (the shared
// tools/testkit/src/fuzz-suite.ts) and on a context made by the app.
import { IncomingMessage, ServerResponse, type IncomingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import Koa from 'koa';
import koa2 from 'koa2';
import { describe } from 'vitest';
import { describeDirectFuzz, describeHttpFuzz, fuzzKeys, type FakeRequest } from '@till/testkit/fuzz-suite';
import { chain, koaDriver } from './driver.js';

const keys = fuzzKeys();

for (const [name, Framework] of [
  ['Koa 3', Koa],
  ['Koa 2', koa2],
] as const) {
  describe(name, () => {
    const driver = koaDriver(Framework);

    describeHttpFuzz('over HTTP', keys, driver);

    describeDirectFuzz('on a context made by the app, with anything in the header slots', keys, driver, (routes) => {
      const app = new Framework();

      /** A real request and response with no socket behind them, and the headers a middleware upstream might leave. */
      function contextWith(fake: FakeRequest, path: string) {
        const req = new IncomingMessage(new Socket());
        req.method = 'GET';
        req.url = path;
        req.headers = fake.headers as IncomingHttpHeaders;
        (req as { rawHeaders: unknown }).rawHeaders = fake.rawHeaders;
        return app.createContext(req, new ServerResponse(req));
      }

      // Resolves whether the route passed the request on (rejects if a middleware threw).
      return async (path, fake) => {
        const ctx = contextWith(fake, path);
        let passed = false;
        await chain(routes[path]!)(ctx, async () => {
          passed = true;
        });
        if (passed) return { passed, apiKey: ctx.state.apiKey };
        return { passed, answer: { status: ctx.status, body: String(ctx.body), headers: ctx.res.getHeaders() as Record<string, unknown> } };
      };
    });
  });
}
