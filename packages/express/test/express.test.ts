// apiKeyAuth(), requireScopes() and requireAnyScope() on real Express 5 and Express 4 apps: the shared
// adapter suite (test/helpers/adapter-suite.ts), plus what only Express does.
import express from 'express';
import express4 from 'express4';
import { expect, it } from 'vitest';
import { sendProblem } from '@till/express';
import { bearer, describeAdapter } from '../../../test/helpers/adapter-suite.js';
import { describeLimits } from '../../../test/helpers/limits-suite.js';
import { expectProblem } from '../../../test/helpers/adapter-support.js';
import { expressDriver } from './driver.js';

for (const [name, framework] of [
  ['Express 5', express],
  ['Express 4', express4],
] as const) {
  describeLimits(name, expressDriver(framework));
  describeAdapter(name, expressDriver(framework), {
    options: ({ appWith, get }) => {
      it('onFailure can pass the request on, or send the default with sendProblem()', async () => {
        const app = appWith({
          onFailure: (f, _req, res, next, response) => {
            if (f.code === 'MISSING') return next();
            res.setHeader('x-extra', 'yes');
            sendProblem(res, response);
          },
        });
        const anonymous = await get(app, '/');
        expect([anonymous.status, JSON.parse(anonymous.text)]).toEqual([200, { fields: null }]);
        const junk = await get(app, '/', bearer('junk'));
        expectProblem(junk, 'MALFORMED');
        expect(junk.headers['x-extra']).toBe('yes');
      });
    },
  });
}
