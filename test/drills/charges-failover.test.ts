// Drill: a primary killed (SIGKILL) while a key's credits are being spent at full speed, its replica
// promoted, the spending carried on there. Run by `pnpm test:drills`, alone. With chargesWait no
// request is admitted whose charge the replica lacks: never more admitted than the key's credits.
// Without it the drill only logs what was lost (on loopback the lag is small, so it may be nothing).
// It also measures what chargesWait costs per request, here where nothing else runs.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { startReplicated } from '@till/testkit/redis-replication';
import { uniqueNamespace } from '@till/testkit/redis';

const CREDITS = 2000;
const WORKERS = 32;

function tillOn(client: Redis, namespace: string, chargesWait: boolean): Till {
  const store = new RedisStore({ client, namespace, commandTimeout: 1000, ...(chargesWait && { replicas: 1, replicaTimeout: 500, chargesWait }) });
  return createTill({ store, logger: silentLogger, auditEvents: false, usage: false });
}

/** Spends with WORKERS concurrent loops until `until()` or a refusal other than 503; admitted count. */
async function spend(
  till: Till,
  key: string,
  until: () => boolean,
  deadline: number,
  progress = { valid: 0 },
): Promise<{ valid: number; codes: Record<string, number> }> {
  const codes: Record<string, number> = {};
  let exhausted = false;
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (!until() && !exhausted && Date.now() < deadline) {
        const r = await till.verify(key);
        codes[r.code] = (codes[r.code] ?? 0) + 1;
        if (r.valid) progress.valid++;
        else if (r.code === 'USAGE_EXCEEDED') exhausted = true;
        else await new Promise((res) => setTimeout(res, 5));
      }
    }),
  );
  return { valid: progress.valid, codes };
}

/** `count` verifications of `key`, `parallel` at a time (one batch of charges each round), by outcome. */
async function spendCount(till: Till, key: string, count: number, parallel: number): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  for (let done = 0; done < count; done += parallel) {
    const round = await Promise.all(Array.from({ length: Math.min(parallel, count - done) }, () => till.verify(key)));
    for (const r of round) outcomes[r.code] = (outcomes[r.code] ?? 0) + 1;
  }
  return outcomes;
}

describe('a primary killed while credits are spent', () => {
  for (const chargesWait of [true, false]) {
    it(`${chargesWait ? 'with' : 'without'} chargesWait: ${chargesWait ? 'never more admitted than the credits' : 'what is lost (logged)'}`, async () => {
      const pair = await startReplicated();
      const tills: Till[] = [];
      try {
        const namespace = uniqueNamespace();
        const till = tillOn(pair.client(pair.primary), namespace, chargesWait);
        tills.push(till);
        const { key } = await till.keys.create({ name: 'metered', scopes: [], credits: { remaining: CREDITS } });
        await pair.client(pair.primary).wait(1, 2000);
        // Spend about half, then kill the primary under load.
        let killed = false;
        const progress = { valid: 0 };
        const before = spend(till, key, () => killed, Date.now() + 20_000, progress);
        const admin = pair.client(pair.replica);
        const started = Date.now();
        while (progress.valid < CREDITS / 2 && Date.now() - started < 15_000) await new Promise((r) => setTimeout(r, 5));
        pair.primary.process.kill('SIGKILL');
        await new Promise((r) => setTimeout(r, 300));
        killed = true;
        const first = await before;
        await admin.replicaof('NO', 'ONE');
        const promoted = tillOn(pair.client(pair.replica), namespace, false);
        tills.push(promoted);
        const after = await spend(promoted, key, () => false, Date.now() + 20_000);
        const total = first.valid + after.valid;
        console.log(
          `[drill charges-failover] chargesWait ${chargesWait ? 'on' : 'off'}: ${first.valid} admitted before the kill (${JSON.stringify(first.codes)}), ` +
            `${after.valid} after on the promoted replica: ${total} on ${CREDITS} credits (${Math.max(0, total - CREDITS)} handed out twice)`,
        );
        expect(after.codes.USAGE_EXCEEDED ?? 0).toBeGreaterThan(0);
        if (chargesWait) expect(total).toBeLessThanOrEqual(CREDITS);
      } finally {
        for (const t of tills) await t.close();
        await pair.stop();
      }
    }, 90_000);
  }

  it('measures the cost per request with and without chargesWait (logged, not asserted)', async () => {
    const pair = await startReplicated();
    const tills: Till[] = [];
    try {
      const namespace = uniqueNamespace();
      const primary = pair.client(pair.primary);
      const figures: string[] = [];
      // Each twice, alternating, so neither gets the warm-up alone; both runs are logged.
      for (const chargesWait of [false, true, false, true]) {
        const till = createTill({
          store: new RedisStore({ client: primary, namespace, logger: silentLogger, ...(chargesWait && { replicas: 1, replicaTimeout: 1000, chargesWait }) }),
          logger: silentLogger,
          auditEvents: false,
          usage: false,
        });
        tills.push(till);
        const { key } = await till.keys.create({ name: `bench ${chargesWait}`, scopes: [], credits: { remaining: 1_000_000 } });
        await spendCount(till, key, 200, 20); // warm-up
        for (const parallel of [1, 20]) {
          const n = parallel === 1 ? 500 : 2000;
          const started = process.hrtime.bigint();
          const out = await spendCount(till, key, n, parallel);
          const us = Number(process.hrtime.bigint() - started) / 1000 / n;
          expect(out.VALID).toBe(n);
          figures.push(`chargesWait ${chargesWait ? 'on ' : 'off'}, ${String(parallel).padStart(2)} at a time: ${us.toFixed(0)} µs per request`);
        }
      }
      console.log(`[drill charges-failover] cost of a charge, primary + 1 replica on loopback:\n  ${figures.join('\n  ')}`);
    } finally {
      for (const t of tills.splice(0)) await t.close();
      await pair.stop();
    }
  }, 60_000);
});
