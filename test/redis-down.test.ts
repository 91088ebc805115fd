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
import { freePort, startRedisServer, type RunningRedis } from './helpers/redis-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('when Redis goes down and comes back', () => {
  let server: RunningRedis;
  let port: number;
  let dir: string;
  let client: Redis;
  let till: Till;
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
    till = createTill({ store: new RedisStore({ client, commandTimeout: 300 }), cache: { ttl: 200, staleWindow: 2500 }, logger: { warn() {}, error() {} } });
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
    await sleep(100);
    expect((await get(keys.warm!)).status).toBe(200);
    expect((await get(keys.revoked!)).status).toBe(401);

    await server.stop();
    await sleep(250); // past the fresh TTL: every request now needs Redis

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

    await sleep(2500); // past the stale window
    expect((await get(keys.warm!)).status).toBe(503);
  });

  it('recovers by itself when Redis returns', async () => {
    server = await start();
    const deadline = Date.now() + 5000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await get(keys.cold!)).status;
      if (status === 200) break;
      await sleep(50);
    }
    expect(status).toBe(200);
    expect((await get(keys.warm!)).status).toBe(200);
    expect((await get(keys.revoked!)).status).toBe(401);
  });

  it('answers 503 within the command timeout when Redis hangs, and recovers when it answers again', async () => {
    // CLIENT PAUSE holds every command of every client: a Redis that accepts connections but does not answer.
    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    const cold = (await till.keys.create({ name: 'slow', scopes: ['a'] })).key;
    await admin.client('PAUSE', 1500, 'ALL');
    try {
      const started = Date.now();
      const res = await get(cold);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('STORE_UNAVAILABLE');
      // 300 ms command timeout, plus the request itself: far below the 1.5 s pause.
      expect(Date.now() - started).toBeLessThan(1000);
      expect((await get(keys.warm!)).status).toBe(200); // cached and fresh enough, or within the stale window
    } finally {
      await admin.client('UNPAUSE').catch(() => {});
      admin.disconnect();
    }
    const deadline = Date.now() + 5000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await get(cold)).status;
      if (status !== 200) await sleep(50);
    }
    expect(status).toBe(200);
  });

  it('counts limits per process while Redis is down and says so; credits get 503; shared again once back', async () => {
    const limited = (key: string) => request(app).get('/limited').set('Authorization', `Bearer ${key}`);
    expect((await limited(keys.limited!)).status).toBe(200);
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
    const deadline = Date.now() + 5000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await limited(keys.paying!)).status;
      if (status !== 200) await sleep(50);
    }
    expect(status).toBe(200);
    expect(events.map((e) => e.type)).toEqual(['limits.fallback', 'limits.restored']);
    // Shared again: Redis still holds the one charge made before the outage, and one more fits now.
    const after = await limited(keys.limited!);
    expect(after.headers.ratelimit).toBe('"per-hour";r=1;t=2400');
  });
});
