// KeyManager.identify: whether a presented key is the real one, judged by its secret, never by its public id.
import { describe, expect, it } from 'vitest';
import { createTill, isTillError, silentLogger, type KeyIdentity, type Till } from '../src/index.js';
import { MemoryStore } from '../src/store/memory.js';
import { RedisStore } from '../src/redis/index.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { madeUpKey, wrongSecretKey } from '@till/testkit/key-forgery';

const PEPPER = 'identify-test-pepper-0123456789';
const OTHER_PEPPER = 'another-pepper-of-some-service!!';

/** The result holds nothing of the stored digest nor of the secret. */
async function expectNoSecrets(till: Till, key: string, result: KeyIdentity): Promise<void> {
  const text = JSON.stringify(result);
  const record = await till.store.get(result.id);
  if (record !== null) expect(text.includes(record.hash)).toBe(false);
  expect(text.includes(key.slice(-28, -6))).toBe(false);
  expect(Object.keys(result).sort()).toEqual(result.status === undefined ? ['id', 'match', 'prefix'] : ['id', 'match', 'prefix', 'status']);
}

describe('KeyManager.identify', () => {
  it('confirms a real key with its status, and calls a forged key with a real id a mismatch', async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger });
    try {
      const real = await till.keys.create({ name: 'real', scopes: ['a'], prefix: 'sk_live' });
      const confirmed = await till.keys.identify(real.key);
      expect(confirmed).toEqual({ id: real.record.id, prefix: 'sk_live', match: 'confirmed', status: 'active' });

      // Ids are public: the id of a real key, any secret and a recomputed check.
      const forged = wrongSecretKey(real.key);
      const mismatch = await till.keys.identify(forged);
      expect(mismatch).toEqual({ id: real.record.id, prefix: 'sk_live', match: 'mismatch' });

      const unknown = madeUpKey('sk_live');
      expect((await till.keys.identify(unknown)).match).toBe('unknown');

      await till.keys.revoke(real.record.id);
      expect(await till.keys.identify(real.key)).toMatchObject({ match: 'confirmed', status: 'revoked' });
      for (const [key, result] of [
        [real.key, confirmed],
        [forged, mismatch],
      ] as const)
        await expectNoSecrets(till, key, result);
    } finally {
      await till.close();
    }
  });

  it('charges nothing, records no usage and emits no event', async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger });
    try {
      const real = await till.keys.create({
        name: 'one use',
        scopes: ['a'],
        credits: { remaining: 1 },
        limits: [{ name: 'per-minute', limit: 1, window: '1m' }],
      });
      const events: unknown[] = [];
      till.events.on((event) => events.push(event));
      for (let i = 0; i < 5; i++) {
        expect((await till.keys.identify(real.key)).match).toBe('confirmed');
        expect((await till.keys.identify(wrongSecretKey(real.key))).match).toBe('mismatch');
      }
      await till.usage!.flush();
      expect(events).toEqual([]);
      expect(await till.keys.credits(real.record.id)).toBe(1);
      expect((await till.keys.usage(real.record.id)).days.every((d) => Object.keys(d.counts).length === 0)).toBe(true);
      expect((await till.verify(real.key)).code).toBe('VALID');
    } finally {
      await till.close();
    }
  });

  it('with a pepper: confirmed under the same pepper, mismatch under another, unconfirmable without one', async () => {
    const store = new MemoryStore();
    const made = createTill({ store, pepper: PEPPER, logger: silentLogger });
    const other = createTill({ store, pepper: OTHER_PEPPER, logger: silentLogger });
    const none = createTill({ store, logger: silentLogger });
    try {
      const real = await made.keys.create({ name: 'peppered', scopes: ['a'] });
      expect(await made.keys.identify(real.key)).toMatchObject({ match: 'confirmed', status: 'active' });
      expect(await other.keys.identify(real.key)).toEqual({ id: real.record.id, prefix: 'till', match: 'mismatch' });
      expect(await none.keys.identify(real.key)).toEqual({ id: real.record.id, prefix: 'till', match: 'unconfirmable' });
      expect((await none.keys.identify(wrongSecretKey(real.key))).match).toBe('unconfirmable');
      // A SHA-256 key is checked by a peppered manager too (the record says how it was stored).
      const plain = await none.keys.create({ name: 'plain', scopes: ['a'] });
      expect((await made.keys.identify(plain.key)).match).toBe('confirmed');
      expect((await made.keys.identify(wrongSecretKey(plain.key))).match).toBe('mismatch');
    } finally {
      for (const t of [made, other, none]) await t.close();
    }
  });

  it('refuses what is not a whole key with a typed error that does not repeat it', async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger });
    try {
      const real = await till.keys.create({ name: 'x', scopes: ['a'] });
      const badCheck = real.key.slice(0, -1) + (real.key.endsWith('0') ? '1' : '0');
      for (const bad of ['', 'nope', real.key.slice(0, 40), badCheck, 42 as unknown as string]) {
        const error = await till.keys.identify(bad).then(
          () => null,
          (e: unknown) => e,
        );
        expect(isTillError(error) && error.code === 'INVALID_ARGUMENT', String(error)).toBe(true);
        if (typeof bad === 'string' && bad.length > 8) expect((error as Error).message.includes(bad.slice(5, 30))).toBe(false);
      }
    } finally {
      await till.close();
    }
  });

  it('on a real Redis: confirmed, mismatch and unknown', async () => {
    const client = newClient();
    const namespace = uniqueNamespace();
    const store = new RedisStore({ client, namespace });
    const till = createTill({ store, pepper: PEPPER, logger: silentLogger });
    try {
      const real = await till.keys.create({ name: 'on redis', scopes: ['a'] });
      expect(await till.keys.identify(real.key)).toEqual({ id: real.record.id, prefix: 'till', match: 'confirmed', status: 'active' });
      expect((await till.keys.identify(wrongSecretKey(real.key))).match).toBe('mismatch');
      expect((await till.keys.identify(madeUpKey())).match).toBe('unknown');
    } finally {
      await till.close();
      await store.close();
      await deleteNamespace(client, namespace);
      client.disconnect();
    }
  });
});
