import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/redis/index.js';
import { TillError } from '../src/errors.js';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { describeStoreConformance, sampleRecord } from './store-conformance.js';

describeStoreConformance('redis', async () => {
  const namespace = uniqueNamespace();
  const clients = [newClient(), newClient()];
  return {
    confirmsSubscription: true,
    // Limits follow the tests' clock here; the server's clock is tested below.
    stores: async () => [
      new RedisStore({ client: clients[0]!, namespace, limitClock: 'caller' }),
      new RedisStore({ client: clients[1]!, namespace, limitClock: 'caller' }),
    ],
    cleanup: async () => {
      await deleteNamespace(clients[0]!, namespace);
      for (const c of clients) c.disconnect();
    },
  };
});

describe('RedisStore specifics', () => {
  const namespace = uniqueNamespace();
  const client = newClient();
  afterAll(async () => {
    await deleteNamespace(client, namespace);
    client.disconnect();
  });

  it('keeps each record under its {id} hash tag, and the id in the indexes', async () => {
    const store = new RedisStore({ client, namespace });
    const record = sampleRecord({ ownerId: 'acme' });
    await store.insert(record);
    expect(await client.exists(`${namespace}{${record.id}}:k`)).toBe(1);
    expect(store.recordKey(record.id)).toBe(`${namespace}{${record.id}}:k`);
    expect(await client.zscore(`${namespace}idx:all`, record.id)).toBe(String(record.createdAt));
    expect(await client.zscore(`${namespace}idx:owner:acme`, record.id)).toBe(String(record.createdAt));
  });

  it('counts limits on the server clock by default, whatever the caller says the time is', async () => {
    const store = new RedisStore({ client, namespace });
    const limits = [{ name: 'burst', limit: 3, window: 60_000, cost: 1 }];
    const subject = `clock-${Date.now()}`;
    // Callers on hosts whose clocks disagree by hours still share one bucket.
    const skews = [0, 3_600_000, -3_600_000, 0];
    const results = [];
    for (const skew of skews) results.push(await store.consume({ subject, limits, now: Date.now() + skew }));
    expect(results.map((r) => r.outcome)).toEqual(['OK', 'OK', 'OK', 'RATE_LIMITED']);
    const retry = (results[3] as { retryAfter: number }).retryAfter;
    expect(retry).toBeGreaterThan(19_000);
    expect(retry).toBeLessThanOrEqual(20_000);
    expect(await client.pttl(`${namespace}{${subject}}:rl:burst`)).toBeGreaterThan(59_000);
    expect(() => new RedisStore({ client, namespace, limitClock: 'local' as 'redis' })).toThrow(TillError);
    await expect(store.consume({ subject: 'a{b}', limits, now: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('stores records compact, version first, and charges read the version of any record', async () => {
    const store = new RedisStore({ client, namespace });
    const record = sampleRecord({ metadata: {} });
    await store.insert(record);
    const stored = (await client.get(`${namespace}{${record.id}}:k`))!;
    // Defaults left out (nulls, empty lists, false, updatedAt equal to createdAt), read back whole.
    expect(stored.startsWith('{"version":1,')).toBe(true);
    expect(stored).not.toMatch(/null|"disabled"|"limits"|"metadata"|"updatedAt"/);
    expect(await store.get(record.id)).toEqual(record);
    await store.replace({ ...record, name: 'v2', version: 2, updatedAt: record.createdAt + 5 }, 1);
    expect(await store.get(record.id)).toEqual({ ...record, name: 'v2', version: 2, updatedAt: record.createdAt + 5 });
    const limits = [{ name: 'l', limit: 5, window: 1000, cost: 1 }];
    expect(await store.consume({ subject: record.id, keyVersion: 2, credits: null, limits, now: 0 })).toMatchObject({ outcome: 'OK' });
    expect(await store.consume({ subject: record.id, keyVersion: 1, credits: null, limits, now: 0 })).toMatchObject({
      outcome: 'CHANGED',
      record: { name: 'v2' },
    });
    // A record written some other way (version last, every field present) is decoded instead.
    await client.set(`${namespace}{${record.id}}:k`, JSON.stringify({ ...record, name: 'v3', version: 3 }));
    expect(await store.consume({ subject: record.id, keyVersion: 3, credits: null, limits, now: 0 })).toMatchObject({ outcome: 'OK' });
    expect(await store.consume({ subject: record.id, keyVersion: 2, credits: null, limits, now: 0 })).toMatchObject({
      outcome: 'CHANGED',
      record: { name: 'v3' },
    });
    await client.del(`${namespace}{${record.id}}:k`);
    expect(await store.consume({ subject: record.id, keyVersion: 3, credits: null, limits, now: 0 })).toEqual({ outcome: 'NOT_FOUND' });
  });

  it("gives a security event a place in a key's trail only for a key that exists or existed", async () => {
    const store = new RedisStore({ client, namespace });
    const live = sampleRecord();
    const gone = sampleRecord();
    await store.insert(live);
    await store.insert(gone);
    await store.remove(gone.id, 1, { type: 'key.deleted', at: 0, keyId: gone.id, ownerId: null, actor: null, reason: null, before: null, after: null });
    const madeUp = 'ZZZZZZZZZZZZZZZZ';
    // Wrong secrets sent with these ids: probing, which a key's own trail records.
    const event = (keyId: string) => ({
      type: 'key.probed' as const,
      at: 0,
      keyId,
      ownerId: null,
      actor: null,
      reason: null,
      code: 'NOT_FOUND' as const,
      ip: '203.0.113.9',
    });
    await store.appendAudit([event(live.id), event(gone.id), event(madeUp)]);
    // A made-up id leaves no Redis key behind (an attacker could make any number of them) ...
    expect(await client.exists(`${namespace}{${madeUp}}:audit`, `${namespace}{${madeUp}}:events`)).toBe(0);
    // ... but the event is in the store's log all the same, and real keys' trails have theirs.
    const logged = (await store.readAudit({ types: ['key.probed'], limit: 1000 })).entries.map((e) => e.keyId);
    for (const id of [live.id, gone.id, madeUp]) expect(logged).toContain(id);
    expect((await store.readAudit({ keyId: live.id })).entries.map((e) => e.type)).toEqual(['key.probed']);
    expect((await store.readAudit({ keyId: gone.id })).entries.map((e) => e.type)).toEqual(['key.deleted', 'key.probed']);
  });

  it('says when a change is made but no replica confirmed it, and keeps the change', async () => {
    // This Redis has no replicas: WAIT answers 0 after the timeout.
    const { createTill } = await import('../src/index.js');
    const store = new RedisStore({ client, namespace, replicas: 1, replicaTimeout: 50 });
    const till = createTill({ store, logger: { warn() {}, error() {} }, usage: false, auditEvents: false });
    const { key, record } = await till.keys.create({ name: 'unreplicated', scopes: [] }); // creations do not wait
    const started = Date.now();
    await expect(till.keys.revoke(record.id)).rejects.toMatchObject({
      code: 'NOT_REPLICATED',
      message: expect.stringMatching(/0 of 1 replicas confirmed it within 50 ms/),
    });
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await till.verify(key)).code).toBe('REVOKED');
    await expect(till.keys.delete(record.id)).rejects.toMatchObject({ code: 'NOT_REPLICATED' });
    expect(await till.keys.get(record.id)).toBeNull();
    await till.close();
    for (const bad of [{ replicas: -1 }, { replicas: 1.5 }, { replicaTimeout: 0 }]) {
      expect(() => new RedisStore({ client, namespace, ...bad })).toThrow(TillError);
    }
  });

  it('reports a corrupt record as a store error, not as a key', async () => {
    const store = new RedisStore({ client, namespace });
    const record = sampleRecord();
    const corrupt = [
      '{"id":1}',
      JSON.stringify({ ...record, expiresAt: '2020-01-01T00:00:00Z' }),
      JSON.stringify({ ...record, notBefore: { later: true } }),
      JSON.stringify({ ...record, revokedAt: 'yes' }),
      JSON.stringify({ ...record, hashAlgorithm: 'md5' }),
      JSON.stringify({ ...record, scopes: [1] }),
    ];
    for (const json of corrupt) {
      await client.set(`${namespace}{${record.id}}:k`, json);
      await expect(store.get(record.id), json.slice(0, 60)).rejects.toMatchObject({ code: 'STORE_ERROR' });
    }
  });

  it('writes a batch of usage counts as one script call, and a batch resent after a partial write skips the keys it wrote', async () => {
    const store = new RedisStore({ client, namespace });
    const { countRoundTrips } = await import('@till/testkit/round-trips');
    const day = new Date().toISOString().slice(0, 10);
    const items = Array.from({ length: 4 }, (_, i) => ({ keyId: sampleRecord().id, day, counts: { VALID: i + 1 }, lastUsedAt: null }));
    await store.readUsage(items[0]!.keyId, 1); // past the eviction check
    // As a Cluster's per-slot calls can end: the batch's first keys written, the others not.
    await store.recordUsage(items.slice(0, 2), 'writerP.1');
    const trips = countRoundTrips(client);
    await store.recordUsage(items, 'writerP.1');
    trips.stop();
    // One EVALSHA (the write before loaded the script); no ZADD, the batch has no last use.
    expect([trips.count, trips.commands]).toEqual([1, { evalsha: 1 }]);
    const counts = await Promise.all(items.map(async (item) => (await store.readUsage(item.keyId, 1)).days[0]!.counts));
    expect(counts).toEqual([{ VALID: 1 }, { VALID: 2 }, { VALID: 3 }, { VALID: 4 }]);
  });

  it('subscribes with a lazyConnect client too', async () => {
    const { Redis } = await import('ioredis');
    const lazy = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    lazy.on('error', () => {});
    const listening = new RedisStore({ client: lazy, namespace });
    const writer = new RedisStore({ client, namespace });
    const heard: Array<string | null> = [];
    listening.onInvalidate((id) => heard.push(id));
    expect(await waitFor(() => heard.includes(null), 10_000)).toBe(true);
    const record = sampleRecord();
    await writer.insert(record);
    await writer.replace({ ...record, version: 2 }, 1);
    expect(await waitFor(() => heard.includes(record.id), 10_000)).toBe(true);
    expect(heard).toEqual([null, record.id]);
    await listening.close();
    lazy.disconnect();
  });

  it('checks its options', () => {
    expect(() => new RedisStore({} as never)).toThrow(TillError);
    expect(() => new RedisStore({ client, namespace: 'a{b}' })).toThrow(/braces/);
    expect(() => new RedisStore({ client, commandTimeout: 0 })).toThrow(/commandTimeout/);
  });
});

describe('RedisStore invalidation subscription', () => {
  it('tells listeners to drop everything once subscribed, and subscribes even if Redis came up only later', async () => {
    const { freePort, startRedisServer } = await import('@till/testkit/redis-server');
    const { Redis } = await import('ioredis');
    const port = await freePort();
    // Redis is not there yet: the store's subscription must still come about when it is.
    const client = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    let refused = 0;
    client.on('error', () => refused++);
    const store = new RedisStore({ client, namespace: uniqueNamespace() });
    const heard: Array<string | null> = [];
    store.onInvalidate((id) => heard.push(id));
    // Nothing is confirmed while nothing answers: let the clients try (and fail) a few times first.
    expect(await waitFor(() => refused >= 3, 10_000)).toBe(true);
    expect(heard).toEqual([]);
    const server = await startRedisServer(port);
    try {
      expect(await waitFor(() => heard.includes(null), 10_000)).toBe(true);
      expect(heard).toEqual([null]);
      // The subscriber has its own connection: the command client may still be between two attempts.
      expect(await waitFor(() => client.status === 'ready', 10_000)).toBe(true);
      const record = sampleRecord();
      await store.insert(record);
      await store.replace({ ...record, version: 2 }, 1);
      expect(await waitFor(() => heard.includes(record.id), 10_000)).toBe(true);
      expect(heard).toEqual([null, record.id]);
    } finally {
      await store.close();
      client.disconnect();
      await server.stop();
    }
  });
});
