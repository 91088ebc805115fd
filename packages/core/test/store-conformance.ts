// The conformance suite every KeyStore runs: the memory store and the Redis store pass the same tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import { generateKey } from '../src/key-format.js';
import type { KeyRecord } from '../src/record.js';
import type { KeyStore } from '../src/store/types.js';

export interface StoreHarness {
  /** A store, and a second one on the same data as another process would have it. */
  stores(): Promise<[KeyStore, KeyStore]>;
  cleanup(): Promise<void>;
}

let seq = 0;
export function sampleRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const { id, prefix } = generateKey('till_test');
  const createdAt = 1_700_000_000_000 + seq++;
  return {
    id,
    prefix,
    hash: Buffer.alloc(32, seq).toString('base64url'),
    hashAlgorithm: 'sha256',
    name: `key ${seq}`,
    ownerId: null,
    scopes: ['users:read'],
    metadata: { plan: 'pro', nested: { n: 1 } },
    createdAt,
    updatedAt: createdAt,
    expiresAt: null,
    notBefore: null,
    revokedAt: null,
    revokedReason: null,
    disabled: false,
    rotatedFrom: null,
    rotatedTo: null,
    version: 1,
    ...overrides,
  };
}

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function listAll(store: KeyStore, query: { ownerId?: string; limit?: number }): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...query, ...(cursor !== undefined && { cursor }) });
    ids.push(...page.keys.map((k) => k.id));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return ids;
}

export function describeStoreConformance(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`KeyStore conformance: ${name}`, () => {
    let harness: StoreHarness;
    let store: KeyStore;
    let other: KeyStore;

    beforeAll(async () => {
      harness = await makeHarness();
      [store, other] = await harness.stores();
    });
    afterAll(async () => {
      await store.close();
      await other.close();
      await harness.cleanup();
    });

    it('answers null for an unknown id', async () => {
      expect(await store.get(generateKey('till_test').id)).toBeNull();
    });

    it('returns what was inserted, field for field, to every process', async () => {
      const record = sampleRecord({ ownerId: 'team-a', expiresAt: 1_800_000_000_000, notBefore: 1_700_000_000_000 });
      await store.insert(record);
      expect(await store.get(record.id)).toEqual(record);
      expect(await other.get(record.id)).toEqual(record);
    });

    it('refuses a second insert of the same id and keeps the first', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const err = await store.insert({ ...record, name: 'impostor' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TillError);
      expect((err as TillError).code).toBe('KEY_EXISTS');
      expect((await store.get(record.id))?.name).toBe(record.name);
    });

    it('hands out copies: changing a returned record changes nothing stored', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const got = (await store.get(record.id)) as unknown as { scopes: string[]; metadata: Record<string, unknown> };
      got.scopes.push('admin');
      got.metadata.plan = 'free';
      expect(await store.get(record.id)).toEqual(record);
    });

    it('replaces only against the current version', async () => {
      const record = sampleRecord();
      await store.insert(record);
      expect(await store.replace({ ...record, name: 'v2', version: 2 }, 1)).toBe(true);
      expect(await store.replace({ ...record, name: 'stale', version: 2 }, 1)).toBe(false);
      expect(await other.get(record.id)).toMatchObject({ name: 'v2', version: 2 });
      const err = await store.replace(sampleRecord(), 1).catch((e: unknown) => e);
      expect((err as TillError).code).toBe('KEY_NOT_FOUND');
    });

    it('lets exactly one of many concurrent replaces of one version win', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).replace({ ...record, name: `w${i}`, version: 2 }, 1)),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect((await store.get(record.id))?.name).toBe(`w${winner}`);
    });

    it('tells every process sharing the store about a change, until unsubscribed', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const heard: Array<string | null> = [];
      const off = other.onInvalidate((id) => heard.push(id));
      // A subscription may take a moment to be in place (Redis SUBSCRIBE is a round trip).
      await new Promise((r) => setTimeout(r, 100));
      await store.replace({ ...record, version: 2 }, 1);
      await waitFor(() => heard.includes(record.id));
      off();
      await store.replace({ ...record, version: 3 }, 2);
      await new Promise((r) => setTimeout(r, 100));
      expect(heard.filter((id) => id === record.id)).toHaveLength(1);
    });

    it('lists in creation order, a page at a time, and by owner', async () => {
      const mine = Array.from({ length: 7 }, (_, i) => sampleRecord({ ownerId: `owner-${name}-list`, createdAt: 1_750_000_000_000 + (i % 3) }));
      for (const r of [...mine].reverse()) await store.insert(r);
      const expected = [...mine].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)).map((r) => r.id);
      expect(await listAll(other, { ownerId: `owner-${name}-list`, limit: 2 })).toEqual(expected);
      expect(await listAll(store, { ownerId: `owner-${name}-list` })).toEqual(expected);
      const all = await listAll(store, { limit: 3 });
      expect(all).toEqual(expect.arrayContaining(expected));
      expect(new Set(all).size).toBe(all.length);
      expect((await store.list({ ownerId: 'nobody' })).keys).toEqual([]);
    });

    it('refuses a bad cursor or page size', async () => {
      await expect(store.list({ cursor: 'not a cursor' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list({ limit: 1.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    });
  });
}
