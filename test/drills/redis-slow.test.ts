// Drill: Redis hangs. The test freezes its own redis-server with SIGSTOP (a stalled host: connections stay
// open, nothing answers, no error ever comes) and thaws it with SIGCONT. One real app process (Express +
// apiKeyAuth, RedisStore commandTimeout 300 ms) and this process's own key manager (same timeout) must
// never hang on it:
// - an uncached key gets 503 within the command timeout plus a margin, alone or many at once;
// - cached keys are served from memory: a fresh one at once, one past its TTL (inside the stale window)
//   after the command timeout;
// - a write (create, revoke) rejects with TillError STORE_UNAVAILABLE within the same bound;
// - once Redis answers again, everything works, without restarting anything;
// - usage counts are exact across the stall (the app writes them every 200 ms, so writes time out and
//   are sent again: a batch id makes Redis apply each once, though a timed-out write ran when it woke).
// Printed, not asserted: whether a create that was rejected left a record behind. A command that timed
// out has been sent, and Redis runs it when it wakes up; the store sends a change's later steps only
// after the earlier ones answered, so it depends on which step was waiting (a key nobody holds the
// secret of, at worst).
// test/redis-down.test.ts covers CLIENT PAUSE in-process; here the server process itself is stopped, and
// the app is a separate process reached over real sockets.
import { Agent } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, isTillError, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { freePort, type RunningRedis } from '@till/testkit/redis-server';
import { uniqueNamespace } from '@till/testkit/redis';
import { get, startApp, startOwnRedis, tally, waitFor, type Answer, type DrillApp } from '@till/testkit/drill-apps';

const COMMAND_TIMEOUT = 300;
/** Every answer during the stall must come within this: one command timeout, plus scheduling and HTTP on a busy 2-core machine. */
const BOUND_MS = 1500;
const TTL = 1000;
const STALE = 30_000;

/** How long a promise took to settle, and how: never rejects. */
async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = performance.now();
  try {
    const value = await work();
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

describe('Redis hangs (SIGSTOP) under a live app', () => {
  const namespace = uniqueNamespace();
  let redis: RunningRedis | undefined;
  let client: Redis | undefined;
  let till: Till | undefined;
  let app: DrillApp | undefined;
  let frozen = false;
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });

  const thaw = () => {
    if (frozen) redis?.process.kill('SIGCONT');
    frozen = false;
  };

  afterAll(async () => {
    thaw();
    agent.destroy();
    await app?.stop();
    await till?.close();
    client?.disconnect();
    await redis?.stop();
  });

  it('answers 503 within the command timeout, serves cached keys from memory, fails writes fast, and recovers', async () => {
    const port = await freePort();
    redis = await startOwnRedis(port);
    client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    client.on('error', () => {});
    till = createTill({
      store: new RedisStore({ client, namespace, commandTimeout: COMMAND_TIMEOUT }),
      logger: silentLogger,
      usage: false,
      auditEvents: false,
    });
    const create = async (name: string) => {
      const { key, record } = await till!.keys.create({ name, scopes: ['a'] });
      return { id: record.id, key };
    };
    const fresh = await create('fresh');
    const stale = await create('stale');
    const revoked = await create('revoked');
    const cold = await Promise.all(Array.from({ length: 8 }, (_, i) => create(`cold ${i}`)));
    const victim = await create('revoked during the stall');
    await till.keys.revoke(revoked.id);
    const keysBefore = (await till.keys.list({ limit: 100 })).keys.length;

    app = await startApp({
      redisUrl: redis.url,
      namespace,
      name: 'drill-slow',
      commandTimeout: COMMAND_TIMEOUT,
      cache: { ttl: TTL, staleWindow: STALE },
      usage: { interval: 200 },
    });
    // Every answer of the app, for the usage check at the end.
    const answers: Answer[] = [];
    const ask = async (key: string) => {
      const answer = await get(agent, app!.port, key, { timeoutMs: 5000 });
      answers.push(answer);
      return answer;
    };
    expect(await waitFor(async () => (await app!.stats()).flushes >= 1, 5000), 'the app subscribed to invalidations').toBe(true);

    // `stale` and `revoked` are read now and will be past their TTL when Redis hangs; `fresh` just before.
    expect((await ask(stale.key)).status).toBe(200);
    expect((await ask(revoked.key)).code).toBe('REVOKED');
    const readAt = Date.now();
    await waitFor(() => Date.now() > readAt + TTL + 50, 5000, 10);
    expect((await ask(fresh.key)).status).toBe(200);

    redis.process.kill('SIGSTOP');
    frozen = true;
    const during: Record<string, Answer> = {};
    const writes: Record<string, { ms: number; error?: unknown }> = {};
    let burst: Answer[] = [];
    try {
      during.fresh = await ask(fresh.key);
      during.cold = await ask(cold[0]!.key);
      during.unknown = await ask(generateKey('till').key);
      during.stale = await ask(stale.key);
      during.revoked = await ask(revoked.key);
      // Many at once: 24 requests for 8 uncached keys (single-flight per id) and 8 made-up ones.
      burst = await Promise.all([...cold.flatMap((k) => [0, 1, 2].map(() => ask(k.key))), ...Array.from({ length: 8 }, () => ask(generateKey('till').key))]);
      writes.create = await timed(() => till!.keys.create({ name: 'created during the stall', scopes: ['a'] }));
      writes.revoke = await timed(() => till!.keys.revoke(victim.id, { reason: 'during the stall' }));
    } finally {
      thaw();
    }
    const thawAt = Date.now();
    const back = await waitFor(async () => (await ask(cold[0]!.key)).status === 200, 5000, 20);
    const backMs = Date.now() - thawAt;
    const afterCold = await Promise.all(cold.map((k) => ask(k.key)));
    const afterCreate = await timed(() => till!.keys.create({ name: 'created after the stall', scopes: ['a'] }));
    // What became of the writes that timed out: the commands were still queued when Redis came back.
    const keysAfter = (await till.keys.list({ limit: 100 })).keys.length;
    const victimAfter = await till.keys.get(victim.id);
    const stats = await app.stats();
    // Usage: the app's graceful stop writes its last counts; then each key's VALID count must be the
    // number of 200s it answered for that key (nothing lost, nothing counted twice).
    agent.destroy();
    await app.stop();
    const admitted = new Map<string, number>();
    for (const a of answers) if (a.status === 200 && a.id !== null) admitted.set(a.id, (admitted.get(a.id) ?? 0) + 1);
    const counted = new Map<string, number>();
    for (const id of admitted.keys()) {
      const usage = await till.keys.usage(id, { days: 2 });
      counted.set(
        id,
        usage.days.reduce((n, d) => n + (d.counts.VALID ?? 0), 0),
      );
    }
    const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

    const fmt = (a: Answer) => `${a.status}${a.code ? `/${a.code}` : ''} in ${Math.round(a.ms)} ms`;
    const errorCode = (e: unknown) => (isTillError(e) ? e.code : e === undefined ? 'resolved' : String(e));
    console.log(
      `[drill redis-slow] SIGSTOP with commandTimeout ${COMMAND_TIMEOUT} ms: ${Object.entries(during)
        .map(([k, a]) => `${k} ${fmt(a)}`)
        .join(', ')}; ` +
        `burst of ${burst.length}: ${tally(burst.map((a) => a.status))}, slowest ${Math.round(Math.max(...burst.map((a) => a.ms)))} ms; ` +
        `create ${errorCode(writes.create!.error)} in ${Math.round(writes.create!.ms)} ms, revoke ${errorCode(writes.revoke!.error)} in ${Math.round(writes.revoke!.ms)} ms; ` +
        `after SIGCONT: 200 again in ${backMs} ms, cold ${tally(afterCold.map((a) => a.status))}, create ${errorCode(afterCreate.error)}; ` +
        `timed-out writes applied later: create ${keysAfter - keysBefore - 1 > 0 ? 'yes' : 'no'}, revoke ${victimAfter?.revokedAt ? 'yes' : 'no'} (key ${victim.id}); ` +
        `usage: ${sum(admitted)} requests admitted, ${sum(counted)} counted (over-counted: ${
          [...admitted]
            .filter(([id, n]) => counted.get(id) !== n)
            .map(([id, n]) => `${id} ${n}->${counted.get(id)}`)
            .join(', ') || 'none'
        }); app errors ${stats.appErrors}`,
    );

    // Cached keys, from memory: fresh at once, past the TTL after the read times out.
    expect([during.fresh!.status, during.stale!.status]).toEqual([200, 200]);
    expect(during.fresh!.ms).toBeLessThan(BOUND_MS);
    expect(during.stale!.ms).toBeLessThan(BOUND_MS);
    expect([during.revoked!.status, during.revoked!.code]).toEqual([401, 'REVOKED']);
    // Uncached: 503 with Retry-After, within the bound, never 500 nor a hang.
    for (const a of [during.cold!, during.unknown!, ...burst]) {
      expect([a.status, a.code, a.retryAfter]).toEqual([503, 'STORE_UNAVAILABLE', '2']);
      expect(a.ms).toBeLessThan(BOUND_MS);
    }
    // Writes: a typed error within the bound.
    for (const w of [writes.create!, writes.revoke!]) {
      expect(isTillError(w.error, 'STORE_UNAVAILABLE'), String(w.error)).toBe(true);
      expect(w.ms).toBeLessThan(BOUND_MS);
    }
    // Back to normal once Redis answers.
    expect(back).toBe(true);
    expect(afterCold.every((a) => a.status === 200)).toBe(true);
    expect(afterCreate.error).toBeUndefined();
    expect(stats.appErrors).toBe(0);
    for (const [id, n] of admitted) expect(counted.get(id), `usage of ${id}`).toBe(n);
  }, 40_000);
});
