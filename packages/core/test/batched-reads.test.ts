// The Redis store's batched reads: the record reads of one event-loop turn go to Redis as one MGET, each
// answered on its own (its record, null, or its own error), under the same deadline as a read sent alone.
// A redis-server of this file's own: its commandstats count this file's commands only, and CLIENT PAUSE holds no one else.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { TillError } from '../src/errors.js';
import { deleteNamespace, uniqueNamespace } from '@till/testkit/redis';
import { freePort, startRedisServer, type RunningRedis } from '@till/testkit/redis-server';
import { countRoundTrips } from '@till/testkit/round-trips';
import { waitFor } from '@till/testkit/wait';
import { sampleRecord } from './store-conformance.js';

let server: RunningRedis;
const clients: Redis[] = [];
const namespace = uniqueNamespace();

function newClient(): Redis {
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

/** GETs and MGETs Redis has executed so far, from INFO commandstats. */
async function readsExecuted(admin: Redis): Promise<{ get: number; mget: number }> {
  const stats = String(await admin.info('commandstats'));
  const calls = (name: string) => Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  return { get: calls('get'), mget: calls('mget') };
}

/** What Redis executed between two readings of readsExecuted. */
const since = (before: { get: number; mget: number }, after: { get: number; mget: number }) => ({
  get: after.get - before.get,
  mget: after.mget - before.mget,
});

/** A store whose first command (the eviction check) is behind it, so that what follows is only reads. */
async function readyStore(options: Partial<ConstructorParameters<typeof RedisStore>[0]> = {}): Promise<{ store: RedisStore; client: Redis }> {
  const client = newClient();
  const store = new RedisStore({ client, namespace, logger: silentLogger, ...options });
  await store.get('warm-up');
  return { store, client };
}

let admin: Redis;
const records = [sampleRecord(), sampleRecord({ ownerId: 'acme' }), sampleRecord({ scopes: [] })];

beforeAll(async () => {
  server = await startRedisServer(await freePort());
  admin = newClient();
  const store = new RedisStore({ client: admin, namespace, logger: silentLogger });
  for (const record of records) await store.insert(record);
}, 30_000);

afterAll(async () => {
  await deleteNamespace(admin, namespace);
  for (const client of clients) client.disconnect();
  await server?.stop();
});

describe('batched reads (default)', () => {
  it('answers reads asked for in one turn, found and unknown mixed, with one MGET', async () => {
    const { store, client } = await readyStore();
    const ids = [...records.map((r) => r.id), 'unknown-1', records[0]!.id, 'unknown-2', 'unknown-3'];
    const before = await readsExecuted(admin);
    const trips = countRoundTrips(client);
    const answers = await Promise.all(ids.map((id) => store.get(id)));
    trips.stop();
    expect(answers).toEqual([...records, null, records[0], null, null]);
    expect(trips.count).toBe(1);
    expect(trips.commands).toEqual({ mget: 1 });
    expect(since(before, await readsExecuted(admin))).toEqual({ get: 0, mget: 1 });
  });

  it('reads more keys than one MGET takes as several MGETs in one pipeline', async () => {
    const { store, client } = await readyStore();
    const ids = Array.from({ length: 2500 }, (_, i) => (i % 500 === 0 ? records[(i / 500) % records.length]!.id : `unknown-${i}`));
    const trips = countRoundTrips(client);
    const answers = await Promise.all(ids.map((id) => store.get(id)));
    trips.stop();
    expect(answers).toEqual(ids.map((_, i) => (i % 500 === 0 ? records[(i / 500) % records.length] : null)));
    expect([trips.count, trips.commands]).toEqual([1, { mget: 3 }]);
  });

  it('sends one read alone as one command', async () => {
    const { store, client } = await readyStore();
    const trips = countRoundTrips(client);
    expect(await store.get(records[1]!.id)).toEqual(records[1]);
    trips.stop();
    expect([trips.count, trips.commands]).toEqual([1, { get: 1 }]);
  });

  it('answers the misses of concurrent verifications with one read per id and one round trip', async () => {
    const { store, client } = await readyStore();
    const till = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
    const made = [];
    for (let i = 0; i < 4; i++) made.push(await till.keys.create({ name: `batched ${i}`, scopes: [] }));
    // A fresh verifier: nothing cached. Each key presented twice (single-flight: one read), and an unknown id.
    const reader = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
    const presented = [...made.map((m) => m.key), ...made.map((m) => m.key), generateKey(made[0]!.record.prefix).key];
    const trips = countRoundTrips(client);
    const sent = client.mget.bind(client);
    const keysRead: string[] = [];
    client.mget = ((...keys: string[]) => {
      keysRead.push(...keys.flat());
      return sent(...keys);
    }) as typeof client.mget;
    const results = await Promise.all(presented.map((key) => reader.verify(key)));
    trips.stop();
    expect(results.map((r) => r.code)).toEqual([...made.map(() => 'VALID'), ...made.map(() => 'VALID'), 'NOT_FOUND']);
    expect(results.slice(0, 4).map((r) => r.valid && r.key.id)).toEqual(made.map((m) => m.record.id));
    expect([trips.count, trips.commands]).toEqual([1, { mget: 1 }]);
    expect(keysRead).toHaveLength(made.length + 1);
    await reader.close();
    await till.close();
  });

  it('fails only the read whose record is corrupt; the others are answered (a key holding no string reads as absent)', async () => {
    const { store, client } = await readyStore();
    // Not a string under a record's key (MGET answers null for it, where GET answers WRONGTYPE), and a string that is no record.
    await admin.rpush(store.recordKey('wrong-type'), 'x');
    await admin.set(store.recordKey('corrupt'), '{"version":');
    const trips = countRoundTrips(client);
    const answers = await Promise.allSettled(['wrong-type', records[0]!.id, 'corrupt', 'unknown', records[2]!.id].map((id) => store.get(id)));
    trips.stop();
    expect(trips.count).toBe(1);
    expect(answers.map((a) => a.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const corrupt = answers[2] as PromiseRejectedResult;
    expect(corrupt.reason).toBeInstanceOf(TillError);
    expect(corrupt.reason).toMatchObject({ code: 'STORE_ERROR', message: expect.stringMatching(/record of key corrupt is corrupt/) });
    expect(answers.filter((a) => a.status === 'fulfilled').map((a) => a.value)).toEqual([null, records[0], null, records[2]]);
  });

  it('sends a read alone as a GET, which fails on a key holding no string (WRONGTYPE, STORE_ERROR)', async () => {
    const { store } = await readyStore();
    await admin.rpush(store.recordKey('wrong-type'), 'x');
    // Alone, the read is a GET, which says WRONGTYPE.
    await expect(store.get('wrong-type')).rejects.toMatchObject({ code: 'STORE_ERROR', message: expect.stringMatching(/WRONGTYPE/) });
  });

  it('gives each read STORE_UNAVAILABLE when Redis does not answer within commandTimeout, or when the connection closes under it', async () => {
    const { store } = await readyStore({ commandTimeout: 100 });
    const closing = await readyStore();
    const pauser = newClient();
    // CLIENT PAUSE holds every command of every client of this server (CLIENT UNPAUSE too: the pause runs out).
    await pauser.client('PAUSE', 1500, 'ALL');
    const codes = (answers: PromiseSettledResult<unknown>[]) => answers.map((a) => a.status === 'rejected' && (a.reason as TillError).code);
    const unanswered = await Promise.allSettled(records.map((r) => store.get(r.id)));
    expect(codes(unanswered)).toEqual(records.map(() => 'STORE_UNAVAILABLE'));
    expect((unanswered[0] as PromiseRejectedResult).reason.message).toMatch(/no answer within 100 ms/);
    // Closed once the batch is written (at the turn's setImmediate, queued before this one), its replies held by the pause.
    const reads = Promise.allSettled(records.map((r) => closing.store.get(r.id)));
    await new Promise((resolve) => setImmediate(resolve));
    closing.client.disconnect();
    const closed = await reads;
    expect(codes(closed)).toEqual(records.map(() => 'STORE_UNAVAILABLE'));
    expect((closed[0] as PromiseRejectedResult).reason.cause.message).toMatch(/Connection is closed/);
    // Answered again once the pause is over.
    expect(await waitFor(async () => (await store.get(records[0]!.id).catch(() => null)) !== null, 10_000)).toBe(true);
  });

  it("with eviction: 'refuse', reads wait for the policy check and are answered once it passes", async () => {
    const client = newClient();
    await client.ping();
    const store = new RedisStore({ client, namespace, logger: silentLogger, eviction: 'refuse' });
    // The first reads of a fresh store: held until the check (INFO) answers, then sent together.
    const trips = countRoundTrips(client);
    expect(await Promise.all(records.map((r) => store.get(r.id)))).toEqual(records);
    trips.stop();
    expect(trips.commands).toEqual({ info: 1, mget: 1 });
    expect(trips.count).toBe(2);
  });
});

describe('batchReads: false', () => {
  it('sends each read as a command of its own', async () => {
    const { store, client } = await readyStore({ batchReads: false });
    const ids = [...records.map((r) => r.id), 'unknown'];
    const before = await readsExecuted(admin);
    const trips = countRoundTrips(client);
    expect(await Promise.all(ids.map((id) => store.get(id)))).toEqual([...records, null]);
    trips.stop();
    expect([trips.count, trips.commands]).toEqual([ids.length, { get: ids.length }]);
    expect(since(before, await readsExecuted(admin))).toEqual({ get: ids.length, mget: 0 });
  });

  it('is checked: true or false', () => {
    expect(() => new RedisStore({ client: admin, batchReads: 'no' as unknown as boolean })).toThrow(/batchReads must be true or false/);
  });
});
