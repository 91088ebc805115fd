// Drill: an app process restarted (a deploy) loses nothing. A real app process (Express + apiKeyAuth on a
// RedisStore, the built packages) creates keys, changes some, serves requests (usage counted in memory,
// security events gathered in memory), and is sent SIGTERM while requests are still in flight. Its graceful
// shutdown (the testkit's drill-app: stop accepting, answer what is in flight, then till.close(), then quit
// Redis) must write everything; a new process on the same Redis then sees the keys, the changes, the usage
// counts, the credits left and the audit trail. The app writes usage and security events every 60 s here,
// so nothing reaches Redis before the shutdown but by the shutdown itself (checked before the SIGTERM).
import { Agent } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { freePort, type RunningRedis } from '@till/testkit/redis-server';
import { uniqueNamespace } from '@till/testkit/redis';
import { get, startApp, startOwnRedis, tally, waitFor, type Answer, type DrillApp, type DrillAppConfig } from '@till/testkit/drill-apps';
import { idOf, madeUpKey, wrongSecretKey } from '@till/testkit/key-forgery';

/** Requests in flight (admitted, not yet answered) when the first process gets SIGTERM. */
const SLOW = 10;

interface Entry {
  type: string;
  keyId: string | null;
  code: string | null;
  count: number;
  reason: string | null;
  ip: string | null;
}
interface Short {
  id: string;
  name: string;
  scopes: string[];
  revokedAt: number | null;
  revokedReason: string | null;
  disabled: boolean;
  version: number;
}

describe('an app process restarted', () => {
  const namespace = uniqueNamespace();
  let redis: RunningRedis | undefined;
  let client: Redis | undefined;
  let reader: Till | undefined;
  const apps: DrillApp[] = [];

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.stop()));
    await reader?.close();
    client?.disconnect();
    await redis?.stop();
  });

  it('writes usage and audit events on SIGTERM, and the next process sees keys, changes, usage, credits and the trail', async () => {
    const port = await freePort();
    redis = await startOwnRedis(port);
    // This process only reads, between the two app processes, to show what reached Redis when.
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    reader = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger, usage: false, auditEvents: false });
    const config: DrillAppConfig = { redisUrl: redis.url, namespace, usage: { interval: 60_000 }, auditEvents: { interval: 60_000 } };
    const first = await startApp({ ...config, name: 'drill-restart-1' });
    apps.push(first);

    // Keys made and changed by the first process.
    const create = async (name: string, extra: Record<string, unknown> = {}) =>
      first.call<{ id: string; key: string }>('create', { input: { name, scopes: ['a'], ...extra } });
    const active = await create('active');
    const updated = await create('updated');
    const revoked = await create('revoked');
    const disabled = await create('disabled');
    const metered = await create('metered', { credits: { remaining: 10 } });
    await first.call('update', { id: updated.id, patch: { name: 'updated, renamed', scopes: ['a', 'b'] } });
    await first.call('revoke', { id: revoked.id, reason: 'drill: leaked' });
    await first.call('disable', { id: disabled.id });

    // Traffic, one request at a time, then a burst cut by the SIGTERM.
    const agent = new Agent({ keepAlive: true, maxSockets: 32 });
    const answers: Array<Answer & { key: string }> = [];
    const send = async (key: string, path = '/') => {
      const answer = await get(agent, first.port, key, { timeoutMs: 5000, path });
      answers.push({ ...answer, key });
      return answer;
    };
    const madeUp = [madeUpKey(), madeUpKey(), madeUpKey()];
    const wrong = wrongSecretKey(active.key);
    for (let i = 0; i < 7; i++) await send(active.key);
    for (let i = 0; i < 3; i++) await send(updated.key);
    for (let i = 0; i < 2; i++) await send(revoked.key);
    for (let i = 0; i < 2; i++) await send(disabled.key);
    for (let i = 0; i < 2; i++) await send(wrong);
    for (const k of madeUp) await send(k);
    for (let i = 0; i < 4; i++) await send(metered.key);
    expect(answers.map((a) => a.status)).toEqual([...Array(10).fill(200), ...Array(9).fill(401), ...Array(4).fill(200)]);

    // Nothing of it is in Redis yet: usage and security events wait in the first process's memory.
    const usageOf = async (id: string) => {
      const usage = await reader!.keys.usage(id, { days: 2 });
      const counts: Record<string, number> = {};
      for (const day of usage.days) for (const [code, n] of Object.entries(day.counts)) counts[code] = (counts[code] ?? 0) + (n ?? 0);
      return { counts, lastUsedAt: usage.lastUsedAt };
    };
    expect((await usageOf(active.id)).counts).toEqual({});
    expect((await reader.keys.audit({ types: ['auth.failed', 'key.misused'] })).entries).toEqual([]);

    // Requests in flight when SIGTERM arrives: 10 admitted on /slow and held there until the app is
    // shutting down, and 10 more sent just after the signal. The 10 must be answered, and every request
    // admitted must be counted.
    const slow = Array.from({ length: SLOW }, (_, i) => send(i % 2 === 0 ? active.key : metered.key, '/slow'));
    expect(await waitFor(async () => (await first.stats()).inflight === SLOW, 5000, 5), 'requests in flight').toBe(true);
    const termAt = Date.now();
    first.child.kill('SIGTERM');
    const late = Array.from({ length: 10 }, (_, i) => send(i % 2 === 0 ? active.key : metered.key));
    expect(await waitFor(async () => (await first.stats()).closing, 5000, 5), 'the app began its shutdown').toBe(true);
    expect((await first.call<{ count: number }>('release')).count).toBe(SLOW);
    const inFlight = await Promise.all(slow);
    await Promise.all(late);
    const exit = await first.exited(10_000);
    const shutdownMs = Date.now() - termAt;
    agent.destroy();
    expect(exit, 'the first process exited by itself after SIGTERM').toEqual({ code: 0, signal: null });
    expect(first.shutdowns).toHaveLength(1);
    expect(
      inFlight.map((a) => a.status),
      'requests in flight at SIGTERM were answered',
    ).toEqual(Array(SLOW).fill(200));

    // What the client was told: the expected counts are the client's 200s (and 401s), whatever the burst got.
    const count = (key: string, status: number) => answers.filter((a) => a.key === key && a.status === status).length;
    const burstStatuses = tally(answers.slice(23).map((a) => (a.status === 0 ? 'refused' : a.status)));

    // A new process on the same Redis.
    const second = await startApp({ ...config, name: 'drill-restart-2' });
    apps.push(second);
    const { keys } = await second.call<{ keys: Short[] }>('list');
    const byId = new Map(keys.map((k) => [k.id, k]));
    const usage = {
      active: await usageOf(active.id),
      updated: await usageOf(updated.id),
      revoked: await usageOf(revoked.id),
      disabled: await usageOf(disabled.id),
      metered: await usageOf(metered.id),
    };
    const { credits } = await second.call<{ credits: number | null }>('credits', { id: metered.id });
    const trail = async (id: string) => (await second.call<{ entries: Entry[] }>('audit', { query: { keyId: id } })).entries;
    const trails = { active: await trail(active.id), updated: await trail(updated.id), revoked: await trail(revoked.id), disabled: await trail(disabled.id) };
    const failures = (await second.call<{ entries: Entry[] }>('audit', { query: { types: ['auth.failed', 'key.probed'] } })).entries;
    const agent2 = new Agent({ keepAlive: true });
    const now = {
      active: await get(agent2, second.port, active.key),
      updated: await get(agent2, second.port, updated.key),
      revoked: await get(agent2, second.port, revoked.key),
      disabled: await get(agent2, second.port, disabled.key),
    };
    agent2.destroy();

    const fmtTrail = (entries: Entry[]) => entries.map((e) => (e.code ? `${e.type}/${e.code}x${e.count}` : e.type)).join(',');
    console.log(
      `[drill app-restart] first process: ${answers.length} requests, ${SLOW} in flight at SIGTERM and 10 sent after it: ${burstStatuses}; graceful exit ${exit?.code} in ${shutdownMs} ms; ` +
        `second process sees ${keys.length} keys, usage ${Object.entries(usage)
          .map(([k, u]) => `${k} ${tally(Object.entries(u.counts).flatMap(([c, n]) => Array(n).fill(c)))}`)
          .join('; ')}; ` +
        `credits left ${credits}; trails: ${Object.entries(trails)
          .map(([k, t]) => `${k} [${fmtTrail(t)}]`)
          .join(' ')}; ` +
        `auth.failed entries ${failures.length} (keys ${failures.map((f) => f.keyId).join(', ')})`,
    );

    // The keys and their changes.
    expect(keys).toHaveLength(5);
    expect(byId.get(updated.id)).toMatchObject({ name: 'updated, renamed', scopes: ['a', 'b'], version: 2 });
    expect(byId.get(revoked.id)).toMatchObject({ revokedReason: 'drill: leaked' });
    expect(byId.get(revoked.id)!.revokedAt).not.toBeNull();
    expect(byId.get(disabled.id)).toMatchObject({ disabled: true });
    expect([now.active.status, now.updated.status, [now.revoked.status, now.revoked.code], [now.disabled.status, now.disabled.code]]).toEqual([
      200,
      200,
      [401, 'REVOKED'],
      [401, 'DISABLED'],
    ]);

    // Usage: every answer the client had is counted, burst included.
    // The two wrong secrets are probing of the id, not uses of the key: not in its counts.
    expect(usage.active.counts).toEqual({ VALID: count(active.key, 200) });
    expect(usage.active.lastUsedAt).not.toBeNull();
    expect(usage.updated.counts).toEqual({ VALID: 3 });
    expect(usage.revoked.counts).toEqual({ REVOKED: 2 });
    expect(usage.disabled.counts).toEqual({ DISABLED: 2 });
    expect(usage.metered.counts).toEqual({ VALID: count(metered.key, 200) });
    // Credits are spent in Redis with each request: 10 less one per admitted request.
    expect(credits).toBe(10 - count(metered.key, 200));

    // The trail: each change, then the security events the first process gathered and wrote on its way out.
    expect(fmtTrail(trails.active)).toBe('key.created,key.probed/NOT_FOUNDx2');
    expect(fmtTrail(trails.updated)).toBe('key.created,key.updated');
    expect(fmtTrail(trails.revoked)).toBe('key.created,key.revoked,key.misused/REVOKEDx2');
    expect(fmtTrail(trails.disabled)).toBe('key.created,key.disabled,key.misused/DISABLEDx2');
    expect(trails.revoked[1]!.reason).toBe('drill: leaked');
    expect(new Set(failures.map((f) => f.keyId))).toEqual(new Set([active.id, ...madeUp.map(idOf)]));
    expect(failures.every((f) => f.code === 'NOT_FOUND' && f.ip !== null)).toBe(true);
    expect(answers.filter((a) => a.status !== 0 && a.status !== 200 && a.status !== 401).map((a) => `${a.status} ${a.code}`)).toEqual([]);
    expect((await second.stats()).appErrors).toBe(0);
  }, 40_000);
});
