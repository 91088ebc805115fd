// Property tests: hostile key headers against apiKeyAuth() for Express, over HTTP (the shared
// tools/testkit/src/fuzz-suite.ts) and called directly on a fake request and response.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import express4 from 'express4';
import { describeDirectFuzz, describeHttpFuzz, fuzzKeys, type DirectOutcome, type DirectRun } from '@till/testkit/fuzz-suite';
import { expressDriver } from './driver.js';

const keys = fuzzKeys();

describeHttpFuzz('Express 5 over HTTP', keys, expressDriver(express));
describeHttpFuzz('Express 4 over HTTP', keys, expressDriver(express4));

/** A response object with just what the adapter calls, recording what it was told. */
function fakeResponse(onEnd: () => void) {
  return {
    statusCode: 200,
    headers: {} as Record<string, unknown>,
    body: '',
    status(code: number) {
      this.statusCode = code;
      return this;
    },
    setHeader(name: string, value: unknown) {
      this.headers[name.toLowerCase()] = value;
      return this;
    },
    end(body?: string) {
      this.body = body ?? '';
      onEnd();
    },
  };
}

/** Calls middlewares in turn on a fake request; resolves with how they answered, rejects if one threw. */
function callDirectly(middlewares: RequestHandler[], fakeReq: object): Promise<DirectOutcome> {
  return new Promise((resolve, reject) => {
    const req = fakeReq as Request;
    const timer = setTimeout(() => reject(new Error('the middleware neither answered nor called next()')), 2000);
    const settle = (outcome: DirectOutcome) => {
      clearTimeout(timer);
      resolve(outcome);
    };
    const res = fakeResponse(() => settle({ passed: false, answer: { status: res.statusCode, body: res.body, headers: res.headers } }));
    const step = (i: number): void => {
      if (i === middlewares.length) return settle({ passed: true, apiKey: req.apiKey });
      middlewares[i]!(
        req,
        res as unknown as Response,
        ((error?: unknown) => {
          if (error === undefined) return step(i + 1);
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        }) as NextFunction,
      );
    };
    try {
      step(0);
    } catch (error) {
      clearTimeout(timer);
      reject(error);
    }
  });
}

// No app is involved, so this runs once rather than once per Express version.
describeDirectFuzz('called directly with anything in the header slots', keys, expressDriver(express), (routes): DirectRun => {
  return (path, fake) => callDirectly(routes[path]!, { ...fake });
});
