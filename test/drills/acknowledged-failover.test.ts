// A drill, run by `pnpm test:drills`. What an acknowledged change means across a failover, on a real primary and replica (loopback ports,
// started and stopped here): charges with chargesWait, and rotations, confirmed by the replica.
import type { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createTill, isTillError, silentLogger, unconfirmedRotation, type Till } from '@till/core';
import { RedisStore, type RedisStoreOptions } from '@till/core/redis';
import { commandCalls, startReplicated, type ReplicatedRedis } from '@till/testkit/redis-replication';
import { uniqueNamespace } from '@till/testkit/redis';

const tills: Till[] = [];
const stores = new WeakMap<Till, RedisStore>();

function tillOn(client: Redis, namespace: string, options: Partial<RedisStoreOptions> = {}): Till {
  const store = new RedisStore({ client, namespace, commandTimeout: 3000, logger: silentLogger, ...options });
  const till = createTill({
    store,
    logger: silentLogger,
    auditEvents: false,
    usage: false,
  });
  tills.push(till);
  stores.set(till, store);
  return till;
}

/** `count` verifications of `key`, `parallel` at a time (one batch of charges each round): how many were admitted, by outcome. */
async function spend(till: Till, key: string, count: number, parallel = 10): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  for (let done = 0; done < count; done += parallel) {
    const round = await Promise.all(Array.from({ length: Math.min(parallel, count - done) }, () => till.verify(key)));
    for (const r of round) outcomes[r.code] = (outcomes[r.code] ?? 0) + 1;
  }
  return outcomes;
}

afterEach(async () => {
  for (const till of tills.splice(0)) await till.close();
});

describe('failover: credits spent before it stay spent (chargesWait)', () => {
  let pair: ReplicatedRedis | undefined;
  afterEach(async () => {
    for (const till of tills.splice(0)) await till.close();
    await pair?.stop();
    pair = undefined;
  });

  /**
   * 30 of 100 credits spent with the replica in sync, then replication cut and 60 more requests,
   * then the replica promoted and spent until it refuses: how many requests were admitted in all.
   */
  async function failoverMidSpending(chargesWait: boolean): Promise<{ before: number; cut: Record<string, number>; after: number; waits: number }> {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const primary = pair.client(pair.primary);
    const till = tillOn(primary, namespace, chargesWait ? { replicas: 1, replicaTimeout: 200, chargesWait } : {});
    const { key } = await till.keys.create({ name: 'metered', scopes: [], credits: { remaining: 100 } });
    // The replica has the key before anything is spent, and the first 30 charges before the cut: on a
    // loaded machine replication can lag, and a replica without the key admits nothing at all.
    expect(await primary.wait(1, 5000)).toBe(1);
    const waitsBefore = await commandCalls(primary, 'wait');
    const before = await spend(till, key, 30);
    const waits = (await commandCalls(primary, 'wait')) - waitsBefore;
    expect(await primary.wait(1, 5000)).toBe(1);
    await pair.cut();
    const cut = await spend(till, key, 60);
    await pair.promote();
    // The services now talk to the promoted replica.
    const promoted = tillOn(pair.client(pair.replica), namespace);
    // Spent until it refuses for want of credits (a 503 while the new primary settles is tried again).
    const after: Record<string, number> = {};
    for (let tries = 0; tries < 40 && after.USAGE_EXCEEDED === undefined; tries++) {
      for (const [code, n] of Object.entries(await spend(promoted, key, 10))) after[code] = (after[code] ?? 0) + n;
      if (after.STORE_UNAVAILABLE !== undefined) await new Promise((r) => setTimeout(r, 50));
    }
    if (Object.keys(after).some((code) => code !== 'VALID' && code !== 'USAGE_EXCEEDED'))
      console.log(`[failover] after the failover: ${JSON.stringify(after)}`);
    return { before: before.VALID ?? 0, cut, after: after.VALID ?? 0, waits };
  }

  it('without chargesWait, charges the primary acknowledged are lost: 160 admitted on 100 credits (the window the README states)', async () => {
    const run = await failoverMidSpending(false);
    console.log(
      `[failover] without chargesWait: ${run.before} + ${run.cut.VALID ?? 0} admitted before the failover, ${run.after} after: ${run.before + (run.cut.VALID ?? 0) + run.after} on 100 credits`,
    );
    expect(run.before + (run.cut.VALID ?? 0) + run.after).toBe(160);
  }, 30_000);

  it('with chargesWait, never more than 100 admitted on 100 credits; unconfirmed charges are refused with 503, not admitted; one WAIT per batch', async () => {
    const run = await failoverMidSpending(true);
    const admitted = run.before + (run.cut.VALID ?? 0) + run.after;
    console.log(
      `[failover] with chargesWait: ${run.before} + ${run.cut.VALID ?? 0} admitted before the failover (${run.cut.STORE_UNAVAILABLE ?? 0} refused unconfirmed), ${run.after} after: ${admitted} on 100 credits; ${run.waits} WAITs for 30 charges in rounds of 10`,
    );
    expect(run.before).toBe(30);
    expect(run.cut).toEqual({ STORE_UNAVAILABLE: 60 });
    expect(admitted).toBeLessThanOrEqual(100);
    expect(admitted).toBe(100);
    // Three rounds of ten concurrent requests: a WAIT per batch (per turn), not per request.
    expect(run.waits).toBeLessThanOrEqual(6);
  }, 30_000);

  it('a refused unconfirmed charge is refunded on the primary, and charges are admitted again once the replica is back', async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const primary = pair.client(pair.primary);
    const warnings: string[] = [];
    const till = tillOn(primary, namespace, {
      replicas: 1,
      replicaTimeout: 100,
      chargesWait: true,
      logger: { warn: (m) => void warnings.push(m), error: () => {} },
    });
    const { key, record } = await till.keys.create({ name: 'metered', scopes: [], credits: { remaining: 10 } });
    expect(await spend(till, key, 3, 3)).toEqual({ VALID: 3 });
    await pair.cut();
    expect(await spend(till, key, 5, 5)).toEqual({ STORE_UNAVAILABLE: 5 });
    expect(await till.keys.credits(record.id)).toBe(7);
    // Said once for the stretch, not once per request.
    expect(warnings).toEqual([
      expect.stringMatching(/charges are not confirmed by 1 replica\(s\) within 100 ms \(0 did\): requests that spend credits or limits are refused with 503/),
    ]);
    // Replication restored: the replica catches up and confirms again.
    await pair.client(pair.replica).replicaof('127.0.0.1', String(pair.primary.port));
    await primary.wait(1, 5000);
    expect(await spend(till, key, 7, 7)).toEqual({ VALID: 7 });
    expect(await spend(till, key, 1, 1)).toEqual({ USAGE_EXCEEDED: 1 });
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatch(/confirmed by replicas again/);
  }, 30_000);
});

describe('failover: a rotation is confirmed by replicas like a revocation', () => {
  let pair: ReplicatedRedis | undefined;
  afterEach(async () => {
    for (const till of tills.splice(0)) await till.close();
    if (pair) {
      pair.replica.process.kill('SIGCONT');
      await pair.stop();
    }
    pair = undefined;
  });

  it('with the replica stopped, rotate() rejects NOT_REPLICATED; the rotation stands on the primary and the error carries the new key', async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const till = tillOn(pair.client(pair.primary), namespace, { replicas: 1, replicaTimeout: 100 });
    const { record } = await till.keys.create({ name: 'rotated', scopes: ['a:read'] });
    await pair.replica.stop();
    const error = await till.keys.rotate(record.id, { grace: '1h' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isTillError(error, 'NOT_REPLICATED')).toBe(true);
    expect((error as Error).message).toMatch(/rotated to [0-9A-Za-z]{16} on the primary, but not confirmed by replicas/);
    const rotation = unconfirmedRotation(error)!;
    expect(rotation).not.toBeNull();
    // The key is carried for the caller, never printed with the error.
    expect(JSON.stringify(error)).not.toContain(rotation.key);
    expect((error as Error).message).not.toContain(rotation.key.slice(-30));
    expect(rotation.previous).toMatchObject({ id: record.id, rotatedTo: rotation.record.id });
    expect((await till.verify(rotation.key)).code).toBe('VALID');
    expect((await till.keys.get(record.id))!.rotatedTo).toBe(rotation.record.id);
  }, 30_000);

  it("rotate() resolves only once the replica has the old key's new expiry, which a failover right after keeps", async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const till = tillOn(pair.client(pair.primary), namespace, { replicas: 1, replicaTimeout: 5000 });
    const { record } = await till.keys.create({ name: 'rotated', scopes: ['a:read'] });
    await stores.get(till)!.confirmChanges();
    // The replica lags (stopped for a moment): an acknowledged rotation must not be one it lacks.
    pair.replica.process.kill('SIGSTOP');
    let settled = false;
    const rotating = till.keys.rotate(record.id, { grace: '1h' }).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 400));
    const settledWhileLagging = settled;
    pair.replica.process.kill('SIGCONT');
    const rotated = await rotating;
    expect(settledWhileLagging).toBe(false);
    await pair.cut();
    await pair.promote();
    const promoted = tillOn(pair.client(pair.replica), namespace);
    const old = await promoted.keys.get(record.id);
    expect(old).toMatchObject({ rotatedTo: rotated.record.id, expiresAt: rotated.previous.expiresAt });
    expect(old!.expiresAt).not.toBeNull();
  }, 30_000);
});

afterAll(async () => {
  for (const till of tills.splice(0)) await till.close();
});
