import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTill, type Till } from '../src/index.js';
import { MemoryStore } from '../src/store/memory.js';
import { RedisStore } from '../src/redis/index.js';
import { isTillError } from '../src/errors.js';
import type { KeyStore } from '../src/store/types.js';
import type { TillEvent } from '../src/audit/events.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

const clients: Array<ReturnType<typeof newClient>> = [];
const namespaces: string[] = [];

afterAll(async () => {
  for (const [i, client] of clients.entries()) {
    await deleteNamespace(client, namespaces[i]!);
    client.disconnect();
  }
});

const backends: Array<[string, () => KeyStore]> = [
  ['memory', () => new MemoryStore()],
  [
    'redis',
    () => {
      const client = newClient();
      const namespace = uniqueNamespace();
      clients.push(client);
      namespaces.push(namespace);
      return new RedisStore({ client, namespace });
    },
  ],
];

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (!isTillError(error)) throw error;
    return { code: error.code, message: error.message };
  }
  throw new Error('expected a rejection');
}

describe.each(backends)('identities on the %s store', (_kind, makeStore) => {
  const tills: Till[] = [];
  afterAll(async () => {
    for (const till of tills) await till.close();
  });
  const newTill = (store = makeStore()): Till => {
    const till = createTill({ store, auditEvents: false, usage: false, actor: 'test' });
    tills.push(till);
    return till;
  };

  it('creates, reads, updates, lists and deletes identities, each change audited and told as an event', async () => {
    const till = newTill();
    const events: TillEvent[] = [];
    till.events.on((e) => events.push(e));
    const created = await till.identities.create({
      id: 'acme',
      name: 'Acme Corp',
      metadata: { plan: 'pro' },
      limits: [{ name: 'per-minute', limit: 100, window: '1m' }],
      credits: { remaining: 500 },
      allowedIps: ['203.0.113.0/24'],
      roles: ['reporting'],
    });
    expect(created).toMatchObject({ id: 'acme', name: 'Acme Corp', version: 1, limits: [{ name: 'per-minute', limit: 100, window: 60_000 }] });
    expect(created.credits).toMatchObject({ remaining: 500, generation: 1 });
    expect(await till.identities.get('acme')).toEqual(created);
    expect(await till.identities.get('nobody')).toBeNull();
    expect((await rejection(till.identities.create({ id: 'acme', name: 'again' }))).code).toBe('IDENTITY_EXISTS');

    const drawn = await till.identities.create({ name: 'no id given' });
    expect(drawn.id).toMatch(/^id_[0-9A-Za-z]{16}$/);

    const updated = await till.identities.update('acme', { name: 'Acme', credits: { remaining: 10 }, roles: [] }, { reason: 'downgrade' });
    expect(updated).toMatchObject({ name: 'Acme', version: 2, roles: [], allowedIps: ['203.0.113.0/24'] });
    expect(updated.credits).toMatchObject({ remaining: 10, generation: 2 });
    expect((await rejection(till.identities.update('ghost', { name: 'x' }))).code).toBe('IDENTITY_NOT_FOUND');

    const page1 = await till.identities.list({ limit: 1 });
    expect(page1.identities.map((i) => i.id)).toEqual(['acme']);
    const page2 = await till.identities.list({ limit: 1, cursor: page1.cursor! });
    expect(page2.identities.map((i) => i.id)).toEqual([drawn.id]);

    const deleted = await till.identities.delete(drawn.id);
    expect(deleted).toEqual({ identity: drawn, keys: 0 });
    expect(await till.identities.get(drawn.id)).toBeNull();

    const trail = await till.keys.audit({ identityId: 'acme' });
    expect(trail.entries.map((e) => e.type)).toEqual(['identity.created', 'identity.updated']);
    expect(trail.entries[1]).toMatchObject({ actor: 'test', reason: 'downgrade', keyId: null, identityId: 'acme' });
    expect(trail.entries[1]!.identityBefore).toMatchObject({ name: 'Acme Corp', version: 1 });
    expect(trail.entries[1]!.identityAfter).toMatchObject({ name: 'Acme', version: 2 });
    const all = await till.keys.audit({ types: ['identity.deleted'] });
    expect(all.entries.map((e) => e.identityId)).toEqual([drawn.id]);
    expect(events.filter((e) => e.type.startsWith('identity.')).map((e) => e.type)).toEqual([
      'identity.created',
      'identity.created',
      'identity.updated',
      'identity.deleted',
    ]);
  });

  it('gives keys an identity that exists, and refuses to delete an identity with keys unless forced, saying how many', async () => {
    const till = newTill();
    await till.identities.create({ id: 'team-1', name: 'Team 1' });
    await till.identities.create({ id: 'team-2', name: 'Team 2' });
    expect((await rejection(till.keys.create({ name: 'k', scopes: [], identityId: 'missing' }))).code).toBe('IDENTITY_NOT_FOUND');
    expect((await rejection(till.keys.create({ name: 'k', scopes: [], identityId: 'bad id{' }))).code).toBe('INVALID_ARGUMENT');
    const a = await till.keys.create({ name: 'a', scopes: [], identityId: 'team-1' });
    const b = await till.keys.create({ name: 'b', scopes: [], identityId: 'team-1' });
    expect(a.record.identityId).toBe('team-1');
    expect(await till.identities.keyCount('team-1')).toBe(2);
    expect((await till.keys.list({ identityId: 'team-1' })).keys.map((k) => k.id).sort()).toEqual([a.record.id, b.record.id].sort());

    const refused = await rejection(till.identities.delete('team-1'));
    expect(refused.code).toBe('IDENTITY_IN_USE');
    expect(refused.message).toContain('2 keys');

    // Moving a key and deleting one update the count.
    await till.keys.update(b.record.id, { identityId: 'team-2' });
    expect(await till.identities.keyCount('team-1')).toBe(1);
    expect(await till.identities.keyCount('team-2')).toBe(1);
    expect((await rejection(till.keys.update(b.record.id, { identityId: 'nope' }))).code).toBe('IDENTITY_NOT_FOUND');
    await till.keys.update(b.record.id, { identityId: null });
    expect(await till.identities.keyCount('team-2')).toBe(0);
    await till.identities.delete('team-2');

    expect((await rejection(till.identities.delete('team-1'))).message).toContain('1 key:');
    const forced = await till.identities.delete('team-1', { force: true, reason: 'customer left' });
    expect(forced.keys).toBe(1);
    const entry = (await till.keys.audit({ identityId: 'team-1', types: ['identity.deleted'] })).entries[0]!;
    expect(entry).toMatchObject({ detail: 'forced with 1 key', reason: 'customer left' });
  });

  it('answers any input with an identity or a typed INVALID_ARGUMENT, never another error (fuzz)', async () => {
    const till = newTill();
    const anything = fc.oneof(fc.anything(), fc.string(), fc.array(fc.string()), fc.array(fc.anything()), fc.constant(undefined), fc.constant(null));
    const input = fc.record(
      {
        id: fc.oneof(fc.string({ maxLength: 80 }), anything),
        name: fc.oneof(fc.string({ maxLength: 210 }), anything),
        metadata: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), anything),
        limits: fc.oneof(fc.array(fc.record({ name: fc.string(), limit: fc.integer(), window: fc.oneof(fc.string(), fc.integer()) })), anything),
        credits: fc.oneof(fc.record({ remaining: fc.integer() }), anything),
        allowedIps: fc.oneof(fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string())), anything),
        roles: fc.oneof(fc.array(fc.string()), anything),
        extra: anything,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(input, async (given) => {
        for (const call of [
          () => till.identities.create(given as never),
          () => till.identities.update(typeof given.id === 'string' ? given.id : 'x', given as never),
          () => till.identities.get(given.id as never),
          () => till.identities.delete(given.id as never, given as never),
        ]) {
          try {
            await call();
          } catch (error) {
            if (!isTillError(error) || !['INVALID_ARGUMENT', 'IDENTITY_EXISTS', 'IDENTITY_NOT_FOUND', 'IDENTITY_IN_USE'].includes(error.code)) throw error;
          }
        }
      }),
      { numRuns: _kind === 'memory' ? 300 : 60 },
    );
  });
});
