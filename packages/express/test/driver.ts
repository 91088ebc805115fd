// Express's side of the shared adapter suites (tools/testkit/src/adapter-suite.ts, fuzz-suite.ts): how an app is built.
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import { apiKeyAuth, rateLimit, requireAnyScope, requireScopes, sendProblem, type FailureHandler } from '@till/express';
import type { AdapterDriver } from '@till/testkit/adapter-suite';

/** The driver for one Express version: `framework` is the `express` function of that version. */
export function expressDriver(framework: () => Express): AdapterDriver<RequestHandler, FailureHandler> {
  return {
    keyAt: 'req.apiKey',
    apiKeyAuth,
    requireScopes,
    requireAnyScope,
    rateLimit: rateLimit as AdapterDriver<RequestHandler, FailureHandler>['rateLimit'],
    app(routes, answer, settings = {}) {
      const app = framework();
      if (settings.trustProxy) app.set('trust proxy', true);
      for (const [path, chain] of Object.entries(routes)) {
        app.get(path, ...chain, (req: Request, res: Response) => {
          res.json(answer(req.apiKey));
        });
      }
      app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
        res.status(500).json({ handled: error.message });
      });
      return app;
    },
    problem: (response) => (_req, res) => sendProblem(res, response),
    passingOnFailure: () => (_failure, _req, _res, next) => next(),
    setKey: (key) => (req, _res, next) => {
      req.apiKey = key;
      next();
    },
    onFailure: (answer) => (failure, _req, res, _next, response) => {
      const { status, body } = answer(failure, response);
      res.status(status).json(body);
    },
  };
}
