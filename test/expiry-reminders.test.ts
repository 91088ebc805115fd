// Expiry reminders: the rule, the listing and the finding on memory and on Redis; keys written before
// the index existed (backfilled on first use, or by `reindexExpiries()` when there are many); bad input.
import { afterAll, describe, expect, it } from 'vitest';
import { createAlerts, createTill, MemoryStore, silentLogger, TillError, type KeyStore } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { remindersSuite } from './reminders-suite.js';
import { sampleRecord } from '../packages/core/test/store-conformance.js';
import { encodeRecord } from '../packages/core/src/store/record.js';
import { keySlot } from '../packages/core/src/util/cluster-slot.js';
import { AUTO_REINDEX_MAX, slotTag } from '../packages/core/src/redis/expiry.js';

const redis = newClient();
const namespaces: string[] = [];
const stores: KeyStore[] = [];
function redisStore(namespace: string): RedisStore {
  const store = new RedisStore({ client: redis, namespace });
  stores.push(store);
  return store;
}
function namespace(): string {
  const ns = uniqueNamespace();
  namespaces.push(ns);
  return ns;
}
afterAll(async () => {
  for (const s of stores) await s.close();
  for (const ns of namespaces) await deleteNamespace(redis, ns);
  redis.disconnect();
});

describe('expiry reminders on the memory store', () => {
  remindersSuite({
    stores: async () => {
      const store = new MemoryStore();
      return { a: store, b: store, restarted: null };
    },
  });
});

describe('expiry reminders on Redis', () => {
  remindersSuite({
    stores: async () => {
      const ns = namespace();
      return { a: redisStore(ns), b: redisStore(ns), restarted: () => redisStore(ns) };
    },
  });

  it('keeps each key in a shard of the index in its own Cluster slot', () => {
    for (let slot = 0; slot < 16384; slot += 97) expect(keySlot(`till:{${slotTag(slot)}}:exp`)).toBe(slot);
    const store = redisStore(namespace());
    for (let i = 0; i < 50; i++) {
      const record = sampleRecord();
      expect(keySlot(`x{${slotTag(keySlot(record.id))}}:exp`)).toBe(keySlot(store.recordKey(record.id)));
    }
  });

  /** Writes keys as a version before the index did: the record and the id index, nothing else. */
  async function writeLegacy(ns: string, expiries: Array<number | null>) {
    const records = expiries.map((expiresAt) => sampleRecord({ expiresAt }));
    for (const r of records) {
      await redis.set(`${ns}{${r.id}}:k`, encodeRecord(r));
      await redis.zadd(`${ns}idx:all`, r.createdAt, r.id);
    }
    return records;
  }

  it('indexes keys written before the index existed on first use, when there are few', async () => {
    const ns = namespace();
    const soon = Date.now() + 86_400_000;
    const legacy = await writeLegacy(ns, [soon, soon + 1, null]);
    const till = createTill({ store: redisStore(ns), logger: silentLogger, usage: false, auditEvents: false });
    const page = await till.keys.expiring({ within: '7d' });
    expect(page.complete).toBe(true);
    expect(page.keys.map((k) => k.id)).toEqual([legacy[0]!.id, legacy[1]!.id]);
    expect(await redis.exists(`${ns}exp:indexed`)).toBe(1);
    await till.close();
  });

  it('says the index is incomplete when there are too many keys to index on first use, until reindexExpiries() builds it', async () => {
    const ns = namespace();
    const soon = Date.now() + 86_400_000;
    const [legacy] = await writeLegacy(ns, [soon]);
    // Ids without records (as a crash between index and record leaves them) make up the count.
    const filler: Array<string | number> = [];
    for (let i = 0; i < AUTO_REINDEX_MAX; i++) filler.push(1, `filler${i}`);
    await redis.zadd(`${ns}idx:all`, ...filler);
    const till = createTill({ store: redisStore(ns), logger: silentLogger, usage: false, auditEvents: false });
    const before = await till.keys.expiring({ within: '7d' });
    expect(before).toEqual({ keys: [], complete: false });
    const report = await till.keys.report({ expiringWithin: '7d', neverUsedAfter: '1000d', rotationAge: '1000d' });
    expect(report.expiryIndexComplete).toBe(false);

    // The rule warns once that the index is incomplete, and reminds of what it can.
    const warnings: string[] = [];
    const watched = createTill({
      store: redisStore(ns),
      logger: { warn: (m: string) => warnings.push(m), error() {} },
      usage: false,
      auditEvents: false,
    });
    const alerts = createAlerts(watched, { rules: [{ type: 'key-expiring', days: 7 }], sinks: [() => {}] });
    expect(await alerts.checkExpiring()).toBe(0);
    expect(warnings.filter((w) => w.includes('till audit --reindex'))).toHaveLength(1);

    expect(await till.keys.reindexExpiries()).toEqual({ checked: AUTO_REINDEX_MAX + 1, indexed: 1 });
    const after = await till.keys.expiring({ within: '7d' });
    expect(after).toEqual({ keys: [expect.objectContaining({ id: legacy!.id })], complete: true });
    expect(await alerts.checkExpiring()).toBe(1);
    alerts.stop();
    await watched.close();
    await till.close();
  });

  it('indexes every key written before the index, while other keys are deleted during the rebuild', async () => {
    const ns = namespace();
    const store = redisStore(ns);
    const w = Date.now() + 86_400_000;
    // Keys deleted during the rebuild, created first (they come first in creation order)...
    const doomed = Array.from({ length: 1500 }, () => sampleRecord());
    for (let i = 0; i < doomed.length; i += 250) await Promise.all(doomed.slice(i, i + 250).map((r) => store.insert(r)));
    // ...then keys as an older version wrote them.
    const legacy = Array.from({ length: 1500 }, (_, i) => sampleRecord({ expiresAt: w + i }));
    const pipe = redis.pipeline();
    for (const r of legacy) pipe.set(`${ns}{${r.id}}:k`, encodeRecord(r)).zadd(`${ns}idx:all`, r.createdAt, r.id);
    await pipe.exec();
    const removing = (async () => {
      for (let i = 0; i < doomed.length; i += 100) await Promise.all(doomed.slice(i, i + 100).map((r) => store.remove(r.id, 1)));
    })();
    await Promise.all([store.reindexExpiries(), removing]);
    const page = await store.expiring({ from: w, to: w + 1500, limit: 2000 });
    expect(page.entries.length).toBe(1500);
    expect(new Set(page.entries.map((e) => e.id))).toEqual(new Set(legacy.map((r) => r.id)));
  });

  it('skips an index entry whose record is gone or changed (as a process older than the index leaves them)', async () => {
    const ns = namespace();
    const store = redisStore(ns);
    const till = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
    const gone = await till.keys.create({ name: 'gone', scopes: [], expiresIn: '2d' });
    const kept = await till.keys.create({ name: 'kept', scopes: [], expiresIn: '3d' });
    // An older process deletes the record without touching the index.
    await redis.del(store.recordKey(gone.record.id));
    expect((await till.keys.expiring({ within: '7d' })).keys.map((k) => k.id)).toEqual([kept.record.id]);
    await till.close();
  });
});

describe('the key-expiring rule on its own', () => {
  it('checks once at start without being asked, and goes quiet when stopped', async () => {
    const till = createTill({ logger: silentLogger, usage: false, auditEvents: false });
    const key = await till.keys.create({ name: 'soon', scopes: [], expiresIn: '1d' });
    const got: string[] = [];
    const alerts = createAlerts(till, { rules: [{ type: 'key-expiring', days: 2, every: '1h' }], sinks: [(a) => void got.push(a.subject)] });
    expect(await waitFor(() => got.length === 1, 5000)).toBe(true);
    expect(got).toEqual([key.record.id]);
    alerts.stop();
    await till.close();
  });

  it('logs a failing check once per outage and rejects checkExpiring() with the store error, never throwing elsewhere', async () => {
    const down = newClient();
    down.disconnect();
    const errors: string[] = [];
    const till = createTill({
      store: new RedisStore({ client: down, namespace: namespace() }),
      logger: { warn() {}, error: (m: string) => void errors.push(m) },
      usage: false,
      auditEvents: false,
    });
    const alerts = createAlerts(till, { rules: [{ type: 'key-expiring', days: 7 }], sinks: [() => {}] });
    await expect(alerts.checkExpiring()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(alerts.checkExpiring()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await alerts.idle();
    expect(errors.filter((m) => m.includes('key-expiring: the expiry check failed'))).toHaveLength(1);
    alerts.stop();
    await till.close();
  });
});

describe('expiry reminders refuse bad input with typed errors', () => {
  const till = createTill({ logger: silentLogger, usage: false, auditEvents: false });

  it('in the listing and the report', async () => {
    const bad: unknown[] = [
      null,
      {},
      { within: 'soon' },
      { within: -1 },
      { within: '7d', limit: 0 },
      { within: '7d', limit: 1001 },
      { within: '7d', limit: 1.5 },
      { within: '7d', cursor: 'not a cursor' },
      { within: '7d', cursor: 42 },
      { within: '7d', ownerId: '' },
    ];
    for (const options of bad) {
      const error = await till.keys.expiring(options as never).catch((e: unknown) => e);
      expect(error, JSON.stringify(options)).toBeInstanceOf(TillError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(till.keys.report({ expiringWithin: 'x' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.claimReminder('no such id!', 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.claimReminder(sampleRecord().id, 1.5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('in the rule', () => {
    const rules: unknown[] = [
      { type: 'key-expiring' },
      { type: 'key-expiring', days: 0 },
      { type: 'key-expiring', days: 1.5 },
      { type: 'key-expiring', days: 3651 },
      { type: 'key-expiring', days: 7, every: '500ms' },
      { type: 'key-expiring', days: 7, every: 'often' },
    ];
    for (const rule of rules) expect(() => createAlerts(till, { rules: [rule as never], sinks: [() => {}] }), JSON.stringify(rule)).toThrow(TillError);
    expect(() =>
      createAlerts(till, {
        rules: [
          { type: 'key-expiring', days: 7 },
          { type: 'key-expiring', days: 30 },
        ],
        sinks: [() => {}],
      }),
    ).toThrow(/at most one key-expiring rule/);
  });

  it('and a store without an index says so', async () => {
    const without = new Set<PropertyKey>(['expiring', 'claimReminder', 'reindexExpiries']);
    const bare = new Proxy(new MemoryStore(), { get: (target, name) => (without.has(name) ? undefined : Reflect.get(target, name)) });
    const plain = createTill({ store: bare, logger: silentLogger, usage: false, auditEvents: false });
    await expect(plain.keys.expiring({ within: '7d' })).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });
});
