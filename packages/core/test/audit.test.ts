// The audit trail on the memory store and on real Redis: every change with its entry, atomically;
// queries by time, key, owner and type; the caps; delete; and never a secret in an entry.
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { toJsonLines, type AuditEntry, type AuditQuery } from '../src/audit/trail.js';
import { TillError } from '../src/errors.js';
import { RedisStore } from '../src/redis/index.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill, type Till } from '../src/till.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

const clients: Redis[] = [];
const namespaces: string[] = [];
afterAll(async () => {
  for (const ns of namespaces) await deleteNamespace(clients[0]!, ns);
  for (const c of clients) c.disconnect();
});

interface Backend {
  name: string;
  store(options?: { auditMaxLength?: number; auditPerKeyMaxLength?: number }): KeyStore;
}

const backends: Backend[] = [
  { name: 'memory', store: (o = {}) => new MemoryStore(o.auditMaxLength === undefined ? {} : { auditMaxLength: o.auditMaxLength }) },
  {
    name: 'redis',
    store: (o = {}) => {
      const client = newClient();
      clients.push(client);
      const namespace = uniqueNamespace();
      namespaces.push(namespace);
      return new RedisStore({ client, namespace, ...o });
    },
  },
];

async function all(till: Till, query: AuditQuery = {}): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await till.keys.audit({ ...query, limit: 2, ...(cursor !== undefined && { cursor }) });
    out.push(...page.entries);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

for (const backend of backends) {
  describe(`audit trail: ${backend.name}`, () => {
    it('records every change with who, why, before and after, and never a key or a hash', async () => {
      const store = backend.store();
      const till = createTill({ store, logger: { warn() {}, error() {} } });
      const secrets: string[] = [];
      const a = await till.keys.create({ name: 'billing', scopes: ['invoices:read'], ownerId: 'team-a' }, { actor: 'alice', reason: 'new service' });
      secrets.push(a.key, (await store.get(a.record.id))!.hash);
      await till.keys.update(a.record.id, { scopes: ['invoices:read', 'invoices:write'] }, { actor: 'bob' });
      await till.keys.disable(a.record.id, { actor: 'bob', reason: 'investigating' });
      await till.keys.enable(a.record.id, { actor: 'bob' });
      const rotated = await till.keys.rotate(a.record.id, { grace: '1h', actor: 'carol', reason: 'yearly rotation' });
      secrets.push(rotated.key, (await store.get(rotated.record.id))!.hash);
      await till.keys.revoke(a.record.id, { actor: 'carol', reason: 'leaked' });

      const entries = await all(till);
      // Revoking the old key as leaked revokes its successor too, filed under the successor with why.
      expect(entries.map((e) => e.type)).toEqual([
        'key.created',
        'key.updated',
        'key.disabled',
        'key.enabled',
        'key.created',
        'key.rotated',
        'key.revoked',
        'key.revoked',
      ]);
      expect(entries.map((e) => e.actor)).toEqual(['alice', 'bob', 'bob', 'bob', 'carol', 'carol', 'carol', 'carol']);
      expect(entries.map((e) => e.reason)).toEqual(['new service', null, 'investigating', null, 'yearly rotation', 'yearly rotation', 'leaked', 'leaked']);
      expect(entries[7]).toMatchObject({ keyId: rotated.record.id, detail: `with its rotation chain (revoked: ${a.record.id})` });
      expect(entries[0]).toMatchObject({
        keyId: a.record.id,
        ownerId: 'team-a',
        before: null,
        after: { id: a.record.id, scopes: ['invoices:read'], version: 1 },
      });
      expect(entries[1]!.before!.scopes).toEqual(['invoices:read']);
      expect(entries[1]!.after!.scopes).toEqual(['invoices:read', 'invoices:write']);
      expect(entries[4]).toMatchObject({ keyId: rotated.record.id, detail: `rotated from ${a.record.id}` });
      expect(entries[5]).toMatchObject({ keyId: a.record.id, detail: `rotated to ${rotated.record.id}` });
      expect(entries[6]!.after!.revokedReason).toBe('leaked');
      // Ids increase, and times never go back.
      for (let i = 1; i < entries.length; i++) {
        expect(entries[i]!.at).toBeGreaterThanOrEqual(entries[i - 1]!.at);
        expect(entries[i]!.id).not.toBe(entries[i - 1]!.id);
      }
      const text = toJsonLines(entries);
      expect(text.split('\n')).toHaveLength(entries.length + 1);
      for (const [i, secret] of secrets.entries()) expect(text.includes(secret), `secret #${i} in the trail`).toBe(false);
      expect(text).not.toMatch(/"hash"|hashAlgorithm/);
    });

    it('answers queries by key, owner, type and time range, a page at a time', async () => {
      let now = 1_900_000_000_000;
      const store = backend.store();
      const till = createTill({ store, clock: () => now, logger: { warn() {}, error() {} } });
      const a = await till.keys.create({ name: 'a', scopes: [], ownerId: 'team-a' });
      now += 1000;
      const b = await till.keys.create({ name: 'b', scopes: [], ownerId: 'team-b' });
      now += 1000;
      await till.keys.revoke(a.record.id);
      await till.keys.update(b.record.id, { name: 'b2' });
      await store.appendAudit([
        {
          type: 'auth.failed',
          at: now,
          keyId: b.record.id,
          ownerId: null,
          actor: null,
          reason: null,
          code: 'INSUFFICIENT_SCOPE',
          ip: '203.0.113.5',
          userAgent: 'curl/8',
        },
      ]);

      expect((await all(till, { keyId: a.record.id })).map((e) => e.type)).toEqual(['key.created', 'key.revoked']);
      expect((await all(till, { keyId: b.record.id })).map((e) => e.type)).toEqual(['key.created', 'key.updated', 'auth.failed']);
      expect((await all(till, { ownerId: 'team-b' })).map((e) => e.type)).toEqual(['key.created', 'key.updated']);
      expect((await all(till, { types: ['key.revoked', 'auth.failed'] })).map((e) => e.type)).toEqual(['key.revoked', 'auth.failed']);
      const failed = (await all(till, { types: ['auth.failed'] }))[0]!;
      expect(failed).toMatchObject({ code: 'INSUFFICIENT_SCOPE', ip: '203.0.113.5', userAgent: 'curl/8', keyId: b.record.id });
      // Time ranges: on Redis the entry times are the server's, so the range is taken from the entries.
      const every = await all(till);
      const second = every[1]!.at;
      const inRange = await all(till, { from: second, to: every[every.length - 1]!.at + 1 });
      expect(inRange.length).toBeGreaterThanOrEqual(every.length - 1);
      expect(inRange.every((e) => e.at >= second)).toBe(true);
      expect(await all(till, { from: every[every.length - 1]!.at + 1 })).toEqual([]);
      await expect(till.keys.audit({ limit: 0 })).rejects.toThrow(TillError);
      await expect(till.keys.audit({ types: ['key.exploded' as never] })).rejects.toThrow(/types must be/);
      await expect(till.keys.audit({ cursor: 'nope' })).rejects.toThrow(/cursor/);
    });

    it('deletes a key but keeps its history, and the key verifies as unknown', async () => {
      const store = backend.store();
      const till = createTill({ store, logger: { warn() {}, error() {} } });
      const a = await till.keys.create({ name: 'short-lived', scopes: ['x'], ownerId: 'team-d', credits: { remaining: 5 } });
      expect((await till.verify(a.key)).valid).toBe(true);
      const deleted = await till.keys.delete(a.record.id, { actor: 'dave', reason: 'project ended' });
      expect(deleted.id).toBe(a.record.id);
      expect(await till.keys.get(a.record.id)).toBeNull();
      expect((await till.verify(a.key)).code).toBe('NOT_FOUND');
      expect((await till.keys.list({ ownerId: 'team-d' })).keys).toEqual([]);
      const trail = await all(till, { keyId: a.record.id });
      expect(trail.map((e) => e.type)).toEqual(['key.created', 'key.deleted']);
      expect(trail[1]).toMatchObject({ actor: 'dave', reason: 'project ended', after: null, before: { id: a.record.id, name: 'short-lived' } });
      await expect(till.keys.delete(a.record.id)).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    });

    it('keeps the trail within its cap', async () => {
      const store = backend.store({ auditMaxLength: 5, auditPerKeyMaxLength: 3 });
      const till = createTill({ store, logger: { warn() {}, error() {} } });
      const a = await till.keys.create({ name: 'busy', scopes: [] });
      for (let i = 0; i < 9; i++) await till.keys.update(a.record.id, { name: `busy ${i}` });
      const entries = await all(till);
      expect(entries).toHaveLength(5);
      expect(entries[entries.length - 1]!.after!.name).toBe('busy 8');
      if (backend.name === 'redis') expect(await all(till, { keyId: a.record.id })).toHaveLength(3);
    });
  });
}

describe('audit trail: Redis atomicity', () => {
  it('saves no change whose entry cannot be written, by construction: one script writes the entry first', async () => {
    const client = newClient();
    clients.push(client);
    const namespace = uniqueNamespace();
    namespaces.push(namespace);
    const store = new RedisStore({ client, namespace });
    const till = createTill({ store, logger: { warn() {}, error() {} } });
    const a = await till.keys.create({ name: 'guarded', scopes: ['x'] });
    // The key's trail made unwritable: a hash where the string of entries should be.
    await client.del(`${namespace}{${a.record.id}}:audit`);
    await client.hset(`${namespace}{${a.record.id}}:audit`, 'not', 'a trail');
    await expect(till.keys.revoke(a.record.id)).rejects.toMatchObject({ code: 'STORE_ERROR' });
    await expect(till.keys.update(a.record.id, { name: 'changed' })).rejects.toMatchObject({ code: 'STORE_ERROR' });
    await expect(till.keys.delete(a.record.id)).rejects.toMatchObject({ code: 'STORE_ERROR' });
    const record = await till.keys.get(a.record.id);
    expect(record).toMatchObject({ name: 'guarded', revokedAt: null, version: 1 });
    expect((await till.verify(a.key)).valid).toBe(true);
    // And the log holds no entry for the changes that were not made.
    expect((await till.keys.audit()).entries.map((e) => e.type)).toEqual(['key.created']);
  });
});
