// `till console` as a process: serves the API (and the dashboard) over the Redis it is given, signs
// in with keys made elsewhere, records the acting key, and stops cleanly on SIGTERM.
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, runTill, startTill } from './harness.js';

const namespace = uniqueNamespace();
let client: Redis;
let till: Till;
let store: RedisStore;
beforeAll(() => {
  assertBuilt();
  client = newClient();
  store = new RedisStore({ client, namespace });
  till = createTill({ store, logger: silentLogger });
});
afterAll(async () => {
  await till.close();
  await store.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

describe('till console', () => {
  it('serves the admin API for the keys in Redis until SIGTERM', async () => {
    const admin = await till.keys.create({ name: 'console admin', scopes: ['till:admin'] });
    const server = startTill(['--namespace', namespace, 'console', '--port', '0'], { REDIS_URL: redisUrl() });
    await server.until(({ stdout }) => /http:\/\/127\.0\.0\.1:\d+\//.test(stdout));
    const base = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(server.stdout())![1]!;
    const headers = { authorization: `Bearer ${admin.key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/api/keys`)).status).toBe(401);
    const created = await fetch(`${base}/api/keys`, { method: 'POST', headers, body: JSON.stringify({ name: 'from the console', scopes: ['a:b'] }) });
    expect(created.status).toBe(201);
    const { record } = (await created.json()) as { record: { id: string } };
    const [entry] = (await till.keys.audit({ keyId: record.id, types: ['key.created'] })).entries;
    expect(entry?.actor).toBe(`console:${admin.record.id}`);
    server.child.kill('SIGTERM');
    const run = await server.done;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(admin.key);
  });

  it('refuses a bad port and an unreachable Redis before serving', async () => {
    const badPort = await runTill(['--namespace', namespace, 'console', '--port', 'http'], { REDIS_URL: redisUrl() });
    expect(badPort.code).toBe(1);
    expect(badPort.stderr).toMatch(/--port/);
    const noRedis = await runTill(['console', '--port', '0'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(noRedis.code).toBe(3);
  });
});
