// The Redis store on a real Redis Cluster (3 primaries, 3 replicas): the store conformance suite, an
// Express app verifying, limiting, auditing and counting usage across processes' clients, and reads of
// many slots batched per node.
import express from 'express';
import { Cluster } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth, rateLimit, requireScopes } from '@till/express';
import { describeStoreConformance } from '../packages/core/test/store-conformance.js';
import { startCluster, type RunningCluster } from '@till/testkit/redis-cluster';
import { uniqueNamespace } from '@till/testkit/redis';
import { countRoundTrips } from '@till/testkit/round-trips';
import { keySlot } from '../packages/core/src/util/cluster-slot.js';
import { remindersSuite } from './reminders-suite.js';

let cluster: RunningCluster | undefined;
let starting: Promise<RunningCluster> | undefined;
const clients: Cluster[] = [];

/** One cluster for the whole file, started on first use. */
function theCluster(): Promise<RunningCluster> {
  starting ??= startCluster().then((c) => (cluster = c));
  return starting;
}

function clusterClient(nodes: RunningCluster['nodes']): Cluster {
  const client = new Cluster([...nodes], { redisOptions: { maxRetriesPerRequest: 1 }, clusterRetryStrategy: () => 100 });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await cluster?.stop();
}, 30_000);

describeStoreConformance('redis cluster', async () => {
  const { nodes } = await theCluster();
  const namespace = uniqueNamespace();
  return {
    confirmsSubscription: true,
    stores: async () => [
      new RedisStore({ client: clusterClient(nodes), namespace, limitClock: 'caller' }),
      new RedisStore({ client: clusterClient(nodes), namespace, limitClock: 'caller' }),
    ],
    // The cluster is thrown away at the end of the file.
    cleanup: async () => {},
  };
});

describe('an Express app on Redis Cluster', () => {
  let admin: Till;
  let served: Till;
  beforeAll(async () => {
    const { nodes } = await theCluster();
    const namespace = uniqueNamespace();
    admin = createTill({ store: new RedisStore({ client: clusterClient(nodes), namespace }), logger: silentLogger });
    served = createTill({
      store: new RedisStore({ client: clusterClient(nodes), namespace }),
      logger: silentLogger,
      auditEvents: { interval: 60_000 },
      usage: { interval: 60_000 },
    });
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await served?.close();
  });

  it('verifies, limits, hears revocations, and keeps the audit trail and usage', async () => {
    const { key, record } = await admin.keys.create({
      name: 'on cluster',
      scopes: [],
      ownerId: 'team-c',
      limits: [{ name: 'per-minute', limit: 3, window: '1m' }],
      credits: { remaining: 10 },
    });
    const app = express();
    app.set('trust proxy', true);
    app.get(
      '/',
      apiKeyAuth({ till: served, bruteForce: { threshold: 3, window: '1m', block: '1m' } }),
      rateLimit({ till: served, name: 'route', limit: 100, window: '1m' }),
      (_req, res) => {
        res.send('ok');
      },
    );
    const get = () => request(app).get('/').set('authorization', `Bearer ${key}`).set('x-forwarded-for', '198.51.100.50');
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    const limited = await get();
    expect(limited.status).toBe(429);
    expect(limited.headers.ratelimit).toMatch(/^"per-minute";r=0;t=\d+/);
    expect(await admin.keys.credits(record.id)).toBe(7);
    await admin.keys.revoke(record.id, { reason: 'cluster test', actor: 'ops' });
    // Published by the script on one node, heard through the cluster by the other client.
    const deadline = Date.now() + 3000;
    let status = 0;
    while (Date.now() < deadline && status !== 401) status = (await get()).status;
    expect(status).toBe(401);
    await served.auditWriter!.flush();
    await served.usage!.flush();
    const trail = await admin.keys.audit({ keyId: record.id });
    expect(trail.entries.map((e) => e.type)).toEqual(expect.arrayContaining(['key.created', 'key.revoked', 'limit.refused', 'key.misused']));
    expect((await admin.keys.audit({ ownerId: 'team-c', types: ['key.revoked'] })).entries).toHaveLength(1);
    const usage = await admin.keys.usage(record.id, { days: 1 });
    expect(usage.days[0]!.counts.VALID).toBe(3);
    expect(usage.lastUsedAt).not.toBeNull();
    await admin.keys.delete(record.id);
    expect(await admin.keys.get(record.id)).toBeNull();
  }, 30_000);

  it("charges a rotation chain's one balance from every key of the chain, each in one script", async () => {
    const first = await admin.keys.create({
      name: 'chain on cluster',
      scopes: [],
      limits: [{ name: 'per-minute', limit: 100, window: '1m' }],
      credits: { remaining: 12 },
    });
    const keys = [first.key];
    let id = first.record.id;
    for (let i = 0; i < 3; i++) {
      const rotated = await admin.keys.rotate(id, { grace: '1h' });
      keys.push(rotated.key);
      id = rotated.record.id;
    }
    let admitted = 0;
    for (let round = 0; round < 5; round++) {
      for (const key of keys) {
        const result = await served.verify(key);
        if (result.valid) admitted++;
        else expect(result.code).toBe('USAGE_EXCEEDED');
      }
    }
    expect(admitted).toBe(12);
    expect(await admin.keys.credits(id)).toBe(0);
  }, 30_000);

  it('charges keys of many slots that arrive in one turn, each in a call of its own slot', async () => {
    const created = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => admin.keys.create({ name: `slot ${i}`, scopes: [], limits: [{ name: 'per-minute', limit: 2, window: '1m' }] })),
    );
    const results = await Promise.all(created.flatMap(({ key }) => [key, key, key].map((k) => served.verify(k))));
    for (let i = 0; i < created.length; i++) {
      const mine = results.slice(i * 3, i * 3 + 3);
      expect(mine.filter((r) => r.valid)).toHaveLength(2);
      expect(mine.filter((r) => !r.valid).map((r) => (r.valid ? null : r.code))).toEqual(['RATE_LIMITED']);
    }
  }, 30_000);
});

describe('changes confirmed by replicas on Redis Cluster', () => {
  it('resolves a revocation once a replica has it, on whichever primary took it', async () => {
    const { nodes } = await theCluster();
    const namespace = uniqueNamespace();
    const till = createTill({ store: new RedisStore({ client: clusterClient(nodes), namespace, replicas: 1, replicaTimeout: 2000 }), logger: silentLogger });
    try {
      const made = await Promise.all(Array.from({ length: 6 }, (_, i) => till.keys.create({ name: `replicated ${i}`, scopes: [] })));
      // Keys spread over the primaries: each revocation waits for the replica of its own.
      for (const k of made) expect(await till.keys.revoke(k.record.id)).toMatchObject({ revokedReason: 'revoked' });
      const other = await till.keys.create({ name: 'disabled, then updated', scopes: [] });
      expect(await till.keys.disable(other.record.id)).toMatchObject({ disabled: true });
      expect(await till.keys.update(other.record.id, { name: 'renamed' })).toMatchObject({ name: 'renamed' });
      await till.keys.delete(made[1]!.record.id);
      for (const k of made.slice(2)) expect((await till.verify(k.key)).code).toBe('REVOKED');
    } finally {
      await till.close();
    }
  }, 30_000);
});

describe('batched reads on Redis Cluster', () => {
  it("computes each key's slot as Redis Cluster does", async () => {
    const client = clusterClient((await theCluster()).nodes);
    const keys = ['till:{k_abc}:k', 'no tag', 'till:{}:k', 'a{b}c{d}', '{x', 'x}{', 'clé {schlüssel}', '', 'till:{k_7Yq2}:cr'];
    for (let i = 0; i < 40; i++) keys.push(`till-test:{${generateKey('till').id}}:k`);
    for (const key of keys) expect([key, keySlot(key)]).toEqual([key, await client.cluster('KEYSLOT', key)]);
  });

  it('answers reads of ids on many slots, one pipeline per primary (a command per slot); batchReads: false sends one command per read', async () => {
    const { nodes } = await theCluster();
    const namespace = uniqueNamespace();
    const admin = createTill({ store: new RedisStore({ client: clusterClient(nodes), namespace }), logger: silentLogger, usage: false, auditEvents: false });
    const made = [];
    for (let i = 0; i < 24; i++) made.push(await admin.keys.create({ name: `spread ${i}`, scopes: [] }));
    const ids = [...made.map((m) => m.record.id), 'unknown-a', 'unknown-b'];
    for (const batchReads of [true, false]) {
      const client = clusterClient(nodes);
      const store = new RedisStore({ client, namespace, batchReads, logger: silentLogger });
      // Connected to every primary (and past the eviction check) before counting.
      await Promise.all(ids.map((id) => store.get(id)));
      const primaries = new Set(await Promise.all(ids.map(async (id) => client.slots[Number(await client.cluster('KEYSLOT', store.recordKey(id)))]![0])));
      const trips = countRoundTrips(client);
      const answers = await Promise.all(ids.map((id) => store.get(id)));
      trips.stop();
      expect(answers.map((r) => r?.id ?? null)).toEqual([...made.map((m) => m.record.id), null, null]);
      // Batched: one command per slot, an MGET where a slot has several of the ids (a GET for one).
      const perSlot = new Map<number, number>();
      for (const id of ids) perSlot.set(keySlot(store.recordKey(id)), (perSlot.get(keySlot(store.recordKey(id))) ?? 0) + 1);
      const shared = [...perSlot.values()].filter((n) => n > 1).length;
      const batchedCommands = { get: perSlot.size - shared, ...(shared > 0 && { mget: shared }) };
      expect(trips.commands).toEqual(batchReads ? batchedCommands : { get: ids.length });
      expect(trips.count).toBe(batchReads ? primaries.size : ids.length);
      expect(primaries.size).toBeGreaterThan(1);
      // Through a verifier with nothing cached: every key's miss answered.
      const till = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
      expect((await Promise.all(made.map((m) => till.verify(m.key)))).map((r) => r.code)).toEqual(made.map(() => 'VALID'));
      await till.close();
    }
    await admin.close();
  }, 30_000);
});

describe('expiry reminders on Redis Cluster', () => {
  remindersSuite({
    stores: async () => {
      const { nodes } = await theCluster();
      const namespace = uniqueNamespace();
      const store = () => new RedisStore({ client: clusterClient(nodes), namespace });
      return { a: store(), b: store(), restarted: store };
    },
  });
});

describe('roles and IP allowlists on Redis Cluster', () => {
  it('an app in another process hears role changes and refuses addresses outside a key’s allowlist', async () => {
    const { nodes } = await theCluster();
    const namespace = uniqueNamespace();
    const admin = createTill({ store: new RedisStore({ client: clusterClient(nodes), namespace }), logger: silentLogger });
    const served = createTill({ store: new RedisStore({ client: clusterClient(nodes), namespace }), logger: silentLogger, usage: false });
    await admin.roles.define('cluster-reports', ['reports:read']);
    const { key } = await admin.keys.create({ name: 'office', scopes: [], roles: ['cluster-reports'], allowedIps: ['198.51.100.0/24'] });
    const app = express();
    app.set('trust proxy', true);
    app.get('/reports', apiKeyAuth({ till: served }), requireScopes('reports:read'), (req, res) => {
      res.json({ scopes: req.apiKey!.scopes });
    });
    const from = (ip: string) => request(app).get('/reports').set('authorization', `Bearer ${key}`).set('x-forwarded-for', ip);
    const ok = await from('198.51.100.50');
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ scopes: ['reports:read'] });
    const refused = await from('203.0.113.9');
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    // The role changed by the other process: its announcement crosses the cluster to the served app.
    await admin.roles.define('cluster-reports', ['reports:list']);
    const deadline = Date.now() + 3000;
    let status = 0;
    while (Date.now() < deadline && status !== 403) status = (await from('198.51.100.50')).status;
    expect(status).toBe(403);
    const { entries } = await admin.keys.audit({ types: ['role.defined'] });
    expect(entries.map((e) => e.detail)).toEqual(['role cluster-reports: reports:read', 'role cluster-reports: reports:list (was: reports:read)']);
    await admin.close();
    await served.close();
  }, 60_000);
});
