import { describe, expect, it } from 'vitest';
import { countOutcome, USAGE_CHUNK, UsageTracker, type UsageBatchItem } from '../src/audit/usage.js';
import type { KeyStore } from '../src/store/types.js';

const quiet = { warn() {}, error() {} };

/** A store that only takes usage batches, failing the calls named in `failing` (1-based). */
function usageStore(failing: number[] = []) {
  const calls: UsageBatchItem[][] = [];
  const ids: Array<string | undefined> = [];
  const store = {
    async recordUsage(batch: readonly UsageBatchItem[], batchId?: string) {
      calls.push([...batch]);
      ids.push(batchId);
      if (failing.includes(calls.length)) throw new Error('store down');
    },
  } as unknown as KeyStore;
  return { store, calls, ids };
}

describe('usage tracker', () => {
  it('writes many keys in chunks, one at a time, with every count', async () => {
    const { store, calls } = usageStore();
    const tracker = new UsageTracker(store, () => 1_000, quiet);
    const keys = USAGE_CHUNK * 2 + 34;
    for (let i = 0; i < keys; i++) {
      const counter = tracker.counter(`k${i}`);
      countOutcome(counter, 'VALID');
      countOutcome(counter, 'VALID');
      if (i % 10 === 0) countOutcome(counter, 'RATE_LIMITED');
    }
    await tracker.flush();
    expect(calls.map((c) => c.length)).toEqual([USAGE_CHUNK, USAGE_CHUNK, 34]);
    const all = calls.flat();
    expect(new Set(all.map((i) => i.keyId)).size).toBe(keys);
    expect(all.reduce((n, i) => n + (i.counts.VALID ?? 0), 0)).toBe(keys * 2);
    expect(all.reduce((n, i) => n + (i.counts.RATE_LIMITED ?? 0), 0)).toBe(Math.ceil(keys / 10));
    await tracker.close();
  });

  it('keeps only a failed chunk for the next write: nothing lost, nothing counted twice', async () => {
    const { store, calls, ids } = usageStore([2, 4]);
    const tracker = new UsageTracker(store, () => 1_000, quiet);
    const keys = USAGE_CHUNK * 3;
    for (let i = 0; i < keys; i++) countOutcome(tracker.counter(`k${i}`), 'VALID');
    await tracker.flush();
    expect(calls.map((c) => c.length)).toEqual([USAGE_CHUNK, USAGE_CHUNK, USAGE_CHUNK]);
    expect(new Set(ids).size).toBe(3);
    // Counted meanwhile: held back while the failed chunk is unsettled (its write may have been made).
    countOutcome(tracker.counter('k0'), 'VALID');
    await tracker.flush();
    expect(calls.length).toBe(4);
    expect(ids[3]).toBe(ids[1]);
    // It fails again; the next write sends it once more, with its id, then the new count.
    await tracker.flush();
    expect(ids.slice(4)).toEqual([ids[1], expect.stringMatching(/\.[0-9a-z]+$/)]);
    expect(calls[5]).toEqual([expect.objectContaining({ keyId: 'k0', counts: { VALID: 1 } })]);
    expect(calls[4]!.map((i) => i.keyId).sort()).toEqual(calls[1]!.map((i) => i.keyId).sort());
    const written = [calls[0]!, calls[2]!, calls[4]!].flat();
    expect(written.reduce((n, i) => n + (i.counts.VALID ?? 0), 0)).toBe(keys);
    expect(new Set(written.map((i) => i.keyId)).size).toBe(keys);
    await tracker.close();
  });
});

describe('usage tracker bounds', () => {
  it('holds at most maxKeys counters: past them a write starts at once', async () => {
    const { store, calls } = usageStore();
    const tracker = new UsageTracker(store, () => 1_000, quiet, { maxKeys: 100 });
    for (let i = 0; i < 250; i++) countOutcome(tracker.counter(`k${i}`), 'VALID');
    // Two writes started by themselves (at 100 and 200 keys); the rest waits for the interval.
    await new Promise((r) => setImmediate(r));
    expect(calls.map((c) => c.length)).toEqual([100, 100]);
    await tracker.flush();
    expect(calls.map((c) => c.length)).toEqual([100, 100, 50]);
    expect(calls.flat().reduce((n, i) => n + (i.counts.VALID ?? 0), 0)).toBe(250);
    await tracker.close();
  });

  it('starts new counters after a write, and files counts under the day their window opened', async () => {
    const { store, calls } = usageStore();
    let now = Date.parse('2026-03-01T23:59:58Z');
    const tracker = new UsageTracker(store, () => now, quiet);
    const first = tracker.counter('a');
    countOutcome(first, 'VALID');
    await tracker.flush();
    // Hours later, a count opens a new window: its day is the day of that count, not of the last write.
    now = Date.parse('2026-03-02T10:00:00Z');
    const second = tracker.counter('a');
    expect(second).not.toBe(first);
    countOutcome(second, 'VALID');
    await tracker.flush();
    expect(calls.map((c) => c.map((i) => i.day))).toEqual([['2026-03-01'], ['2026-03-02']]);
    await tracker.close();
  });

  it('refuses options that are not positive integers', () => {
    for (const options of [{ interval: 0 }, { interval: 1.5 }, { maxKeys: -1 }, { maxKeys: '10' as unknown as number }]) {
      expect(() => new UsageTracker(usageStore().store, () => 0, quiet, options)).toThrow(/usage\.(interval|maxKeys) must be a positive integer/);
    }
  });
});
