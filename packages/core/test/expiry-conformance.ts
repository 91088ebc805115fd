// The expiry index, as every store keeps it: run by the store conformance suite on memory, Redis and Redis Cluster.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import type { KeyRecord } from '../src/store/record.js';
import type { ExpiringEntry, KeyStore } from '../src/store/types.js';
import { byExpiry, indexedExpiry } from '../src/store/expiry.js';

type Sample = (overrides?: Partial<KeyRecord>) => KeyRecord;

let windows = 0;
/** A range of expiry times no other test uses (the stores of one harness share their data). */
function freshWindow(): number {
  return 4_000_000_000_000 + Math.floor(Math.random() * 1e6) * 1e6 + windows++ * 1e5;
}

/** The index entries within [from, to] of the given ids only. */
async function indexed(store: KeyStore, from: number, to: number, limit = 100): Promise<ExpiringEntry[]> {
  return (await store.expiring!({ from, to, limit })).entries;
}

export function describeExpiryConformance(stores: () => [KeyStore, KeyStore], sampleRecord: Sample): void {
  it('keeps an expiry index with each insert, replace and remove, read by every process', async () => {
    const [store, other] = stores();
    const w = freshWindow();
    const a = sampleRecord({ expiresAt: w + 1000 });
    const b = sampleRecord({ expiresAt: w + 2000 });
    const none = sampleRecord();
    const revoked = sampleRecord({ expiresAt: w + 1500, revokedAt: w, revokedReason: 'leaked' });
    const superseded = sampleRecord({ expiresAt: w + 1600, rotatedTo: 'x' });
    for (const r of [b, a, none, revoked, superseded]) await store.insert(r);
    expect(await indexed(other, w, w + 10_000)).toEqual([
      { id: a.id, expiresAt: w + 1000 },
      { id: b.id, expiresAt: w + 2000 },
    ]);
    // Bounds are inclusive.
    expect(await indexed(other, w + 1000, w + 1000)).toEqual([{ id: a.id, expiresAt: w + 1000 }]);
    expect(await indexed(other, w + 1001, w + 1999)).toEqual([]);

    expect(await store.replace({ ...a, expiresAt: w + 3000, version: 2 }, 1)).toBe(true);
    expect((await indexed(other, w, w + 10_000)).map((e) => e.id)).toEqual([b.id, a.id]);
    // A lost compare-and-set changes nothing, the index included.
    expect(await store.replace({ ...a, expiresAt: w + 500, version: 3 }, 1)).toBe(false);
    expect((await indexed(other, w, w + 10_000)).map((e) => e.id)).toEqual([b.id, a.id]);
    // Revoked, expiry dropped, superseded: out of the index.
    expect(await store.replace({ ...b, revokedAt: w, version: 2 }, 1)).toBe(true);
    expect(await indexed(other, w, w + 10_000)).toEqual([{ id: a.id, expiresAt: w + 3000 }]);
    expect(await store.replace({ ...a, expiresAt: null, version: 3 }, 2)).toBe(true);
    expect(await indexed(other, w, w + 10_000)).toEqual([]);
    // Given an expiry again: back in.
    expect(await store.replace({ ...none, expiresAt: w + 4000, version: 2 }, 1)).toBe(true);
    expect(await indexed(other, w, w + 10_000)).toEqual([{ id: none.id, expiresAt: w + 4000 }]);
    expect(await store.remove(none.id, 2)).toBe(true);
    expect(await indexed(other, w, w + 10_000)).toEqual([]);
  });

  it('answers soonest first then by id, at most `limit`, saying when there are more', async () => {
    const [store, other] = stores();
    const w = freshWindow();
    const same = Array.from({ length: 5 }, () => sampleRecord({ expiresAt: w + 10 }));
    const later = sampleRecord({ expiresAt: w + 20 });
    await Promise.all([...same, later].map((r) => store.insert(r)));
    const ids = same.map((r) => r.id).sort();
    const page = await other.expiring!({ from: w, to: w + 100, limit: 3 });
    expect(page.entries.map((e) => e.id)).toEqual(ids.slice(0, 3));
    expect(page).toMatchObject({ more: true, complete: true });
    const all = await other.expiring!({ from: w, to: w + 100, limit: 6 });
    expect(all.entries.map((e) => e.id)).toEqual([...ids, later.id]);
    expect(all.more).toBe(false);
  });

  it('gives each expiry reminder once, to one process of many, and again for a changed expiry', async () => {
    const [store, other] = stores();
    const w = freshWindow();
    const key = sampleRecord({ expiresAt: w + 1000 });
    await store.insert(key);
    // Not the key's expiry, or not a key: nothing to claim.
    expect(await store.claimReminder!(key.id, w + 999)).toBe(false);
    expect(await store.claimReminder!(sampleRecord().id, w + 1000)).toBe(false);
    const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? store : other).claimReminder!(key.id, w + 1000)));
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await other.claimReminder!(key.id, w + 1000)).toBe(false);
    // A change that keeps the expiry keeps the claim.
    expect(await store.replace({ ...key, name: 'renamed', version: 2 }, 1)).toBe(true);
    expect(await other.claimReminder!(key.id, w + 1000)).toBe(false);
    // A new expiry is reminded of anew, and so is the old one when it comes back.
    expect(await store.replace({ ...key, expiresAt: w + 2000, version: 3 }, 2)).toBe(true);
    expect(await other.claimReminder!(key.id, w + 1000)).toBe(false);
    expect(await other.claimReminder!(key.id, w + 2000)).toBe(true);
    expect(await store.replace({ ...key, expiresAt: w + 1000, version: 4 }, 3)).toBe(true);
    expect(await store.claimReminder!(key.id, w + 1000)).toBe(true);
    // Revoked or deleted: no reminder.
    expect(await store.replace({ ...key, expiresAt: w + 3000, revokedAt: w, version: 5 }, 4)).toBe(true);
    expect(await other.claimReminder!(key.id, w + 3000)).toBe(false);
    expect(await store.remove(key.id, 5)).toBe(true);
    expect(await other.claimReminder!(key.id, w + 3000)).toBe(false);
  });

  it('rebuilds the index from the records without changing what it holds', async () => {
    const [store, other] = stores();
    const w = freshWindow();
    const keys = [sampleRecord({ expiresAt: w + 1 }), sampleRecord({ expiresAt: w + 2 }), sampleRecord()];
    for (const r of keys) await store.insert(r);
    expect(await store.claimReminder!(keys[0]!.id, w + 1)).toBe(true);
    const before = await indexed(other, w, w + 10);
    const result = await other.reindexExpiries!();
    expect(result.checked).toBeGreaterThanOrEqual(3);
    expect(result.indexed).toBeGreaterThanOrEqual(2);
    expect(await indexed(store, w, w + 10)).toEqual(before);
    // A claimed reminder stays claimed: a rebuild does not send reminders again.
    expect(await store.claimReminder!(keys[0]!.id, w + 1)).toBe(false);
  });

  it('answers every range as a filter of the records would, after any sequence of changes', async () => {
    const [store, other] = stores();
    const op = fc.record({
      key: fc.integer({ min: 0, max: 5 }),
      kind: fc.constantFrom('put', 'put', 'revoke', 'supersede', 'clear', 'remove'),
      at: fc.integer({ min: 0, max: 20 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 1, max: 4 }),
        async (ops, x, y, limit) => {
          const w = freshWindow();
          const model = new Map<number, KeyRecord>();
          for (const { key, kind, at } of ops) {
            const current = model.get(key);
            if (kind === 'remove') {
              if (current !== undefined && (await store.remove(current.id, current.version))) model.delete(key);
              continue;
            }
            const base = current ?? sampleRecord();
            const next: KeyRecord = {
              ...base,
              version: base.version + (current === undefined ? 0 : 1),
              expiresAt: kind === 'clear' ? null : w + at,
              revokedAt: kind === 'revoke' ? w : base.revokedAt,
              rotatedTo: kind === 'supersede' ? 'x' : base.rotatedTo,
            };
            if (current === undefined) await store.insert(next);
            else expect(await store.replace(next, current.version)).toBe(true);
            model.set(key, next);
          }
          const from = w + Math.min(x, y);
          const to = w + Math.max(x, y);
          const expected = [...model.values()]
            .map((r) => ({ id: r.id, expiresAt: indexedExpiry(r) }))
            .filter((e): e is ExpiringEntry => e.expiresAt !== null && e.expiresAt >= from && e.expiresAt <= to)
            .sort(byExpiry);
          const page = await other.expiring!({ from, to, limit });
          expect(page.entries).toEqual(expected.slice(0, limit));
          expect(page.more).toBe(expected.length > limit);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('refuses a bad query with a typed error', async () => {
    const [store] = stores();
    const bad = [
      { from: 2, to: 1, limit: 1 },
      { from: 0, to: 1, limit: 0 },
      { from: 0, to: 1, limit: 10_001 },
      { from: Number.NaN, to: 1, limit: 1 },
      { from: 0.5, to: 1, limit: 1 },
      { from: 0, to: Number.POSITIVE_INFINITY, limit: 1 },
      null,
    ];
    for (const query of bad) {
      const error = await store.expiring!(query as never).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TillError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });
}
