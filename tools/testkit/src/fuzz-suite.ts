// The property tests every adapter must pass, over HTTP and called without a server. A framework plugs
// in through the AdapterDriver of the behaviour suite; how to call its middlewares directly is its own.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, MemoryStore, silentLogger, type Till, type VerifiedKey } from '@till/core';
import type { AdapterDriver } from './adapter-suite.js';
import { T0 } from './adapter-support.js';
import { anyRequestHeaders, checkAnswer, expectedOutcome, expectOutcome, quietly, sendableHeaders, stringsIn, type Answer } from './fuzzing.js';

const RUNS = 300;
const PATHS = ['/', '/read', '/admin'] as const;
/** Scopes each path requires: `/admin` refuses the good key with 403. */
const REQUIRED: Record<string, string[] | undefined> = { '/': undefined, '/read': ['users:read'], '/admin': ['admin'] };

/** The keys every run presents: one good (scope users:read), one revoked (scope *). */
export interface FuzzKeys {
  till: Till;
  good: { key: string; id: string };
  revoked: string;
}

/** Makes the keys once for the file, before its tests; the object is filled in then. */
export function fuzzKeys(): FuzzKeys {
  const keys = {} as FuzzKeys;
  beforeAll(async () => {
    const till = createTill({ store: new MemoryStore(), clock: () => T0, logger: silentLogger });
    const created = await till.keys.create({ name: 'fuzz', scopes: ['users:read'] });
    const other = await till.keys.create({ name: 'revoked', scopes: ['*'] });
    await till.keys.revoke(other.record.id);
    Object.assign(keys, { till, good: { key: created.key, id: created.record.id }, revoked: other.key });
  });
  return keys;
}

/** The middleware chains of the fuzzed routes, made with the adapter's own functions. */
export function fuzzRoutes<M>(driver: AdapterDriver<M, unknown>, till: Till): Record<string, M[]> {
  // Fuzzing asks how each header is answered, so no client is ever blocked here (brute-force
  // protection stays on, counting, with a threshold no run reaches; blocking is tested apart).
  const auth = driver.apiKeyAuth({ till, bruteForce: { threshold: 1_000_000 } });
  return { '/': [auth], '/read': [auth, driver.requireAnyScope('users:read')], '/admin': [auth, driver.requireScopes('admin')] };
}

/** Sendable hostile headers against a real server of the driver's app. */
export function describeHttpFuzz<M>(title: string, keys: FuzzKeys, driver: AdapterDriver<M, unknown>): void {
  describe(title, () => {
    let server: Server;
    let url: string;

    beforeAll(async () => {
      const app = driver.app(fuzzRoutes(driver, keys.till), (key) => ({ id: key!.id }));
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
      const { good, revoked } = keys;
      await fc.assert(
        fc.asyncProperty(sendableHeaders([good.key, revoked]), fc.constantFrom(...PATHS), async (headers, path) => {
          let req = request(url).get(path);
          // A list sends the header once per value.
          for (const [name, value] of headers) req = req.set(name, value as string);
          const res = await req;
          const answer = { status: res.status, body: res.text, headers: res.headers as Record<string, unknown> };
          const code = checkAnswer(
            answer,
            headers.flatMap(([, v]) => v),
            good,
            REQUIRED[path],
          );
          expectOutcome(code, expectedOutcome(headers, good.key), path === '/admin');
        }),
        quietly({ good: good.key, revoked }, { numRuns: RUNS }),
      );
    });

    it('accepts the good key however the Bearer scheme is cased and spaced, and nothing one character off', async () => {
      const { good, revoked } = keys;
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
}

/** What an upstream middleware could have left on a request: any header bag, any `rawHeaders`. */
export interface FakeRequest {
  headers: Record<string, unknown>;
  rawHeaders?: unknown[];
}

/** How a route answered when called directly: passed on with the key it set, or answered itself. */
export type DirectOutcome = { passed: true; apiKey: VerifiedKey | undefined } | { passed: false; answer: Answer };

/** Runs the route at `path` on `fake`; rejects if a middleware threw. */
export type DirectRun = (path: string, fake: FakeRequest) => Promise<DirectOutcome>;

/**
 * Anything at all in the header slots, past what HTTP can carry. `runner` gets the routes' middleware
 * chains and says how the framework calls them without a server.
 */
export function describeDirectFuzz<M>(
  title: string,
  keys: FuzzKeys,
  driver: AdapterDriver<M, unknown>,
  runner: (routes: Record<string, M[]>) => DirectRun,
): void {
  describe(title, () => {
    let run: DirectRun;

    beforeAll(() => {
      run = runner(fuzzRoutes(driver, keys.till));
    });

    it('never throws; answers 401 or 403 with a fixed problem, or passes only the good key on', async () => {
      const { good, revoked } = keys;
      await fc.assert(
        fc.asyncProperty(anyRequestHeaders([good.key, revoked]), fc.constantFrom(...PATHS), async (fake, path) => {
          const outcome = await run(path, fake);
          const presented = stringsIn(fake.headers);
          if (outcome.passed) {
            expect(path).not.toBe('/admin');
            expect(outcome.apiKey?.id).toBe(good.id);
            expect(presented.some((v) => v.includes(good.key))).toBe(true);
          } else {
            checkAnswer(outcome.answer, presented, good, REQUIRED[path]);
          }
        }),
        quietly({ good: good.key, revoked }, { numRuns: RUNS }),
      );
    });

    it('treats lists holding non-strings as malformed instead of throwing', async () => {
      for (const header of ['authorization', 'x-api-key']) {
        for (const list of [[5], [null], [undefined], [{}], [['Bearer x']], [5, 5]]) {
          const outcome = await run('/', { headers: { [header]: list } }).catch((error: unknown) => error);
          expect(outcome, `${header}: ${JSON.stringify(list)}`).toMatchObject({ passed: false, answer: { status: 401 } });
          expect(JSON.parse((outcome as { answer: Answer }).answer.body)).toMatchObject({ code: 'MALFORMED' });
        }
      }
    });
  });
}
