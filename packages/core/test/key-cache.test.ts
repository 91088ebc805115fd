import { describe, expect, it } from 'vitest';
import { KeyCache } from '../src/verify/key-cache.js';
import { UsageTracker } from '../src/audit/usage.js';
import type { KeyStore, UsageBatchItem } from '../src/store/types.js';
import { silentLogger } from '../src/util/logger.js';

/** A slice of a longer string, as the verifier looks ids up: never the entry's own id string. */
const slice = (id: string) => `xx${id}yy`.slice(2, 2 + id.length);

describe('KeyCache: the last entry it found, remembered', () => {
  const idOf = (entry: { id: string }) => entry.id;

  it('answers exactly as its Map: a changed, deleted, cleared or evicted entry is never served from it', () => {
    const cache = new KeyCache<{ id: string; n: number }>(2, idOf);
    const a = { id: 'aaaaaaaaaaaaaaaa', n: 1 };
    cache.set(a.id, a);
    expect(cache.peek(slice(a.id))).toBe(a);
    expect(cache.peek(slice(a.id))).toBe(a);
    expect(cache.recent()).toBe(a);
    const a2 = { id: 'aaaaaaaaaaaaaaaa', n: 2 };
    cache.set(a.id, a2);
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(slice(a.id))).toBe(a2);
    expect(cache.recent()).toBe(a2);
    cache.delete(a.id);
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(slice(a.id))).toBeUndefined();
    cache.set(a.id, a);
    expect(cache.peek(slice(a.id))).toBe(a);
    cache.clear();
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(slice(a.id))).toBeUndefined();
    cache.set(a.id, a);
    expect(cache.peek(slice(a.id))).toBe(a);
    cache.deleteWhere((entry) => entry.n === 1);
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(slice(a.id))).toBeUndefined();
    // Eviction: a, then b and c in a cache of two.
    cache.set(a.id, a);
    expect(cache.peek(slice(a.id))).toBe(a);
    cache.set('bbbbbbbbbbbbbbbb', { id: 'bbbbbbbbbbbbbbbb', n: 3 });
    cache.set('cccccccccccccccc', { id: 'cccccccccccccccc', n: 4 });
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(slice(a.id))).toBeUndefined();
  });

  it('remembers only an entry kept under its own id, and nothing without idOf', () => {
    const cache = new KeyCache<{ id: string }>(10, idOf);
    const other = { id: 'dddddddddddddddd' };
    cache.set('eeeeeeeeeeeeeeee', other);
    expect(cache.peek('eeeeeeeeeeeeeeee')).toBe(other);
    // The entry's own id is not a key of the Map: the last lookup must not answer for it.
    expect(cache.recent()).toBeUndefined();
    expect(cache.peek(other.id)).toBeUndefined();
    const plain = new KeyCache<{ id: string }>(10);
    plain.set(other.id, other);
    expect(plain.peek(slice(other.id))).toBe(other);
    expect(plain.recent()).toBeUndefined();
    plain.delete(other.id);
    expect(plain.peek(slice(other.id))).toBeUndefined();
  });
});

describe('UsageTracker: counts across keys and writes', () => {
  it('counts into the counter of the current write, also after a write and across keys', async () => {
    const written: UsageBatchItem[] = [];
    const store = { recordUsage: async (items: readonly UsageBatchItem[]) => void written.push(...items) } as unknown as KeyStore;
    let now = Date.UTC(2026, 0, 5, 12);
    const tracker = new UsageTracker(store, () => now, silentLogger, { interval: 60_000 });
    const a = 'aaaaaaaaaaaaaaaa';
    const b = 'bbbbbbbbbbbbbbbb';
    tracker.countValid(a, now);
    tracker.countValid(a, now);
    tracker.countValid(b, now);
    tracker.countValid(a, now);
    await tracker.flush();
    expect(written.map((i) => [i.keyId, i.counts.VALID])).toEqual([
      [a, 3],
      [b, 1],
    ]);
    now += 1000;
    tracker.countValid(a, now);
    await tracker.flush();
    expect(written.slice(2).map((i) => [i.keyId, i.counts.VALID, i.lastUsedAt])).toEqual([[a, 1, now]]);
    await tracker.close();
  });
});
