import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/redis/index.js';
import type { ConsumeRequest } from '../src/store/types.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { sampleRecord } from './store-conformance.js';

describe('RedisStore charges of one turn', () => {
  const namespace = uniqueNamespace();
  const client = newClient();
  afterAll(async () => {
    await deleteNamespace(client, namespace);
    client.disconnect();
  });

  /** Counts the consume script calls the store sends on `client`. */
  function countConsumeCalls(): { calls: number } {
    const counted = { calls: 0 };
    const target = client as unknown as { tillConsume: (...args: unknown[]) => Promise<unknown> };
    const send = target.tillConsume;
    target.tillConsume = (...args) => {
      counted.calls++;
      return send.apply(client, args);
    };
    return counted;
  }

  it('sends the charges of many subjects in one call, each answered as if charged alone', async () => {
    const store = new RedisStore({ client, namespace, limitClock: 'caller' });
    const counted = countConsumeCalls();
    const busy = sampleRecord();
    const stale = sampleRecord({ version: 2 });
    const paying = sampleRecord();
    for (const record of [busy, stale, paying]) await store.insert(record);
    const burst = { name: 'burst', limit: 2, window: 60_000, cost: 1 };
    const other = { name: 'other', limit: 5, window: 60_000, cost: 1 };
    const requests: ConsumeRequest[] = [
      { subject: busy.id, keyVersion: 1, credits: null, limits: [burst], now: 1_000 },
      { subject: stale.id, keyVersion: 1, credits: null, limits: [burst], now: 1_000 },
      { subject: busy.id, keyVersion: 1, credits: null, limits: [burst], now: 1_000 },
      {
        subject: paying.id,
        keyVersion: 1,
        credits: { remaining: 5, refill: null, setAt: 0, generation: 1 },
        limits: [burst],
        cost: 2,
        now: 1_000,
      },
      { subject: 'ip:203.0.113.7', limits: [burst], now: 1_000 },
      { subject: busy.id, keyVersion: 1, credits: null, limits: [burst], now: 1_000 },
      // Other limits, so another group of the same subject, sharing the bucket `burst` that the first group filled.
      { subject: busy.id, keyVersion: 1, credits: null, limits: [burst, other], now: 1_000 },
    ];
    const results = await Promise.all(requests.map((request) => store.consume(request)));
    expect(counted.calls).toBe(1);
    expect(results.map((r) => r.outcome)).toEqual(['OK', 'CHANGED', 'OK', 'OK', 'OK', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(results[1]).toMatchObject({ record: { id: stale.id, version: 2 } });
    expect(results[3]).toMatchObject({ credits: 3, limits: [{ name: 'burst', remaining: 1 }] });
    expect(results[5]).toMatchObject({ retryAfter: 30_000, limits: [{ name: 'burst', remaining: 0, reset: 60_000 }] });
    expect(results[6]).toMatchObject({ retryAfter: 30_000, limits: [{ remaining: 0 }, { name: 'other', remaining: 5 }] });
    // All or nothing: the refused request charged no limit.
    expect(await client.exists(`${namespace}{${busy.id}}:rl:other`)).toBe(0);
    expect(await client.exists(`${namespace}{${stale.id}}:rl:burst`)).toBe(0);
    // The next turn's call sees every charge made in this one.
    const again = await Promise.all(requests.slice(3, 5).map((request) => store.consume(request)));
    expect(again).toMatchObject([{ outcome: 'OK', credits: 1 }, { outcome: 'OK' }]);
    expect(counted.calls).toBe(2);
  });

  it('splits a turn of many subjects into calls that read at most 512 records and limit states each', async () => {
    const store = new RedisStore({ client, namespace, limitClock: 'caller' });
    const counted = countConsumeCalls();
    const limits = [{ name: 'burst', limit: 1, window: 60_000, cost: 1 }];
    const subjects = Array.from({ length: 600 }, (_, i) => `ip:split-${i}`);
    // Each subject twice: its second charge, in the same batch, is refused.
    const results = await Promise.all(subjects.flatMap((subject) => [0, 1].map(() => store.consume({ subject, limits, now: 1_000 }))));
    expect(counted.calls).toBe(2);
    expect(results.filter((r) => r.outcome === 'OK')).toHaveLength(600);
    expect(results.filter((_, i) => i % 2 === 1).every((r) => r.outcome === 'RATE_LIMITED')).toBe(true);
  });

  it('keeps counting on limit state stored before (`<ms>:<debt>`, expiring once drained)', async () => {
    const store = new RedisStore({ client, namespace, limitClock: 'caller' });
    const record = sampleRecord();
    await store.insert(record);
    // Two of three used at 1000 (debt in 1/limit ms: each request owes its window).
    await client.set(`${namespace}{${record.id}}:rl:burst`, `1000:${2 * 60_000}`, 'PX', 40_000);
    const limits = [{ name: 'burst', limit: 3, window: 60_000, cost: 1 }];
    const charge = (now: number) => store.consume({ subject: record.id, keyVersion: 1, credits: null, limits, now });
    expect(await charge(1_000)).toMatchObject({ outcome: 'OK', limits: [{ remaining: 0, reset: 60_000 }] });
    expect(await charge(1_000)).toMatchObject({ outcome: 'RATE_LIMITED', retryAfter: 20_000 });
    expect(await charge(21_000)).toMatchObject({ outcome: 'OK' });
    expect(await client.pttl(`${namespace}{${record.id}}:rl:burst`)).toBeGreaterThan(59_000);
  });
});
