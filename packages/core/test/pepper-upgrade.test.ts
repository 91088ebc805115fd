// A pepper set on a deployment that already has keys: the keys made before still verify, new ones are
// stored as HMAC-SHA-256, and a Till that lacks the pepper refuses HMAC keys as unknown, never throws.
import { afterEach, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '../src/index.js';
import { MemoryStore } from '../src/store/memory.js';

const PEPPER = 'pepper-upgrade-test-0123456789abcdef';

describe('setting a pepper on a store that has keys', () => {
  const open: Till[] = [];
  const till = (options: Parameters<typeof createTill>[0]) => {
    const t = createTill({ logger: silentLogger, auditEvents: false, usage: false, ...options });
    open.push(t);
    return t;
  };
  afterEach(async () => {
    for (const t of open.splice(0)) await t.close();
  });

  it('keeps keys made before it verifying, and stores new keys as hmac-sha256', async () => {
    const store = new MemoryStore();
    const before = till({ store });
    const old = await before.keys.create({ name: 'before the pepper', scopes: ['a'] });
    expect((await store.get(old.record.id))?.hashAlgorithm).toBe('sha256');

    const peppered = till({ store, pepper: PEPPER });
    expect(await peppered.verify(old.key)).toMatchObject({ valid: true, code: 'VALID', key: { id: old.record.id } });
    // From the cache too.
    expect(await peppered.verify(old.key)).toMatchObject({ valid: true, code: 'VALID' });

    const made = await peppered.keys.create({ name: 'after the pepper', scopes: ['a'] });
    expect((await store.get(made.record.id))?.hashAlgorithm).toBe('hmac-sha256');
    expect(await peppered.verify(made.key)).toMatchObject({ valid: true, code: 'VALID', key: { id: made.record.id } });
    // Another process with the same pepper verifies it as well.
    expect(await till({ store, pepper: PEPPER }).verify(made.key)).toMatchObject({ valid: true, code: 'VALID' });
  });

  it('refuses an hmac-sha256 key as NOT_FOUND in a Till without the pepper, never a throw', async () => {
    const store = new MemoryStore();
    const made = await till({ store, pepper: PEPPER }).keys.create({ name: 'peppered', scopes: ['a'] });
    const unpeppered = till({ store });
    // Twice: the store read, then whatever the first answer left in the cache.
    for (let i = 0; i < 2; i++) {
      let result: unknown;
      let thrown: unknown;
      try {
        result = await unpeppered.verify(made.key);
      } catch (error) {
        // The error's message only: it must not carry the key either way.
        thrown = error instanceof Error ? `${error.name}: ${error.message}` : 'a non-Error';
      }
      expect(thrown, 'verify() threw (an adapter would answer 500)').toBeUndefined();
      expect(result).toEqual({ valid: false, code: 'NOT_FOUND' });
    }
  });
});
