// A revoked key stops working in every process of a deployment at once (target: < 100 ms at p99).
// Four real worker processes (the testkit's revocation-worker, on the BUILT packages) share one Redis and
// cache keys for 60 s, so only the invalidation message can evict a key; this process changes keys
// through its own Till and measures, per worker, from just before the change until the worker first
// refuses the key, on CLOCK_MONOTONIC (shared by all processes of the machine). Key ids only in any
// output: never a full key.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { killSubscriber, now, startCluster, type Cluster, type Refusal } from '@till/testkit/revocation-cluster';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

const WORKERS = 4;
const REVOCATIONS = 50;
/** The design target (docs: a revoked key is refused everywhere within 100 ms), reported in the output. */
const TARGET_P99_MS = 100;
/**
 * What the tests assert, at the p99 (the max where there are only a few samples): the target with a
 * margin a loaded 2-core machine keeps (5 processes and Redis share it; beside a CPU hog the p99 was
 * seen from 90 to 518 ms). A lost or broken invalidation is seen only when the workers' cache expires (60 s),
 * or not within the watch (3 s): far above.
 */
const BOUND_P99_MS = 10 * TARGET_P99_MS;
/**
 * The workers' ioredis reconnect delay: the window in which a killed subscription stays down. Twice the
 * bound, so that a refusal that came only with the reconnect's flush (not by reading through) cannot
 * pass for one within it, even on a loaded machine.
 */
const RECONNECT_DELAY = 2 * BOUND_P99_MS;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const fmt = (ms: number) => ms.toFixed(2);

describe('revocation across 4 processes sharing one Redis', () => {
  const namespace = uniqueNamespace();
  let admin: Redis;
  let client: Redis;
  let store: RedisStore;
  let till: Till;
  let cluster: Cluster | undefined;
  /** id -> full key. Sent to the workers over IPC, never printed. */
  const keys = new Map<string, string>();
  const ids = { revoked: [] as string[], control: '', disabled: '', updated: '', killed: '' };

  const create = async (name: string, scopes = ['a']) => {
    const { key, record } = await till.keys.create({ name, scopes });
    keys.set(record.id, key);
    return record.id;
  };

  /** Every worker's answer for each id: code and whether it came from the cache. */
  const verifyEverywhere = async (list: readonly string[], options?: { scopes: string[] }) =>
    (await cluster!.callAll('verify', { ids: list, options })).map((r) => r.results);

  beforeAll(async () => {
    admin = newClient();
    client = newClient();
    store = new RedisStore({ client, namespace });
    till = createTill({ store, logger: silentLogger });
    cluster = await startCluster({ redisUrl: redisUrl(), namespace, count: WORKERS, cacheTtl: 60_000, reconnectDelay: RECONNECT_DELAY });
    // Every worker's subscription must be in place before anything changes.
    await cluster.waitUntilSubscribed(admin);
    ids.revoked = await Promise.all(Array.from({ length: REVOCATIONS }, (_, i) => create(`revoked-${i}`)));
    ids.control = await create('control');
    ids.disabled = await create('disabled');
    ids.updated = await create('updated', ['a', 'b']);
    ids.killed = await create('killed');
    await cluster.callAll('keys', { keys: [...keys].map(([id, key]) => ({ id, key })) });
  });

  afterAll(async () => {
    await cluster?.stop();
    await till?.close();
    await store?.close();
    if (admin) await deleteNamespace(admin, namespace);
    admin?.disconnect();
    client?.disconnect();
  });

  it('starts 4 worker processes that each cache every key as VALID', async () => {
    expect(cluster!.workers).toHaveLength(WORKERS);
    expect(new Set(cluster!.workers.map((w) => w.pid)).size).toBe(WORKERS);
    // One clock for all: each worker's reading sits inside this process's IPC round trip around it.
    for (const { offset, error } of await cluster!.clockOffsets(10)) expect(Math.abs(offset)).toBeLessThanOrEqual(error + 0.05);
    const all = [...keys.keys()];
    const first = await verifyEverywhere(all);
    const second = await verifyEverywhere(all);
    for (const results of first) for (const id of all) expect(results[id]?.code, id).toBe('VALID');
    for (const results of second) for (const id of all) expect(results[id], id).toEqual({ code: 'VALID', cached: true });
  });

  it(`refuses each of ${REVOCATIONS} revoked keys in every worker, p99 < ${BOUND_P99_MS} ms (target ${TARGET_P99_MS} ms), and evicts nothing else`, async () => {
    const latencies: number[] = [];
    const via = { listener: 0, poll: 0 };
    const missing: string[] = [];
    for (const id of ids.revoked) {
      const { refusals } = await cluster!.watch(id, 'REVOKED', { timeoutMs: 3_000 });
      const start = now();
      await till.keys.revoke(id, { reason: 'revocation test' });
      const found: Array<Refusal | null> = await refusals;
      found.forEach((refusal, worker) => {
        if (refusal === null) {
          missing.push(`${id}@worker${worker}`);
          return;
        }
        latencies.push(refusal.at - start);
        via[refusal.via]++;
      });
    }
    expect(missing, 'workers that never refused a revoked key').toEqual([]);

    const sorted = [...latencies].sort((a, b) => a - b);
    const p99 = percentile(sorted, 99);
    console.log(
      `[revocation] ${REVOCATIONS} revocations x ${WORKERS} processes (${sorted.length} samples): ` +
        `p50 ${fmt(percentile(sorted, 50))} ms, p90 ${fmt(percentile(sorted, 90))} ms, p99 ${fmt(p99)} ms, ` +
        `max ${fmt(sorted[sorted.length - 1]!)} ms, min ${fmt(sorted[0]!)} ms; first seen by listener ${via.listener}, by poll ${via.poll}; ` +
        `target p99 < ${TARGET_P99_MS} ms ${p99 < TARGET_P99_MS ? 'met' : 'MISSED (machine loaded?)'}`,
    );
    expect(sorted).toHaveLength(REVOCATIONS * WORKERS);
    // No worker can refuse a key before its revocation started.
    expect(sorted[0]).toBeGreaterThan(0);
    expect(p99).toBeLessThan(BOUND_P99_MS);

    // Every worker refuses every revoked key; the keys that were not revoked are still VALID and still
    // served from each worker's cache (no process dropped more than the ids it was told about).
    const untouched = [ids.control, ids.disabled, ids.updated, ids.killed];
    for (const results of await verifyEverywhere([...ids.revoked, ...untouched])) {
      for (const id of ids.revoked) expect(results[id]?.code, id).toBe('REVOKED');
      for (const id of untouched) expect(results[id], id).toEqual({ code: 'VALID', cached: true });
    }
  });

  it('measures with a polling loop that reports by itself too (so "first seen by listener" is a real comparison)', async () => {
    // Revoked before any worker knows it: no invalidation will follow, only the loop can see it.
    const id = await create('polled');
    await till.keys.revoke(id);
    // Let every worker hear that invalidation first, so that it cannot count as seen by the listener.
    for (let i = 0; i < WORKERS; i++) {
      expect(await waitFor(async () => !!(await cluster!.call(i, 'heard')).ids[id], 10_000, 2), `worker ${i} heard the revocation`).toBe(true);
    }
    await cluster!.callAll('keys', { keys: [{ id, key: keys.get(id)! }] });
    const { refusals } = await cluster!.watch(id, 'REVOKED', { timeoutMs: 3_000 });
    expect((await refusals).map((r) => r?.via)).toEqual(Array(WORKERS).fill('poll'));
  });

  it('evicts on a disable or an update written through RedisStore.replace', async () => {
    // Disable: the record as stored, changed and written against its current version.
    const before = (await store.get(ids.disabled))!;
    const disabling = await cluster!.watch(ids.disabled, 'DISABLED', { timeoutMs: 3_000 });
    let start = now();
    expect(await store.replace({ ...before, disabled: true, updatedAt: Date.now(), version: before.version + 1 }, before.version)).toBe(true);
    const disabled = await disabling.refusals;
    expect(
      disabled.every((r) => r !== null),
      'every worker refused the disabled key',
    ).toBe(true);
    const disableMs = disabled.map((r) => r!.at - start);

    // Update: the scope "b" is taken away; a request that needs it must be refused.
    for (const results of await verifyEverywhere([ids.updated], { scopes: ['b'] })) {
      expect(results[ids.updated]).toEqual({ code: 'VALID', cached: true });
    }
    const current = (await store.get(ids.updated))!;
    const narrowing = await cluster!.watch(ids.updated, 'INSUFFICIENT_SCOPE', { options: { scopes: ['b'] }, timeoutMs: 3_000 });
    start = now();
    expect(await store.replace({ ...current, scopes: ['a'], updatedAt: Date.now(), version: current.version + 1 }, current.version)).toBe(true);
    const narrowed = await narrowing.refusals;
    expect(
      narrowed.every((r) => r !== null),
      'every worker refused the narrowed key',
    ).toBe(true);
    const updateMs = narrowed.map((r) => r!.at - start);
    console.log(`[revocation] disable seen in ${disableMs.map(fmt).join(', ')} ms; scope removal seen in ${updateMs.map(fmt).join(', ')} ms`);
    // 8 samples: their p99 is their max.
    expect(
      percentile(
        [...disableMs, ...updateMs].sort((a, b) => a - b),
        99,
      ),
    ).toBeLessThan(BOUND_P99_MS);

    // A replace against a stale version writes nothing, so it must not publish an eviction either.
    expect(await store.replace({ ...current, name: 'stale write', version: current.version + 1 }, current.version)).toBe(false);
    for (const results of await verifyEverywhere([ids.disabled, ids.updated, ids.control], { scopes: ['a'] })) {
      expect(results[ids.disabled]?.code).toBe('DISABLED');
      expect(results[ids.updated]).toEqual({ code: 'VALID', cached: true });
      expect(results[ids.control]).toEqual({ code: 'VALID', cached: true });
    }
  });

  it('reads through a worker whose subscription was killed, so a key revoked meanwhile is refused at once, and drops its cache on the reconnect', async () => {
    const victim = cluster!.workers[0]!;
    for (const results of await verifyEverywhere([ids.killed, ids.control])) {
      expect(results[ids.killed]).toEqual({ code: 'VALID', cached: true });
    }
    const heardBefore = await cluster!.call(victim.index, 'heard');
    const { refusals } = await cluster!.watch(ids.killed, 'REVOKED', { timeoutMs: RECONNECT_DELAY + 3_000 });

    expect(await killSubscriber(admin, victim.name)).toBe(1);
    const start = now();
    await till.keys.revoke(ids.killed, { reason: 'revoked while a subscription was down' });
    const found = await refusals;
    expect(
      found.every((r) => r !== null),
      'every worker refused the key',
    ).toBe(true);
    const refusedAfterRevoke = found[0]!.at - start;

    // The victim never heard the id (it was published while its subscription was down). Knowing its
    // subscription lost, it read the key from Redis rather than from its cache, and refused it as fast
    // as the others; on the reconnect it heard one "drop everything".
    const reconnected = await waitFor(async () => (await cluster!.call(victim.index, 'heard')).flushes > heardBefore.flushes, RECONNECT_DELAY + 3_000);
    expect(reconnected, 'the victim subscribed again').toBe(true);
    const heard = await cluster!.call(victim.index, 'heard');
    expect(heard.ids[ids.killed] ?? 0, 'the victim must have missed the message').toBe(0);
    expect(heard.flushes).toBe(heardBefore.flushes + 1);
    console.log(
      `[revocation] subscription killed: the victim refused ${fmt(refusedAfterRevoke)} ms after the revoke, ` +
        `${fmt(heard.lastFlushAt! - found[0]!.at)} ms before its reconnect (reconnect delay ${RECONNECT_DELAY} ms); ` +
        `others in ${found
          .slice(1)
          .map((r) => fmt(r!.at - start))
          .join(', ')} ms`,
    );
    // 4 samples (the victim's and the others'): their p99 is their max.
    expect(
      percentile(
        found.map((r) => r!.at - start).sort((a, b) => a - b),
        99,
      ),
    ).toBeLessThan(BOUND_P99_MS);
    // Refused by reading through, not by the flush on the reconnect.
    expect(found[0]!.at).toBeLessThan(heard.lastFlushAt!);

    // The victim's cache was emptied (the control key is read from Redis again); the others' was not.
    const after = await verifyEverywhere([ids.control]);
    expect(after[0]![ids.control]).toEqual({ code: 'VALID', cached: false });
    for (const results of after.slice(1)) expect(results[ids.control]).toEqual({ code: 'VALID', cached: true });
    // And it listens again.
    await cluster!.waitUntilSubscribed(admin);
  });
});
