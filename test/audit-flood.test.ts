// A flood of refusals on real Redis: it must not erase a key's change history, cost Redis more than a
// bounded, O(1)-per-entry write, or delay the verification of valid keys that are not cached yet.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_TYPES, createTill, type AuditEntry, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';
import { middlewareCaller } from '@till/testkit/call-middleware';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

const namespace = uniqueNamespace();
let client: Redis;
let till: Till;

beforeAll(() => {
  client = newClient();
  // Flushed every 50 ms: many writes land while the flood goes on.
  till = createTill({ store: new RedisStore({ client, namespace }), auditEvents: { interval: 50 }, usage: false, logger: { warn() {}, error() {} } });
});

afterAll(async () => {
  await till.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

async function trailOf(keyId: string): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await till.keys.audit({ keyId, limit: 1000, ...(cursor !== undefined && { cursor }) });
    out.push(...page.entries);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

describe('a flood of refusals of a revoked key', () => {
  it('10,000 refusals with distinct user agents from 500 clients keep every change entry, and valid keys not yet cached keep verifying fast', async () => {
    const target = await till.keys.create({ name: 'target', scopes: ['a'] }, { actor: 'alice' });
    for (let i = 0; i < 5; i++) await till.keys.update(target.record.id, { name: `target ${i}` }, { actor: 'bob' });
    await till.keys.revoke(target.record.id, { actor: 'carol', reason: 'leaked' });
    const changes = (await trailOf(target.record.id)).map((e) => e.type);
    expect(changes).toEqual(['key.created', ...Array(5).fill('key.updated'), 'key.revoked']);

    const fresh = await Promise.all(Array.from({ length: 100 }, (_, i) => till.keys.create({ name: `fresh ${i}`, scopes: ['a'] })));
    const call = middlewareCaller(apiKeyAuth({ till, bruteForce: false }));
    const latencies: number[] = [];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      const ip = `${i % 2 === 0 ? '192.0.2' : '198.51.100'}.${(i >> 1) % 250}`;
      const status = await call(ip, { authorization: `Bearer ${target.key}`, 'user-agent': `flood/${i}` });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (i % 100 === 50) {
        // A valid key this process has never seen: a store read while the flood's writes go on.
        const started = performance.now();
        const ok = await call('203.0.113.9', { authorization: `Bearer ${fresh[(i / 100) | 0]!.key}` });
        latencies.push(performance.now() - started);
        expect(ok).toBe(200);
      }
      // Yield now and then, so the writer's timer runs during the flood as it would under load.
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(statuses.get(401)).toBe(10_000);
    await till.auditWriter!.flush();

    const trail = await trailOf(target.record.id);
    // Every change entry is still there, in order.
    expect(trail.filter((e) => (CHANGE_TYPES as readonly string[]).includes(e.type)).map((e) => e.type)).toEqual(changes);
    // The refusals are counted, not stored one by one: every one is in a count, in few entries.
    const misused = trail.filter((e) => e.type === 'key.misused');
    expect(misused.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(10_000);
    expect(misused.length).toBeLessThan(1000);
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
    expect(latencies).toHaveLength(100);
    expect(p99, `p99 of uncached verifications during the flood: ${p99.toFixed(1)} ms`).toBeLessThan(50);
  });
});
