// Revocations that would silently not arrive: a verifier that cannot subscribe, an admin that cannot
// publish, and the zero-config path, with real Redis ACL users. A verifier trusts its cache only while
// its subscription is confirmed; a change is announced, or its caller learns that it was not.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, defaultTill, isTillError, resetDefaultTill, type Till, type TillEvent } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

const run = promisify(execFile);
const namespace = uniqueNamespace();
const suffix = randomBytes(4).toString('hex');
const password = randomBytes(12).toString('hex');
let admin: Redis;
const users: string[] = [];
const clients: Redis[] = [];
const tills: Till[] = [];

/** A Redis user of this test's own, with `rules` (ACL SETUSER), and a client logged in as it. */
async function userClient(role: string, rules: string[]): Promise<Redis> {
  const name = `till-test-${role}-${suffix}`;
  users.push(name);
  await admin.call('ACL', 'SETUSER', name, 'reset', 'on', `>${password}`, ...rules);
  const url = new URL(redisUrl());
  url.username = name;
  url.password = password;
  const client = new Redis(url.toString(), { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

/** Ids of the connections Redis lists under `name` whose flags include `flag` (P: pub/sub). */
async function connectionIds(name: string, flag = ''): Promise<string[]> {
  const list = String(await admin.client('LIST'));
  return [...list.matchAll(/(?:^|\n)id=(\d+) [^\n]*name=(\S+) [^\n]*flags=(\S+)/g)].filter((m) => m[2] === name && m[3]!.includes(flag)).map((m) => m[1]!);
}

function tillOn(client: Redis, extra: Partial<Parameters<typeof createTill>[0]> = {}): Till {
  const till = createTill({ store: new RedisStore({ client, namespace }), logger: { warn() {}, error() {} }, cache: { ttl: 60_000 }, ...extra });
  tills.push(till);
  return till;
}

beforeAll(() => {
  admin = newClient();
});

afterAll(async () => {
  for (const till of tills) await till.close();
  for (const client of clients) client.disconnect();
  for (const user of users) await admin.call('ACL', 'DELUSER', user);
  await deleteNamespace(admin, namespace);
  admin.disconnect();
});

describe('a verifier whose Redis user may not subscribe', () => {
  it('refuses a revoked key at once, and says once that it cannot hear changes', async () => {
    // Every command and key, but no channel: SUBSCRIBE is refused with NOPERM.
    const restricted = await userClient('nochan', ['~*', '+@all', 'resetchannels']);
    const warnings: string[] = [];
    const events: TillEvent[] = [];
    const service = tillOn(restricted, { logger: { warn: (m) => warnings.push(m), error() {} } });
    service.events.on((e) => events.push(e));
    const manager = tillOn(admin);
    const { key, record } = await manager.keys.create({ name: 'held', scopes: ['a'] });

    expect((await service.verify(key)).valid).toBe(true);
    expect(await waitFor(() => warnings.length > 0, 5000)).toBe(true);
    expect(warnings[0]).toMatch(/^\[till\] \[redis\] cannot subscribe to key changes \(NOPERM/);
    expect((service.store as RedisStore).invalidationsLost()).toBe(true);
    expect((await service.verify(key)).valid).toBe(true);

    await manager.keys.revoke(record.id, { reason: 'leaked' });
    expect((await service.verify(key)).code).toBe('REVOKED');
    for (let i = 0; i < 20; i++) await service.verify(key);
    // Logged and emitted once for the whole failure, not per request or per retry.
    expect(warnings).toHaveLength(1);
    expect(events.filter((e) => e.type === 'invalidations.failed')).toHaveLength(1);
    expect(warnings.join('\n')).not.toContain(key);
  });

  it('trusts the cache again once the user may subscribe', async () => {
    const restricted = await userClient('later', ['~*', '+@all', 'resetchannels']);
    const events: TillEvent[] = [];
    const service = tillOn(restricted);
    service.events.on((e) => events.push(e));
    const manager = tillOn(admin);
    const { key } = await manager.keys.create({ name: 'held', scopes: ['a'] });
    expect((await service.verify(key)).valid).toBe(true);
    expect(await waitFor(() => events.some((e) => e.type === 'invalidations.failed'), 5000)).toBe(true);
    await admin.call('ACL', 'SETUSER', `till-test-later-${suffix}`, 'allchannels');
    expect(await waitFor(() => events.some((e) => e.type === 'invalidations.restored'), 10_000)).toBe(true);
    expect((service.store as RedisStore).invalidationsLost()).toBe(false);
    expect((await service.verify(key)).valid).toBe(true);
    const hits = service.verifier.stats.hits;
    expect((await service.verify(key)).valid).toBe(true);
    expect(service.verifier.stats.hits).toBe(hits + 1);
  });
});

describe('an admin whose Redis user may not publish', () => {
  it('learns that a change was saved but not announced, for revoke, update, disable and delete', async () => {
    const nopub = await userClient('nopub', ['~*', '&*', '+@all', '-publish']);
    const manager = tillOn(nopub);
    const service = tillOn(admin);
    const { key, record } = await manager.keys.create({ name: 'held', scopes: ['a'] });
    // A running service with the key cached and its subscription confirmed.
    expect((await service.verify(key)).valid).toBe(true);
    expect(await waitFor(() => !(service.store as RedisStore).invalidationsLost(), 5000)).toBe(true);
    expect((await service.verify(key)).valid).toBe(true);

    const refused = await manager.keys.revoke(record.id, { reason: 'leaked' }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isTillError(refused, 'NOT_ANNOUNCED')).toBe(true);
    expect((refused as Error).message).toMatch(/is saved, but it could not be announced .* \+publish/);
    // Saved all the same: the record says revoked, and the manager's own process sees it at once.
    expect((await manager.keys.get(record.id))?.revokedReason).toBe('leaked');
    expect((await manager.verify(key)).code).toBe('REVOKED');
    // The service was never told: it serves its cache until the TTL. That is what the error says.
    expect((await service.verify(key)).valid).toBe(true);

    const other = await manager.keys.create({ name: 'other', scopes: ['a'] });
    for (const change of [
      () => manager.keys.update(other.record.id, { name: 'renamed' }),
      () => manager.keys.disable(other.record.id),
      () => manager.keys.delete(other.record.id),
    ]) {
      const error = await change().then(
        () => null,
        (e: unknown) => e,
      );
      expect(isTillError(error, 'NOT_ANNOUNCED')).toBe(true);
    }
    expect(await manager.keys.get(other.record.id)).toBeNull();

    // A rotation hands over its new key all the same, and says the old key's change was not announced.
    const third = await manager.keys.create({ name: 'third', scopes: ['a'] });
    const rotated = await manager.keys.rotate(third.record.id, { grace: '1h' });
    expect(rotated.announced).toBe(false);
    expect((await manager.verify(rotated.key)).valid).toBe(true);
  });
});

describe('the zero-config path (apiKeyAuth() with REDIS_URL)', () => {
  it('reads through while its subscription is down, so a revocation made meanwhile is refused at once', async () => {
    const name = `till-test-zero-${suffix}`;
    const url = `${redisUrl()}${redisUrl().includes('?') ? '&' : '?'}connectionName=${name}`;
    const zero = defaultTill({ REDIS_URL: url, TILL_NAMESPACE: namespace }, { warn() {}, error() {} });
    try {
      const manager = tillOn(admin);
      const { key, record } = await manager.keys.create({ name: 'held', scopes: ['a'] });
      expect((await zero.verify(key)).valid).toBe(true);
      expect(await waitFor(() => zero.store.invalidationsLost?.() === false, 5000)).toBe(true);
      expect((await zero.verify(key)).valid).toBe(true);

      // Redis drops only this test's subscriber connection (flag P: pub/sub).
      const ids = await connectionIds(name, 'P');
      expect(ids).toHaveLength(1);
      await admin.client('KILL', 'ID', ids[0]!);
      expect(await waitFor(() => zero.store.invalidationsLost?.() === true, 2000, 5)).toBe(true);

      await manager.keys.revoke(record.id, { reason: 'test' });
      expect((await zero.verify(key)).code).toBe('REVOKED');
    } finally {
      await resetDefaultTill();
    }
  });
});

describe('closing', () => {
  it('till.close() leaves the application its client, and closes it with closeStore and closeClient', async () => {
    const own = newClient();
    clients.push(own);
    const kept = createTill({ store: new RedisStore({ client: own, namespace }), logger: { warn() {}, error() {} } });
    await kept.close();
    expect(await own.ping()).toBe('PONG');

    const handed = newClient();
    clients.push(handed);
    await handed.ping();
    const script = createTill({ store: new RedisStore({ client: handed, namespace, closeClient: true }), closeStore: true, logger: { warn() {}, error() {} } });
    await script.keys.create({ name: 'one-off', scopes: ['a'] });
    await script.close();
    expect(await waitFor(() => handed.status === 'end', 2000)).toBe(true);
  });

  it("the store's own subscriber ends with the application's client (so a script can exit) and comes back with it", async () => {
    const name = `till-test-follow-${suffix}`;
    const own = new Redis(redisUrl(), { connectionName: name, maxRetriesPerRequest: 1 });
    own.on('error', () => {});
    clients.push(own);
    const follower = tillOn(own);
    const manager = tillOn(admin);
    const { key, record } = await manager.keys.create({ name: 'followed', scopes: ['a'] });
    expect((await follower.verify(key)).valid).toBe(true);
    expect(await waitFor(() => follower.store.invalidationsLost?.() === false, 5000)).toBe(true);
    const connections = async (flag = '') => (await connectionIds(name, flag)).length;
    expect(await connections('P')).toBe(1);

    // The application closes the client it made, and neither Till nor its store: nothing of theirs stays connected.
    own.disconnect();
    expect(await waitFor(async () => (await connections()) === 0, 5000)).toBe(true);
    expect(follower.store.invalidationsLost?.()).toBe(true);

    // It connects again: so does the subscriber, and a revocation is heard once more.
    await own.connect();
    expect(await waitFor(() => follower.store.invalidationsLost?.() === false, 5000)).toBe(true);
    expect(await connections('P')).toBe(1);
    expect((await follower.verify(key)).valid).toBe(true);
    await manager.keys.revoke(record.id, { reason: 'test' });
    expect(await waitFor(async () => (await follower.verify(key)).code === 'REVOKED', 5000)).toBe(true);
  });

  it('a script that closes its client exits, whether it closes it after its verifications or before the first', async () => {
    // The built packages, as a script imports them (`pnpm test` builds first).
    const script = `
      import { Redis } from 'ioredis';
      import { createTill } from '@till/core';
      import { RedisStore } from '@till/core/redis';
      const client = new Redis(process.env.TILL_TEST_URL, { maxRetriesPerRequest: 1 });
      client.on('error', () => {});
      const till = createTill({ store: new RedisStore({ client, namespace: process.env.TILL_TEST_NS }), logger: { warn() {}, error() {} } });
      const { key } = await till.keys.create({ name: 'script', scopes: ['a'] });
      if (process.env.TILL_TEST_EARLY === '1') await client.quit();
      const { code } = await till.verify(key);
      if (process.env.TILL_TEST_EARLY !== '1') await client.quit();
      await till.close();
      console.log(code);
    `;
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    for (const [early, code] of [
      ['0', 'VALID'],
      ['1', 'STORE_UNAVAILABLE'],
    ]) {
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        cwd: root,
        timeout: 15_000,
        env: { ...process.env, TILL_TEST_URL: redisUrl(), TILL_TEST_NS: namespace, TILL_TEST_EARLY: early },
      });
      expect(stdout.trim()).toBe(code);
    }
  }, 40_000);
});
