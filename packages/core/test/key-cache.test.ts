import fc from 'fast-check';
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

/** The least recently used order a KeyCache must keep, as a plain list (oldest first). */
class ModelLru {
  entries: Array<[string, number]> = [];
  constructor(private readonly max: number) {}
  private remove(id: string): boolean {
    const at = this.entries.findIndex(([k]) => k === id);
    if (at >= 0) this.entries.splice(at, 1);
    return at >= 0;
  }
  set(id: string, value: number): void {
    if (!this.remove(id) && this.entries.length >= this.max) this.entries.shift();
    this.entries.push([id, value]);
  }
  get(id: string): number | undefined {
    const found = this.entries.find(([k]) => k === id);
    if (found) {
      this.remove(id);
      this.entries.push(found);
    }
    return found?.[1];
  }
}

describe('KeyCache: eviction takes the least recently used entry', () => {
  type Op = { op: 'set'; id: number; value: number } | { op: 'get' | 'peek' | 'delete'; id: number } | { op: 'clear' } | { op: 'deleteWhere'; odd: boolean };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), id: fc.nat(40), value: fc.nat(1000) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('get' as const, 'peek' as const, 'delete' as const), id: fc.nat(40) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('deleteWhere' as const), odd: fc.boolean() }) },
    { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
  );

  it('keeps what a plain LRU list keeps, whatever uses, deletions and clears come between evictions', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 300 }), (max, ops) => {
        const cache = new KeyCache<number>(max);
        const model = new ModelLru(max);
        for (const o of ops) {
          const id = 'id' in o ? `k${o.id}` : '';
          if (o.op === 'set') {
            cache.set(id, o.value);
            model.set(id, o.value);
          } else if (o.op === 'get') expect(cache.get(id)).toBe(model.get(id));
          else if (o.op === 'peek') expect(cache.peek(id)).toBe(model.entries.find(([k]) => k === id)?.[1]);
          else if (o.op === 'delete') {
            cache.delete(id);
            model.entries = model.entries.filter(([k]) => k !== id);
          } else if (o.op === 'clear') {
            cache.clear();
            model.entries = [];
          } else if (o.op === 'deleteWhere') {
            const odd = o.odd ? 1 : 0;
            const drop = (v: number) => v % 2 === odd;
            cache.deleteWhere(drop);
            model.entries = model.entries.filter(([, v]) => !drop(v));
          }
          expect(cache.size).toBe(model.entries.length);
        }
        for (let i = 0; i <= 40; i++) expect(cache.peek(`k${i}`)).toBe(model.entries.find(([k]) => k === `k${i}`)?.[1]);
      }),
      { numRuns: 300 },
    );
  });

  it('evicts in order across many times its size, while the Map grows and compacts its table', () => {
    // 60 times the cache's size goes through it: the Map rehashes many times under the kept iterator.
    const max = 1000;
    const cache = new KeyCache<number>(max);
    const model = new ModelLru(max);
    for (let i = 0; i < 60 * max; i++) {
      cache.set(`k${i}`, i);
      model.set(`k${i}`, i);
      // A few hot keys used now and then stay; a replaced key moves to the end.
      if (i % 7 === 0) expect(cache.get('k3')).toBe(model.get('k3'));
      if (i % 997 === 0) {
        cache.set('k5', -i);
        model.set('k5', -i);
      }
      if (i % 4999 === 0) {
        cache.delete(`k${i - 500}`);
        model.entries = model.entries.filter(([k]) => k !== `k${i - 500}`);
      }
    }
    expect(cache.size).toBe(max);
    for (const [k, v] of model.entries) expect(cache.peek(k)).toBe(v);
    expect(cache.peek('k3')).toBe(3);
    expect(cache.peek(`k${60 * max - max - 1}`)).toBeUndefined();
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
