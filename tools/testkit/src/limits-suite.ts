// The rate-limit behaviour every adapter must show: key limits and credits in apiKeyAuth(), the
// rateLimit() guard by key, IP and function, the headers, brute-force blocks, and a store that is down.
// One file because it is one suite, which an adapter runs with one call (describeLimits).
import type { RequestListener } from 'node:http';
import request from 'supertest';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  createTill,
  MemoryStore,
  silentLogger,
  TillError,
  type ConsumeRequest,
  type ConsumeResult,
  type CreateKeyInput,
  type KeyRecord,
  type Till,
  type TillEvent,
  type VerifiedKey,
} from '@till/core';
import type { AdapterDriver, AdapterOptions, Headers } from './adapter-suite.js';
import { expectProblem, LeakCheck, T0, UnreachableStore, withWrongSecret, type SeenResponse } from './adapter-support.js';

/** A memory store that counts reads and charges, and can miss invalidations (a process that lost its message). */
class CountingStore extends MemoryStore {
  gets = 0;
  consumes = 0;
  deaf = false;
  override get(id: string): Promise<KeyRecord | null> {
    this.gets++;
    return super.get(id);
  }
  override consume(request: ConsumeRequest): Promise<ConsumeResult> {
    this.consumes++;
    return super.consume(request);
  }
  override onInvalidate(listener: (id: string | null) => void): () => void {
    return super.onInvalidate((id) => {
      if (!this.deaf) listener(id);
    });
  }
}

const answer = (key: VerifiedKey | undefined) => ({ id: key?.id ?? null });
let names = 0;
/** Limit names are unique per Till; tests make their own Till, but a unique name reads better in failures. */
const limitName = (base: string) => `${base}-${names++}`;

export function describeLimits<M, Handler>(name: string, driver: AdapterDriver<M, Handler>): void {
  describe(`${name}: limits`, () => {
    let now = T0;
    let store: CountingStore;
    let till: Till;
    let events: TillEvent[];
    const leaks = new LeakCheck();

    beforeEach(() => {
      now = T0;
      store = new CountingStore();
      till = createTill({ store, clock: () => now, logger: silentLogger });
      events = [];
      till.events.on((e) => events.push(e));
    });

    async function newKey(input: Partial<CreateKeyInput> = {}) {
      const created = await till.keys.create({ name: 'limited', scopes: ['users:read'], ...input });
      await leaks.track(till, created);
      return created;
    }

    function app(chain: M[], settings: { trustProxy?: boolean } = {}, path = '/'): RequestListener {
      return driver.app({ [path]: chain }, answer, settings);
    }

    function auth(options: Omit<AdapterOptions<Handler>, 'till'> = {}): M {
      return driver.apiKeyAuth({ till, ...options });
    }

    async function get(target: RequestListener, headers: Headers = {}, path = '/'): Promise<SeenResponse> {
      let req = request(target).get(path);
      for (const [header, value] of Object.entries(headers)) if (value !== undefined) req = req.set(header, value as string);
      const res = await req;
      const seen = { status: res.status, text: res.text, headers: res.headers as Record<string, unknown> };
      leaks.check(seen);
      return seen;
    }

    const bearer = (key: string): Headers => ({ authorization: `Bearer ${key}` });

    describe('a key with limits of its own', () => {
      it('admits a burst of the limit with draft-11 headers, then 429 with Retry-After, then one more per interval', async () => {
        const { key } = await newKey({
          limits: [
            { name: 'per-second', limit: 3, window: '1s' },
            { name: 'per-day', limit: 1000, window: '1d' },
          ],
        });
        const target = app([auth()]);
        const seen: SeenResponse[] = [];
        for (let i = 0; i < 4; i++) seen.push(await get(target, bearer(key)));
        expect(seen.map((r) => r.status)).toEqual([200, 200, 200, 429]);
        expect(seen[0]!.headers['ratelimit-policy']).toBe('"per-second";q=3;w=1, "per-day";q=1000;w=86400');
        expect(seen.map((r) => r.headers.ratelimit)).toEqual([
          '"per-second";r=2;t=1, "per-day";r=999;t=87',
          '"per-second";r=1;t=1, "per-day";r=998;t=173',
          '"per-second";r=0;t=1, "per-day";r=997;t=260',
          // Refused: nothing charged, so the day limit still shows 997.
          '"per-second";r=0;t=1, "per-day";r=997;t=260',
        ]);
        expectProblem(seen[3]!, 'RATE_LIMITED', { retryAfter: 1 });
        now += 333;
        expect((await get(target, bearer(key))).status).toBe(429);
        now += 1;
        expect((await get(target, bearer(key))).status).toBe(200);
      });

      it('charges one store call per request and reads the record once while cached', async () => {
        const { key } = await newKey({ limits: [{ name: 'per-minute', limit: 100, window: '1m' }] });
        const target = app([auth()]);
        const before = store.gets;
        for (let i = 0; i < 5; i++) expect((await get(target, bearer(key))).status).toBe(200);
        expect([store.gets - before, store.consumes]).toEqual([1, 5]);
      });

      it('sees a change that this process missed in the same step, and judges the new record', async () => {
        const { key, record } = await newKey({ limits: [{ name: 'per-minute', limit: 100, window: '1m' }] });
        const target = app([auth()]);
        expect((await get(target, bearer(key))).status).toBe(200);
        store.deaf = true;
        await createTill({ store, clock: () => now, logger: silentLogger }).keys.revoke(record.id);
        expectProblem(await get(target, bearer(key)), 'REVOKED');
      });

      it('spends credits by the route cost and refuses with USAGE_EXCEEDED, never below zero', async () => {
        const { key, record } = await newKey({ credits: { remaining: 5, refill: { amount: 5, interval: '1h' } } });
        const target = driver.app(
          {
            '/cheap': [auth({ cost: (r: unknown) => (pathOf(r) === '/costly' ? 3 : 1) })],
            '/costly': [auth({ cost: (r: unknown) => (pathOf(r) === '/costly' ? 3 : 1) })],
          },
          answer,
        );
        expect((await get(target, bearer(key), '/costly')).status).toBe(200);
        expect((await get(target, bearer(key), '/costly')).status).toBe(429);
        expect((await get(target, bearer(key), '/cheap')).status).toBe(200);
        expect((await get(target, bearer(key), '/cheap')).status).toBe(200);
        expectProblem(await get(target, bearer(key), '/cheap'), 'USAGE_EXCEEDED', { retryAfter: 3600 });
        expect(await till.keys.credits(record.id)).toBe(0);
        now += 3_600_000;
        expect((await get(target, bearer(key), '/cheap')).status).toBe(200);
        expect(await till.keys.credits(record.id)).toBe(4);
      });

      it('keeps the middleware limits per key, in the same charge as the key limits', async () => {
        const a = await newKey();
        const b = await newKey({ limits: [{ name: 'own', limit: 5, window: '1m' }] });
        const target = app([auth({ limits: [{ name: limitName('shared'), limit: 2, window: '1m' }] })]);
        const statuses = [];
        for (const k of [a, a, a, b, b, b]) statuses.push((await get(target, bearer(k.key))).status);
        expect(statuses).toEqual([200, 200, 429, 200, 200, 429]);
        // b's own limit took only the two admitted requests.
        expect((await get(target, bearer(b.key))).headers.ratelimit).toMatch(/^"own";r=3;t=\d+, "shared-\d+";r=0;t=\d+$/);
      });

      it('sends the older RateLimit-* set, or no rate-limit headers, when asked', async () => {
        const { key } = await newKey({
          limits: [
            { name: 'per-second', limit: 10, window: '1s' },
            { name: 'per-hour', limit: 3, window: '1h' },
          ],
        });
        const old = await get(app([auth({ rateLimitHeaders: 'draft-6' })]), bearer(key));
        expect([old.headers['ratelimit-limit'], old.headers['ratelimit-remaining'], old.headers['ratelimit-reset']]).toEqual(['3', '2', '1200']);
        expect(old.headers['ratelimit-policy']).toBe('10;w=1, 3;w=3600');
        expect(old.headers.ratelimit).toBeUndefined();
        const none = await get(app([auth({ rateLimitHeaders: false })]), bearer(key));
        expect(none.status).toBe(200);
        expect((await get(app([auth()]), bearer(key))).status).toBe(200);
        expect(Object.keys(none.headers).filter((h) => h.startsWith('ratelimit'))).toEqual([]);
        const refused = await get(app([auth({ rateLimitHeaders: false })]), bearer(key));
        expectProblem(refused, 'RATE_LIMITED', { retryAfter: 1200 });
        expect(Object.keys(refused.headers).filter((h) => h.startsWith('ratelimit'))).toEqual([]);
      });
    });

    describe('rateLimit()', () => {
      it('limits per key after apiKeyAuth(), and refuses a request without a verified key', async () => {
        const a = await newKey();
        const b = await newKey();
        const guard = driver.rateLimit({ till, name: limitName('route'), limit: 2, window: '1m' });
        const target = app([auth(), guard]);
        const statuses = [];
        for (const k of [a, a, a, b]) statuses.push((await get(target, bearer(k.key))).status);
        expect(statuses).toEqual([200, 200, 429, 200]);
        expectProblem(await get(app([guard]), bearer(a.key)), 'MISSING');
      });

      it('limits per client IP on its own, by the trust-proxy setting of the app', async () => {
        const trusted = app([driver.rateLimit({ till, name: limitName('ip'), by: 'ip', limit: 1, window: '1h' })], { trustProxy: true });
        expect((await get(trusted, { 'x-forwarded-for': '203.0.113.1' })).status).toBe(200);
        expect((await get(trusted, { 'x-forwarded-for': '203.0.113.2' })).status).toBe(200);
        expectProblem(await get(trusted, { 'x-forwarded-for': '203.0.113.1' }), 'RATE_LIMITED', { retryAfter: 3600 });
        // Without trust proxy, a forged X-Forwarded-For changes nothing: all come from the socket address.
        const direct = app([driver.rateLimit({ till, name: limitName('ip'), by: 'ip', limit: 1, window: '1h' })]);
        expect((await get(direct, { 'x-forwarded-for': '203.0.113.1' })).status).toBe(200);
        expect((await get(direct, { 'x-forwarded-for': '203.0.113.9' })).status).toBe(429);
      });

      it('limits by a function of the request, and leaves alone what it returns undefined for', async () => {
        const guard = driver.rateLimit({
          till,
          name: limitName('tenant'),
          limit: 1,
          window: '1m',
          by: ((r: unknown) => headerOf(r, 'x-tenant')) as never,
          cost: ((r: unknown) => (headerOf(r, 'x-big') ? 2 : 1)) as never,
        });
        const target = app([guard]);
        expect((await get(target, { 'x-tenant': 'acme' })).status).toBe(200);
        expect((await get(target, { 'x-tenant': 'acme' })).status).toBe(429);
        expect((await get(target, { 'x-tenant': '{odd} tenant' })).status).toBe(200);
        expect((await get(target, {})).status).toBe(200);
        expect((await get(target, {})).status).toBe(200);
        // A cost above the limit can never pass: refused without a Retry-After.
        expectProblem(await get(target, { 'x-tenant': 'other', 'x-big': '1' }), 'RATE_LIMITED');
      });

      it('counts a request once when the same guard is mounted twice on its path, and says so', async () => {
        const { key } = await newKey();
        const guard = driver.rateLimit({ till, name: limitName('twice'), limit: 2, window: '1m' });
        const target = app([auth(), guard, guard]);
        expect((await get(target, bearer(key))).status).toBe(200);
        expect((await get(target, bearer(key))).status).toBe(200);
        expect((await get(target, bearer(key))).status).toBe(429);
        expect(events.filter((e) => e.type === 'guard.repeated')).toHaveLength(1);
      });

      it('checks its options when created, and reports two guards sharing a name on one Till', () => {
        const base = { till, name: limitName('opt'), limit: 5, window: '1m' };
        driver.rateLimit(base);
        expect(() => driver.rateLimit(base)).toThrow(/already used/);
        expect(() => driver.apiKeyAuth({ till, limits: [{ name: 'dup', limit: 1, window: '1s' }] })).not.toThrow();
        expect(() => driver.apiKeyAuth({ till, limits: [{ name: 'dup', limit: 1, window: '1s' }] })).toThrow(/already used/);
        const bad: unknown[] = [
          undefined,
          { ...base, name: 'has space' },
          { ...base, name: limitName('x'), limit: 0 },
          { ...base, name: limitName('x'), window: 'soon' },
          { ...base, name: limitName('x'), by: 'user' },
          { ...base, name: limitName('x'), cost: 6 },
          { ...base, name: limitName('x'), cost: -1 },
          { ...base, name: limitName('x'), headers: 'draft-99' },
          { ...base, name: limitName('x'), limits: 3 },
          { ...base, name: limitName('x'), till: {} },
        ];
        for (const options of bad) {
          expect(() => driver.rateLimit(options as never), JSON.stringify(options)).toThrow(TillError);
        }
        for (const options of [
          { cost: 'one' },
          { bruteForce: { threshold: 0 } },
          { bruteForce: { block: '10ms' } },
          { bruteForce: true },
          { rateLimitHeaders: 'draft-7' },
          { limits: [{ name: 'x', limit: 1 }] },
        ]) {
          expect(() => driver.apiKeyAuth({ till, ...(options as object) }), JSON.stringify(options)).toThrow(TillError);
        }
      });
    });

    describe('brute-force protection', () => {
      it('blocks an IP past the threshold, before any lookup, and only that IP, for the block time', async () => {
        const { key } = await newKey();
        const target = app([auth({ bruteForce: { threshold: 5, window: '1m', block: '10m' } })], { trustProxy: true });
        const from = (ip: string, k: string) => get(target, { ...bearer(k), 'x-forwarded-for': ip });
        for (let i = 0; i < 4; i++) expectProblem(await from('198.51.100.7', withWrongSecret(key)), 'NOT_FOUND');
        // The fifth failure reaches the threshold: from the next request on the IP is refused, good key
        // or not, decided in this process with no store call in between.
        expectProblem(await from('198.51.100.7', 'till_junk'), 'MALFORMED');
        expectProblem(await from('198.51.100.7', key), 'BLOCKED', { retryAfter: 600 });
        expect(events.filter((e) => e.type === 'client.blocked')).toEqual([{ type: 'client.blocked', ip: '198.51.100.7', until: T0 + 600_000, failures: 5 }]);
        // A flood from the blocked IP costs the store nothing.
        const [gets, consumes] = [store.gets, store.consumes];
        for (let i = 0; i < 20; i++) expect((await from('198.51.100.7', withWrongSecret(key))).status).toBe(429);
        expect([store.gets, store.consumes]).toEqual([gets, consumes]);
        expect((await from('198.51.100.8', key)).status).toBe(200);
        now += 600_000;
        expect((await from('198.51.100.7', key)).status).toBe(200);
      });

      it('does not count a missing key, a revoked key or a good one', async () => {
        const { key } = await newKey();
        const revoked = await newKey();
        await till.keys.revoke(revoked.record.id);
        const target = app([auth({ bruteForce: { threshold: 1, window: '1m', block: '10m' } })]);
        for (let i = 0; i < 5; i++) {
          expect((await get(target)).status).toBe(401);
          expect((await get(target, bearer(revoked.key))).status).toBe(401);
          expect((await get(target, bearer(key))).status).toBe(200);
        }
        expect(events).toEqual([]);
      });
    });

    describe('when the store is down', () => {
      it('limits per process and says so once; a key with credits gets 503, never a free pass', async () => {
        const down = new UnreachableStore();
        down.down = false;
        const t = createTill({ store: down, clock: () => now, logger: silentLogger });
        t.events.on((e) => events.push(e));
        const limited = await t.keys.create({ name: 'limited', scopes: [], limits: [{ name: 'per-minute', limit: 2, window: '1m' }] });
        const paying = await t.keys.create({ name: 'paying', scopes: [], credits: { remaining: 100 } });
        for (const c of [limited, paying]) leaks.addKey(c.key);
        const target = app([driver.apiKeyAuth({ till: t })]);
        expect((await get(target, bearer(limited.key))).status).toBe(200);
        expect((await get(target, bearer(paying.key))).status).toBe(200);
        down.down = true;
        const statuses = [];
        for (let i = 0; i < 3; i++) statuses.push((await get(target, bearer(limited.key))).status);
        // Counted afresh in this process: two more admitted, then refused.
        expect(statuses).toEqual([200, 200, 429]);
        expectProblem(await get(target, bearer(paying.key)), 'STORE_UNAVAILABLE', { retryAfter: 2 });
        expect(events.map((e) => e.type)).toEqual(['limits.fallback']);
        down.down = false;
        expect((await get(target, bearer(paying.key))).status).toBe(200);
        expect(events.map((e) => e.type)).toEqual(['limits.fallback', 'limits.restored']);
      });
    });
  });
}

/** The path of an Express request, a Koa context or a Fastify request. */
function pathOf(r: unknown): string {
  const { path, url } = r as { path?: string; url: string };
  // A Fastify request has no `path`: its `url` holds the path and the query.
  return path ?? url.split('?')[0]!;
}

/** A request header of an Express request, a Koa context or a Fastify request. */
function headerOf(r: unknown, name: string): string | undefined {
  const value = (r as { headers: Record<string, string | undefined> }).headers[name];
  return value === undefined || value === '' ? undefined : value;
}
