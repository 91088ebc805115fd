// The lazy store: it stands in for the store its loader makes, in every method of the contract.
import { describe, expect, it } from 'vitest';
import { tillError } from '../src/errors.js';
import { lazyStore, type LoadedStore } from '../src/store/lazy.js';
import { MemoryStore } from '../src/store/memory.js';
import { describeStoreConformance, sampleRecord } from './store-conformance.js';

const noError = (error: unknown) => {
  throw error;
};

describeStoreConformance('lazy memory', async () => {
  const store = lazyStore('memory', async () => ({ store: new MemoryStore() }), noError);
  return { stores: async () => [store, store], cleanup: async () => {} };
});

describe('lazyStore', () => {
  it('answers at once what it can, and makes every other call wait for the store, with all its arguments', async () => {
    let made: (loaded: LoadedStore) => void = () => {};
    const memory = new MemoryStore();
    let released = 0;
    const lazy = lazyStore('memory', () => new Promise((resolve) => (made = resolve)), noError);
    expect(lazy.kind).toBe('memory');
    // Nothing can be heard before the store is made.
    expect(lazy.invalidationsLost?.()).toBe(true);
    const heard: Array<string | null> = [];
    lazy.onInvalidate((id) => heard.push(id));
    const record = sampleRecord();
    const inserted = lazy.insert(record);
    made({ store: memory, release: () => released++ });
    await inserted;
    expect(lazy.invalidationsLost?.()).toBe(false);
    expect(await lazy.get(record.id)).toEqual(record);
    expect(await lazy.replace({ ...record, name: 'renamed', version: record.version + 1 }, record.version)).toBe(true);
    expect(heard).toEqual([record.id]);
    // The batch id passes too: a batch sent twice counts once.
    const day = new Date().toISOString().slice(0, 10);
    const batch = [{ keyId: record.id, day, counts: { VALID: 2 }, lastUsedAt: null }];
    await lazy.recordUsage(batch, 'w.1');
    await lazy.recordUsage(batch, 'w.1');
    expect((await lazy.readUsage(record.id, 1)).days[0]!.total).toBe(2);
    await lazy.close();
    expect(released).toBe(1);
  });

  it('never subscribes a listener removed before the store is made', async () => {
    let made: (loaded: LoadedStore) => void = () => {};
    const memory = new MemoryStore();
    const lazy = lazyStore('memory', () => new Promise((resolve) => (made = resolve)), noError);
    const heard: Array<string | null> = [];
    lazy.onInvalidate((id) => heard.push(id))();
    made({ store: memory });
    const record = sampleRecord();
    await lazy.insert(record);
    await lazy.replace({ ...record, version: record.version + 1 }, record.version);
    expect(heard).toEqual([]);
    await lazy.close();
  });

  it('when the loader fails: says so once, rejects every call with its error, and still closes', async () => {
    const failure = tillError('MISSING_DEPENDENCY', 'redis', 'REDIS_URL is set but ioredis could not be loaded');
    const errors: unknown[] = [];
    const lazy = lazyStore(
      'redis',
      () => Promise.reject(failure),
      (error) => errors.push(error),
    );
    await expect(lazy.get('x')).rejects.toBe(failure);
    await expect(lazy.consume({ subject: 'x', limits: [], now: 0 })).rejects.toBe(failure);
    await expect(lazy.refund!({ subject: 'x', limits: [], now: 0 })).rejects.toBe(failure);
    await expect(lazy.confirmChanges!()).rejects.toBe(failure);
    expect(errors).toEqual([failure]);
    expect(lazy.invalidationsLost?.()).toBe(true);
    lazy.onInvalidate(() => {})();
    await expect(lazy.close()).resolves.toBeUndefined();
  });
});
