// What a made-up key costs Redis: a scan of 10,000 well-formed keys with random ids, each from its own
// address, on a redis-server of this test's own (so INFO commandstats counts this test alone).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, generateKey } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';
import { middlewareCaller } from '@till/testkit/call-middleware';
import { freePort, startRedisServer, type RunningRedis } from '@till/testkit/redis-server';

let server: RunningRedis;
let admin: Redis;

beforeAll(async () => {
  server = await startRedisServer(await freePort());
  admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});

/** Calls and microseconds of Redis CPU by command, as INFO commandstats reports them. */
async function commandStats(): Promise<Map<string, { calls: number; usec: number }>> {
  const info = await admin.info('commandstats');
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
}

describe('a scan of made-up keys from many addresses', () => {
  it('costs Redis one command per made-up key, and leaves nothing behind per address', async () => {
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    const till = createTill({ store: new RedisStore({ client, closeClient: true }), closeStore: true, logger: { warn() {}, error() {} } });
    const call = middlewareCaller(apiKeyAuth({ till }));
    // A real key, so the store is not empty and the made-up ones are unknown among real ones.
    const real = await till.keys.create({ name: 'real', scopes: [] });
    expect(await call('192.0.2.1', { authorization: `Bearer ${real.key}` })).toBe(200);
    const keysBefore = new Set(await admin.keys('*'));
    await admin.config('RESETSTAT');

    const N = 10_000;
    const started = Date.now();
    for (let i = 0; i < N; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      expect(await call(ip, { authorization: `Bearer ${generateKey('till').key}`, 'user-agent': `scanner/${i}` })).toBe(401);
    }
    // Everything the flood leads to is written: security events, usage, shared counts.
    await till.close();

    const stats = await commandStats();
    let calls = 0;
    let usec = 0;
    for (const [name, s] of stats) {
      if (name === 'info' || name === 'config|resetstat' || name === 'config') continue;
      calls += s.calls;
      usec += s.usec;
    }
    const perKey = calls / N;
    console.log(
      `[cost] ${N} made-up keys: ${calls} Redis commands (${perKey.toFixed(3)} per key), ${(usec / N).toFixed(2)} µs of Redis CPU per key; by command: ${[...stats].map(([n, s]) => `${n} ${s.calls}`).join(', ')}`,
    );
    // One GET per made-up key, and nothing else per key: the rest (the security log's folded entries,
    // written once per interval) grows with the run's seconds, not with the keys sent.
    const seconds = (Date.now() - started) / 1000;
    expect(stats.get('get')?.calls).toBe(N);
    expect(calls - N, `${calls - N} commands besides the GETs in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(50 + 30 * seconds);
    // No key per address or per made-up id: only the security log, and the real key's usage counts.
    const added = (await admin.keys('*')).filter((k) => !keysBefore.has(k)).sort();
    expect(added).toHaveLength(3);
    expect(added[0]).toBe('till:audit:security{till:audit}');
    expect(added[1]).toBe('till:usage:last');
    expect(added[2]).toMatch(new RegExp(`^till:\\{${real.record.id}\\}:u:\\d{4}-\\d{2}-\\d{2}$`));
  }, 120_000); // 10,000 requests each with a Redis read: a few seconds idle, more on a busy machine (a budget)
});
