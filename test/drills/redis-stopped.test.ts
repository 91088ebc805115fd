// Drill: the Redis server of a deployment stopped under load, then restarted. Two real app processes
// (the testkit's drill-app: Express + apiKeyAuth on a RedisStore, the built packages) verify keys while this
// test sends them a steady load; the test kills its own redis-server (SIGKILL: a crash, not a clean
// shutdown) mid-load and later starts it again on the same port and data directory (append-only file,
// fsync always, as a production Redis would keep its data). What must hold:
// - keys the apps verified recently keep working from their caches within the stale window, and are
//   refused 503 once it is over;
// - keys an app has not seen (real or made up) get 503, never 200 nor 500; a revoked key never gets 200;
// - when Redis returns, verification recovers by itself, without restarting the apps, with the data of
//   before the crash; a revocation made after the recovery reaches both apps through the invalidation
//   channel (which each app had to subscribe to again).
// test/redis-down.test.ts covers the same outage in one process through supertest; this drill adds separate
// processes, real sockets, concurrent load and a crash-restart of Redis with its data on disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { freePort, type RunningRedis } from '@till/testkit/redis-server';
import { uniqueNamespace } from '@till/testkit/redis';
import { get, sleep, startApp, startPersistentRedis, tally, waitFor, type Answer, type DrillApp } from '@till/testkit/drill-apps';

/** The apps trust a cached key for TTL ms, then for STALE more ms while Redis is unreachable. */
const TTL = 500;
const STALE = 3000;
/** Load loops and the pause each makes between requests: a steady load that leaves the apps CPU to spare. */
const LOOPS = 4;
const PAUSE_MS = 5;

type Kind = 'warm' | 'cold' | 'revokedSeen' | 'revokedUnseen' | 'unknown';
interface Sample extends Answer {
  app: number;
  kind: Kind;
  /** Date.now() when sent. */
  sentAt: number;
}

describe('Redis stopped under load, then restarted', () => {
  const namespace = uniqueNamespace();
  const dir = mkdtempSync(join(tmpdir(), 'till-drill-redis-stopped-'));
  let redis: RunningRedis | undefined;
  let client: Redis | undefined;
  let till: Till | undefined;
  const apps: DrillApp[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });

  afterAll(async () => {
    agent.destroy();
    await Promise.all(apps.map((a) => a.stop()));
    await till?.close();
    client?.disconnect();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves cached keys within the stale window, refuses the rest with 503, never admits a revoked key, and recovers alone', async () => {
    const port = await freePort();
    redis = await startPersistentRedis(port, dir);
    client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    client.on('error', () => {});
    till = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger, usage: false, auditEvents: false });
    const create = async (name: string) => {
      const { key, record } = await till!.keys.create({ name, scopes: ['a'] });
      return { id: record.id, key };
    };
    const warm = await Promise.all([0, 1, 2, 3].map((i) => create(`warm ${i}`)));
    const cold = await Promise.all([0, 1, 2, 3].map((i) => create(`cold ${i}`)));
    const revokedSeen = await create('revoked after use');
    const revokedUnseen = await create('revoked before use');
    await till.keys.revoke(revokedUnseen.id, { reason: 'drill' });

    for (let i = 0; i < 2; i++) {
      apps.push(await startApp({ redisUrl: redis.url, namespace, name: `drill-stopped-${i}`, cache: { ttl: TTL, staleWindow: STALE }, retryDelay: 100 }));
    }
    // Each app subscribes to invalidations on its first verification and drops its cache once Redis
    // confirms: wait for that, so no later flush empties a cache the drill counts on.
    const flushed = await waitFor(async () => (await Promise.all(apps.map((a) => a.stats()))).every((s) => s.flushes >= 1), 5000);
    expect(flushed, 'both apps subscribed to invalidations').toBe(true);

    for (const app of apps) {
      for (const k of [...warm, revokedSeen]) expect((await get(agent, app.port, k.key)).status).toBe(200);
    }
    // Revoked while both apps hold it as valid: the invalidation evicts it in each.
    await till.keys.revoke(revokedSeen.id, { reason: 'drill' });
    const refusedEverywhere = await waitFor(async () => {
      const answers = await Promise.all(apps.map((a) => get(agent, a.port, revokedSeen.key)));
      return answers.every((a) => a.status === 401 && a.code === 'REVOKED');
    }, 3000);
    expect(refusedEverywhere, 'the revocation reached both apps').toBe(true);

    // The load: every loop takes the next target of the current phase, round robin.
    const samples: Sample[] = [];
    let phase: 'before' | 'outage' | 'done' = 'before';
    let turn = 0;
    const targets = (): Array<{ app: number; kind: Kind; key: () => string }> => {
      const list: Array<{ app: number; kind: Kind; key: () => string }> = [];
      for (let app = 0; app < apps.length; app++) {
        for (const k of warm) list.push({ app, kind: 'warm', key: () => k.key });
        list.push({ app, kind: 'revokedSeen', key: () => revokedSeen.key });
        if (phase === 'outage') {
          for (const k of cold) list.push({ app, kind: 'cold', key: () => k.key });
          list.push({ app, kind: 'revokedUnseen', key: () => revokedUnseen.key });
          // A made-up key of the right format, new every time: no app can have it cached, even as unknown.
          list.push({ app, kind: 'unknown', key: () => generateKey('till').key });
        }
      }
      return list;
    };
    const loop = async () => {
      while (phase !== 'done') {
        const list = targets();
        const target = list[turn++ % list.length]!;
        const sentAt = Date.now();
        const answer = await get(agent, apps[target.app]!.port, target.key(), { timeoutMs: 5000 });
        samples.push({ ...answer, app: target.app, kind: target.kind, sentAt });
        await sleep(PAUSE_MS);
      }
    };
    const loops = Array.from({ length: LOOPS }, loop);
    // Under way before the crash: enough answers (every kind of the phase, in both apps) to compare with.
    expect(await waitFor(() => samples.length > 50, 10_000, 20), 'the load was under way before the crash').toBe(true);

    // The crash. `killAt` bounds the apps' last successful read from below (they read under load until
    // then), `goneAt` from above (nothing can be read from a dead server).
    const killAt = Date.now();
    await redis.stop();
    const goneAt = Date.now();
    phase = 'outage';
    await waitFor(() => Date.now() > goneAt + TTL + STALE + 1000, 10_000, 50);
    phase = 'done';
    await Promise.all(loops);

    // Back on the same port, with the same files.
    const flushesBefore = (await Promise.all(apps.map((a) => a.stats()))).map((s) => s.flushes);
    const restartAt = Date.now();
    redis = await startPersistentRedis(port, dir);
    const recovered = await waitFor(
      async () => {
        const answers = await Promise.all(apps.map((a) => get(agent, a.port, cold[0]!.key)));
        return answers.every((a) => a.status === 200);
      },
      10_000,
      50,
    );
    const recoveredMs = Date.now() - restartAt;
    expect(recovered, 'verification recovered in both apps without restarting them').toBe(true);

    const after: Array<{ app: number; kind: Kind; answer: Answer }> = [];
    for (let app = 0; app < apps.length; app++) {
      const port = apps[app]!.port;
      for (const k of warm) after.push({ app, kind: 'warm', answer: await get(agent, port, k.key) });
      for (const k of cold) after.push({ app, kind: 'cold', answer: await get(agent, port, k.key) });
      after.push({ app, kind: 'revokedSeen', answer: await get(agent, port, revokedSeen.key) });
      after.push({ app, kind: 'revokedUnseen', answer: await get(agent, port, revokedUnseen.key) });
      for (let i = 0; i < 3; i++) after.push({ app, kind: 'unknown', answer: await get(agent, port, generateKey('till').key) });
    }

    // A revocation after the recovery, of a key both apps hold: each hears it on the channel it had to
    // subscribe to again, and refuses the key. Each app's subscriber reconnects on its own schedule,
    // which can lag its command client by a retry delay; until it is subscribed again (the cache is
    // then dropped: a flush) the app reads keys from Redis instead (packages/core/test/invalidation-lost.test.ts).
    const resubscribed = await waitFor(async () => (await Promise.all(apps.map((a) => a.stats()))).every((s, i) => s.flushes > flushesBefore[i]!), 5000, 10);
    expect(resubscribed, 'both apps subscribed again (and dropped their caches) after the restart').toBe(true);
    for (const app of apps) expect((await get(agent, app.port, warm[0]!.key)).status).toBe(200);
    // This process's own client reconnects on its own schedule (every 100 ms): the apps may be back first.
    expect(await waitFor(() => client!.status === 'ready', 5000, 10), 'the admin client reconnected').toBe(true);
    const revokeAt = Date.now();
    await till.keys.revoke(warm[0]!.id, { reason: 'drill, after the recovery' });
    const heard = await waitFor(async () => (await Promise.all(apps.map((a) => a.stats()))).every((s) => s.heard.includes(warm[0]!.id)), 3000, 10);
    const heardMs = Date.now() - revokeAt;
    const refusedAfter = await Promise.all(apps.map((a) => get(agent, a.port, warm[0]!.key)));
    const stats = await Promise.all(apps.map((a) => a.stats()));

    // What was seen, by phase and kind of key.
    const outage = samples.filter((s) => s.sentAt >= goneAt);
    const before = samples.filter((s) => s.sentAt < killAt);
    const of = (list: Sample[], kind: Kind) => list.filter((s) => s.kind === kind);
    const warmOutage = of(outage, 'warm');
    const last200 = Math.max(...warmOutage.filter((s) => s.status === 200).map((s) => s.sentAt - goneAt));
    const first503 = Math.min(...warmOutage.filter((s) => s.status === 503).map((s) => s.sentAt - goneAt));
    console.log(
      `[drill redis-stopped] 2 apps, ${samples.length} requests under load; before the crash: ${tally(before.map((s) => s.status))}; ` +
        `outage: warm ${tally(warmOutage.map((s) => s.status))} (200 until +${last200} ms, 503 from +${first503} ms; window ${TTL}+${STALE} ms), ` +
        `cold ${tally(of(outage, 'cold').map((s) => s.status))}, unknown ${tally(of(outage, 'unknown').map((s) => s.status))}, ` +
        `revoked-after-use ${tally(of(outage, 'revokedSeen').map((s) => `${s.status}${s.code ? `/${s.code}` : ''}`))}, revoked-before-use ${tally(of(outage, 'revokedUnseen').map((s) => s.status))}; ` +
        `recovered ${recoveredMs} ms after the restart; after: ${tally(after.map((a) => `${a.kind}:${a.answer.status}`))}; ` +
        `revocation after recovery heard by ${stats.filter((s) => s.heard.includes(warm[0]!.id)).length}/2 in ${heardMs} ms (key ${warm[0]!.id})`,
    );

    // Nothing below HTTP (a crash, a hang), nothing but the documented statuses, no app error.
    expect(samples.filter((s) => s.status === 0).map((s) => s.error)).toEqual([]);
    expect(samples.filter((s) => s.status !== 200 && s.status !== 401 && s.status !== 503).map((s) => `${s.kind} ${s.status} ${s.code}`)).toEqual([]);
    expect(stats.map((s) => s.appErrors)).toEqual([0, 0]);
    expect(before.length).toBeGreaterThan(50);
    expect(before.filter((s) => s.kind === 'warm').every((s) => s.status === 200)).toBe(true);
    // Revoked keys: never admitted, in any phase.
    const revokedAnswers = [...samples, ...after.map((a) => ({ ...a.answer, kind: a.kind }))].filter(
      (s) => s.kind === 'revokedSeen' || s.kind === 'revokedUnseen',
    );
    expect(revokedAnswers.filter((s) => s.status === 200)).toEqual([]);
    expect(of(outage, 'revokedSeen').every((s) => (s.status === 401 && s.code === 'REVOKED') || (s.status === 503 && s.code === 'STORE_UNAVAILABLE'))).toBe(
      true,
    );
    expect(of(outage, 'revokedUnseen').every((s) => s.status === 503)).toBe(true);

    // Warm keys: 200 well inside the stale window (counted from the last read, at most one TTL and a
    // request before the kill), 503 once past TTL + STALE after the server was gone (with 300 ms for a
    // reply the kernel held at the kill and a busy app read a little later).
    expect(warmOutage.length).toBeGreaterThan(50);
    const inside = warmOutage.filter((s) => s.sentAt < killAt + STALE - 500);
    const past = warmOutage.filter((s) => s.sentAt > goneAt + TTL + STALE + 300);
    expect(inside.length).toBeGreaterThan(20);
    expect(past.length).toBeGreaterThan(5);
    expect(inside.filter((s) => s.status !== 200).map((s) => `${s.status} at +${s.sentAt - goneAt} ms`)).toEqual([]);
    expect(past.filter((s) => s.status !== 503 || s.code !== 'STORE_UNAVAILABLE').map((s) => `${s.status} at +${s.sentAt - goneAt} ms`)).toEqual([]);
    expect(warmOutage.every((s) => s.status === 200 || s.status === 503)).toBe(true);

    // Keys no app had cached: 503 with Retry-After and the problem code, never 200, never 500.
    for (const kind of ['cold', 'unknown'] as const) {
      const list = of(outage, kind);
      expect(list.length).toBeGreaterThan(10);
      expect(list.filter((s) => s.status !== 503 || s.code !== 'STORE_UNAVAILABLE' || s.retryAfter !== '2').map((s) => `${s.status} ${s.code}`)).toEqual([]);
    }

    // After the restart: the data survived (the revocations too), each kind answers as before the crash.
    const expected: Record<Kind, [number, string | null]> = {
      warm: [200, null],
      cold: [200, null],
      revokedSeen: [401, 'REVOKED'],
      revokedUnseen: [401, 'REVOKED'],
      unknown: [401, 'NOT_FOUND'],
    };
    expect(
      after
        .filter((a) => a.answer.status !== expected[a.kind][0] || a.answer.code !== expected[a.kind][1])
        .map((a) => `app ${a.app} ${a.kind}: ${a.answer.status} ${a.answer.code}`),
    ).toEqual([]);
    expect(heard, 'both apps heard the revocation made after the recovery').toBe(true);
    expect(refusedAfter.map((a) => [a.status, a.code])).toEqual([
      [401, 'REVOKED'],
      [401, 'REVOKED'],
    ]);
  }, 60_000);
});
