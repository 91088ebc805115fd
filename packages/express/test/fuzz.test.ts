// Property tests: hostile key headers against apiKeyAuth() for Express, over HTTP and called directly.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import express4 from 'express4';
import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, MemoryStore, silentLogger, type Till } from '@till/core';
import { apiKeyAuth, requireAnyScope, requireScopes } from '@till/express';
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

/** The routes of both apps, as middleware chains. */
function chains(): Record<string, RequestHandler[]> {
  const auth = apiKeyAuth({ till });
  return { '/': [auth], '/read': [auth, requireAnyScope('users:read')], '/admin': [auth, requireScopes('admin')] };
}

describe.each([
  ['Express 5', express],
  ['Express 4', express4],
])('%s over HTTP', (_name, framework) => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    const app = framework();
    for (const [path, chain] of Object.entries(chains())) {
      app.get(path, ...chain, (req: Request, res: Response) => {
        res.json({ id: req.apiKey!.id });
      });
    }
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.name });
    });
    // One server for all runs: supertest would otherwise start one per request.
    server = createServer(app);
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

type Outcome = { passed: true; req: Request } | { passed: false; res: ReturnType<typeof fakeResponse> };

/** Calls middlewares in turn on a fake request; resolves with how they answered, rejects if one threw. */
function callDirectly(middlewares: RequestHandler[], fakeReq: object): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = fakeReq as Request;
    const timer = setTimeout(() => reject(new Error('the middleware neither answered nor called next()')), 2000);
    const settle = (outcome: Outcome) => {
      clearTimeout(timer);
      resolve(outcome);
    };
    const res = fakeResponse(() => settle({ passed: false, res }));
    const step = (i: number): void => {
      if (i === middlewares.length) return settle({ passed: true, req });
      middlewares[i]!(req, res as unknown as Response, ((error?: unknown) => {
        if (error === undefined) return step(i + 1);
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      }) as NextFunction);
    };
    try {
      step(0);
    } catch (error) {
      clearTimeout(timer);
      reject(error);
    }
  });
}

describe('called directly with anything in the header slots', () => {
  let routes: Record<string, RequestHandler[]>;

  beforeAll(() => {
    routes = chains();
  });

  it('never throws; answers 401 or 403 with a fixed problem, or passes only the good key on', async () => {
    await fc.assert(
      fc.asyncProperty(anyRequestHeaders([good.key, revoked]), fc.constantFrom(...PATHS), async (fakeReq, path) => {
        const outcome = await callDirectly(routes[path]!, { ...fakeReq });
        const presented = stringsIn(fakeReq.headers);
        if (outcome.passed) {
          expect(path).not.toBe('/admin');
          expect(outcome.req.apiKey?.id).toBe(good.id);
          expect(presented.some((v) => v.includes(good.key))).toBe(true);
        } else {
          const { statusCode, body, headers } = outcome.res;
          checkAnswer({ status: statusCode, body, headers }, presented, good, REQUIRED[path]);
        }
      }),
      quietly({ good: good.key, revoked }, { numRuns: RUNS }),
    );
  });

  it('treats lists holding non-strings as malformed instead of throwing', async () => {
    for (const header of ['authorization', 'x-api-key']) {
      for (const list of [[5], [null], [undefined], [{}], [['Bearer x']], [5, 5]]) {
        const outcome = await callDirectly(routes['/']!, { headers: { [header]: list } }).catch((error: unknown) => error);
        expect(outcome, `${header}: ${JSON.stringify(list)}`).toMatchObject({ passed: false, res: { statusCode: 401 } });
        expect(JSON.parse((outcome as { res: { body: string } }).res.body)).toMatchObject({ code: 'MALFORMED' });
      }
    }
  });
});
