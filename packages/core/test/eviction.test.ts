// A Redis that may evict Till's keys (maxmemory-policy allkeys-*): the store says so once, or refuses to run.
// Real redis-servers on free loopback ports, started and stopped here.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Logger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { freePort, startRedisServer, type RunningRedis } from '@till/testkit/redis-server';
import { uniqueNamespace } from '@till/testkit/redis';

const servers: RunningRedis[] = [];
const clients: Redis[] = [];

function clientOf(server: RunningRedis): Redis {
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

function recorder(): Logger & { warnings: string[]; errors: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  return { warnings, errors, warn: (m) => void warnings.push(m), error: (m) => void errors.push(m) };
}

describe('the eviction policy check', () => {
  let lru: RunningRedis;
  let volatile: RunningRedis;
  let safe: RunningRedis;
  beforeAll(async () => {
    lru = await startRedisServer(await freePort(), ['--maxmemory-policy', 'allkeys-lru', '--maxmemory', '64mb']);
    volatile = await startRedisServer(await freePort(), ['--maxmemory-policy', 'volatile-lru', '--maxmemory', '64mb']);
    safe = await startRedisServer(await freePort());
    servers.push(lru, volatile, safe);
  }, 30_000);
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('warns once, through the logger, on allkeys-lru, and keeps working', async () => {
    const logger = recorder();
    const store = new RedisStore({ client: clientOf(lru), namespace: uniqueNamespace(), logger });
    const till = createTill({ store, logger: silentLogger, auditEvents: false, usage: false });
    const { key, record } = await till.keys.create({ name: 'k', scopes: [] });
    await till.keys.get(record.id);
    expect((await till.verify(key)).code).toBe('VALID');
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toMatch(
      /^\[till\] \[redis\] maxmemory-policy is allkeys-lru: under memory pressure Redis evicts any key, Till's key records .* and credit counters .* Set maxmemory-policy to noeviction/,
    );
    expect(logger.errors).toEqual([]);
    await till.close();
  });

  it("with eviction: 'refuse', every command fails with a clear STORE_ERROR, and verification answers 503", async () => {
    const logger = recorder();
    const client = clientOf(lru);
    const namespace = uniqueNamespace();
    const store = new RedisStore({ client, namespace, logger, eviction: 'refuse' });
    const till = createTill({ store, logger: silentLogger, auditEvents: false, usage: false });
    await expect(till.keys.create({ name: 'k', scopes: [] })).rejects.toMatchObject({
      code: 'STORE_ERROR',
      message: expect.stringMatching(/refusing to run \(eviction: 'refuse'\): maxmemory-policy is allkeys-lru/),
    });
    await expect(store.get('aaaaaaaaaaaaaaaa')).rejects.toMatchObject({ code: 'STORE_ERROR' });
    expect(await client.keys(`${namespace}*`)).toEqual([]); // nothing written
    // A key made elsewhere is not served from a Redis that may lose it.
    const other = createTill({
      store: new RedisStore({ client: clientOf(lru), namespace, logger: silentLogger }),
      logger: silentLogger,
      auditEvents: false,
      usage: false,
    });
    const { key } = await other.keys.create({ name: 'k', scopes: [] });
    expect((await till.verify(key)).code).toBe('STORE_UNAVAILABLE');
    expect(logger.errors).toHaveLength(1);
    await till.close();
    await other.close();
  });

  it('says nothing on noeviction or a volatile-* policy (Till keeps its records and credits without a TTL)', async () => {
    for (const server of [safe, volatile]) {
      const logger = recorder();
      const store = new RedisStore({ client: clientOf(server), namespace: uniqueNamespace(), logger, eviction: 'refuse' });
      const till = createTill({ store, logger: silentLogger, auditEvents: false, usage: false });
      const { key } = await till.keys.create({ name: 'k', scopes: [], credits: { remaining: 5 } });
      expect((await till.verify(key)).code).toBe('VALID');
      expect(logger.warnings).toEqual([]);
      expect(logger.errors).toEqual([]);
      await till.close();
    }
  });

  it('refuses a bad eviction option', () => {
    expect(() => new RedisStore({ client: clientOf(safe), eviction: 'ignore' as 'warn' })).toThrow(/eviction must be "warn" or "refuse"/);
  });
});
