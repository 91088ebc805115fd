// Property tests: hostile key headers against apiKeyAuth() for Fastify, over HTTP (the shared
// @till/testkit/fuzz-suite) and on requests whose header slots an earlier hook filled with anything.
import Fastify from 'fastify';
import { afterAll, describe } from 'vitest';
import type { VerifiedKey } from '@till/core';
import type { TillHook } from '@till/fastify';
import { describeDirectFuzz, describeHttpFuzz, fuzzKeys, type FakeRequest } from '@till/testkit/fuzz-suite';
import { fastifyDriver, placed, PLACEMENTS } from './driver.js';

const keys = fuzzKeys();

for (const placement of PLACEMENTS) {
  describeHttpFuzz(`Fastify 5 over HTTP, hooks in ${placement}`, keys, fastifyDriver(placement));
}

describe('Fastify 5 with anything in the header slots', () => {
  const apps: Array<ReturnType<typeof Fastify>> = [];
  afterAll(() => Promise.all(apps.map((app) => app.close())));

  describeDirectFuzz('put there by an earlier onRequest hook', keys, fastifyDriver('onRequest'), (routes) => {
    // The fake headers travel beside the request, named by an id header that the first hook replaces.
    const fakes = new Map<string, FakeRequest>();
    const ids = new WeakMap<object, string>();
    const passed = new Map<string, VerifiedKey | undefined>();
    const app = Fastify();
    apps.push(app);
    app.addHook('onRequest', async (request) => {
      const id = request.headers['x-fake'] as string;
      const fake = fakes.get(id)!;
      ids.set(request.raw, id);
      request.raw.headers = fake.headers as typeof request.raw.headers;
      (request.raw as { rawHeaders: unknown }).rawHeaders = fake.rawHeaders;
    });
    for (const [path, chain] of Object.entries(routes)) {
      app.get(path, placed(chain as TillHook[], 'onRequest'), async (request) => {
        passed.set(ids.get(request.raw)!, request.apiKey);
        return 'passed';
      });
    }
    let next = 0;
    return async (path, fake) => {
      const id = String(next++);
      fakes.set(id, fake);
      try {
        const res = await app.inject({ url: path, headers: { 'x-fake': id } });
        if (passed.has(id)) return { passed: true, apiKey: passed.get(id) };
        if (res.statusCode === 500) throw new Error(`the hooks threw: ${res.body}`);
        return { passed: false, answer: { status: res.statusCode, body: res.body, headers: res.headers as Record<string, unknown> } };
      } finally {
        fakes.delete(id);
        passed.delete(id);
      }
    };
  });
});
