// Redis stopped and restarted under a live Express app: never fail open, serve the stale window, recover alone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, type Till, type TillEvent } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';
import { freePort, startRedisServer, type RunningRedis } from '@till/testkit/redis-server';
import { waitFor } from '@till/testkit/wait';

describe('when Redis goes down and comes back', () => {
  let server: RunningRedis;
  let port: number;
  let dir: string;
  let client: Redis;
  let till: Till;
  let store: RedisStore;
  /** The cache's clock: moved on by the tests, so TTLs and the stale window do not depend on the machine's speed. */
  let now = Date.now();
  /** How many times Redis confirmed the invalidation subscription (the store then calls listeners with null). */
  let confirmations = 0;
  let app: express.Express;
  const keys: Record<string, string> = {};
  const events: TillEvent[] = [];

  // Persistence on, so the restarted server still has the keys.
  const start = () => startRedisServer(port, ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'till-redis-down-'));
    port = await freePort();
    server = await start();
    client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => {});
    store = new RedisStore({ client, commandTimeout: 300 });
    store.onInvalidate((id) => void (id === null && confirmations++));
    till = createTill({ store, clock: () => now, cache: { ttl: 200, staleWindow: 2500 }, logger: { warn() {}, error() {} } });
    till.events.on((e) => events.push(e));
    app = express();
    app.get('/', apiKeyAuth({ till }), (req, res) => {
      res.json({ id: req.apiKey!.id });
    });
    app.get('/limited', apiKeyAuth({ till, limits: [{ name: 'per-hour', limit: 3, window: '1h' }] }), (req, res) => {
      res.json({ id: req.apiKey!.id });
    });
    for (const name of ['limited', 'paying']) {
      keys[name] = (await till.keys.create({ name, scopes: ['a'], ...(name === 'paying' && { credits: { remaining: 100 } }) })).key;
    }
    for (const name of ['warm', 'cold', 'revoked']) keys[name] = (await till.keys.create({ name, scopes: ['a'] })).key;
    const revoked = await till.keys.list();
    await till.keys.revoke(revoked.keys.find((k) => k.name === 'revoked')!.id, { reason: 'test' });
  });

  afterAll(async () => {
    await till?.close();
    client?.disconnect();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (key: string) => request(app).get('/').set('Authorization', `Bearer ${key}`);

  it('serves cached keys from the stale window, refuses others with 503, never 200 for a revoked key', async () => {
    expect((await get(keys.warm!)).status).toBe(200);
    // The first verification subscribes to invalidations; once Redis confirms, the cache is dropped
    // (anything read before may have missed a message), so the key is read again, as live traffic would.
    expect(await waitFor(() => confirmations >= 1, 10_000)).toBe(true);
    expect((await get(keys.warm!)).status).toBe(200);
    expect((await get(keys.revoked!)).status).toBe(401);

    await server.stop();
    now += 250; // past the fresh TTL: every request now needs Redis

    const warm = await get(keys.warm!);
    expect(warm.status).toBe(200);

    const started = Date.now();
    const cold = await get(keys.cold!);
    expect(cold.status).toBe(503);
    expect(cold.headers['retry-after']).toBe('2');
    expect(cold.body.code).toBe('STORE_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(1500);

    expect((await get(generateKey('till').key)).status).toBe(503);
    expect((await get(keys.revoked!)).status).toBe(401);
    expect((await get('garbage')).status).toBe(401); // no store needed to refuse that

    now += 2500; // past the stale window
    expect((await get(keys.warm!)).status).toBe(503);
  });

  it('recovers by itself when Redis returns', async () => {
    server = await start();
    expect(await waitFor(async () => (await get(keys.cold!)).status === 200, 10_000, 50)).toBe(true);
    expect((await get(keys.warm!)).status).toBe(200);
    expect((await get(keys.revoked!)).status).toBe(401);
  });

  it('answers 503 within the command timeout when Redis hangs, and recovers when it answers again', async () => {
    // CLIENT PAUSE holds every command of every client: a Redis that accepts connections but does not answer.
    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    const cold = (await till.keys.create({ name: 'slow', scopes: ['a'] })).key;
    // Held long enough that a request that waited for Redis instead of timing out would take 3 s
    // (Redis holds CLIENT UNPAUSE too, so the pause is not cut short).
    await admin.client('PAUSE', 3000, 'ALL');
    try {
      const started = Date.now();
      const res = await get(cold);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('STORE_UNAVAILABLE');
      // 300 ms command timeout, plus the request itself: well below the 3 s pause, with room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(2000);
      expect((await get(keys.warm!)).status).toBe(200); // cached and fresh enough, or within the stale window
    } finally {
      await admin.client('UNPAUSE').catch(() => {});
      admin.disconnect();
    }
    expect(await waitFor(async () => (await get(cold)).status === 200, 10_000, 50)).toBe(true);
  });

  it('counts limits per process while Redis is down and says so; credits get 503; shared again once back', async () => {
    const limited = (key: string) => request(app).get('/limited').set('Authorization', `Bearer ${key}`);
    const firstSent = Date.now();
    expect((await limited(keys.limited!)).status).toBe(200);
    const firstAnswered = Date.now();
    expect((await limited(keys.paying!)).status).toBe(200);
    // Earlier tests' failed authentications were counted (brute-force protection), in the outage too.
    events.length = 0;
    await server.stop();
    const during = [];
    for (let i = 0; i < 4; i++) during.push((await limited(keys.limited!)).status);
    // Counted afresh in this process: the full limit of 3, then refused; never unlimited.
    expect(during).toEqual([200, 200, 200, 429]);
    const paying = await limited(keys.paying!);
    expect([paying.status, paying.body.code]).toEqual([503, 'STORE_UNAVAILABLE']);
    expect(events.map((e) => e.type)).toEqual(['limits.fallback']);

    server = await start();
    expect(await waitFor(async () => (await limited(keys.paying!)).status === 200, 10_000, 50)).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['limits.fallback', 'limits.restored']);
    // Shared again: Redis still holds the one charge made before the outage, and one more fits now.
    const lastSent = Date.now();
    const after = await limited(keys.limited!);
    const lastAnswered = Date.now();
    // Two charges of 3 an hour (one per 1200 s): the bucket is full again 2400 s after the first,
    // minus the time between the two, which Redis counts on its clock and the header rounds up.
    const reset = (between: number) => Math.ceil((2_400_000 - between) / 1000);
    const [fastest, slowest] = [reset(lastAnswered - firstSent), reset(lastSent - firstAnswered)];
    const t = Number(/^"per-hour";r=1;t=(\d+)$/.exec(String(after.headers.ratelimit))?.[1]);
    expect(t).toBeGreaterThanOrEqual(fastest);
    expect(t).toBeLessThanOrEqual(slowest);
  });
});
