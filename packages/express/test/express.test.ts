// apiKeyAuth(), requireScopes() and requireAnyScope() on real Express 5 and Express 4 apps: the shared
// adapter suite (tools/testkit/src/adapter-suite.ts), plus what only Express does.
import express from 'express';
import express4 from 'express4';
import { expect, it } from 'vitest';
import { sendProblem } from '@till/express';
import { bearer, describeAdapter } from '@till/testkit/adapter-suite';
import { describeLimits } from '@till/testkit/limits-suite';
import { expectProblem } from '@till/testkit/adapter-support';
import { expressDriver } from './driver.js';

for (const [name, framework] of [
  ['Express 5', express],
  ['Express 4', express4],
] as const) {
  describeLimits(name, expressDriver(framework));
  describeAdapter(name, expressDriver(framework), {
    options: ({ appWith, get }) => {
      it('onFailure cannot turn a refusal into a pass: next() sends the default, next(error) reaches the error handler', async () => {
        const app = appWith({
          // The pattern of an app that meant to let anonymous requests through.
          onFailure: (f, _req, res, next, response) => {
            if (f.code === 'MISSING') return next();
            res.setHeader('x-extra', 'yes');
            sendProblem(res, response);
          },
        });
        // No key, on the plain route and on the scope-guarded one: 401, never 200.
        expectProblem(await get(app, '/'), 'MISSING');
        expectProblem(await get(app, '/all'), 'MISSING');
        expectProblem(await get(app, '/any'), 'MISSING');
        const junk = await get(app, '/', bearer('junk'));
        expectProblem(junk, 'MALFORMED');
        expect(junk.headers['x-extra']).toBe('yes');
        for (const arg of ['route', 'router']) {
          const skipping = appWith({ onFailure: (_f, _req, _res, next) => next(arg) });
          expectProblem(await get(skipping, '/all'), 'MISSING');
        }
        const failing = appWith({ onFailure: (_f, _req, _res, next) => next(new Error('from onFailure')) });
        const res = await get(failing, '/all');
        expect([res.status, JSON.parse(res.text)]).toEqual([500, { handled: 'from onFailure' }]);
      });
    },
  });
}
