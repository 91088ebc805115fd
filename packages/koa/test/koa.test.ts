// apiKeyAuth(), requireScopes() and requireAnyScope() on real Koa 3 and Koa 2 apps: the shared adapter
// suite (tools/testkit/src/adapter-suite.ts), plus what only Koa does.
import Koa from 'koa';
import koa2 from 'koa2';
import { expect, it } from 'vitest';
import { sendProblem } from '@till/koa';
import { bearer, describeAdapter } from '@till/testkit/adapter-suite';
import { describeLimits } from '@till/testkit/limits-suite';
import { expectProblem } from '@till/testkit/adapter-support';
import { koaDriver } from './driver.js';

for (const [name, Framework] of [
  ['Koa 3', Koa],
  ['Koa 2', koa2],
] as const) {
  describeLimits(name, koaDriver(Framework));
  describeAdapter(name, koaDriver(Framework), {
    options: ({ appWith, get }) => {
      it('an async onFailure is awaited, and can send the default with sendProblem()', async () => {
        const app = appWith({
          onFailure: async (_f, ctx, response) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            ctx.set('x-extra', 'yes');
            sendProblem(ctx, response);
          },
        });
        const junk = await get(app, '/', bearer('junk'));
        expectProblem(junk, 'MALFORMED');
        expect(junk.headers['x-extra']).toBe('yes');
      });
    },
  });
}
