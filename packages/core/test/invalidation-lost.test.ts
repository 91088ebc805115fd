// The invalidation channel dropped while Redis still answers: changes published meanwhile are missed,
// so the verifier must not trust its cache until the subscription is back.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

describe('when the invalidation subscription is lost', () => {
  const namespace = uniqueNamespace();
  let client: Redis;
  let subscriber: Redis;
  let admin: Redis;
  let till: Till;
  let other: Till;
  let subscriberName: string;

  beforeAll(async () => {
    client = newClient();
    admin = newClient();
    subscriberName = `till-test-sub-${namespace.slice(10, 22)}`;
    // Slow to come back on its own, so the test can act while it is gone.
    subscriber = new Redis(redisUrl(), { connectionName: subscriberName, retryStrategy: () => 1500 });
    subscriber.on('error', () => {});
    const quiet = { warn() {}, error() {} };
    till = createTill({ store: new RedisStore({ client, subscriber, namespace }), cache: { ttl: 60_000 }, logger: quiet });
    // Another process's Till: its changes reach `till` only through the channel.
    other = createTill({ store: new RedisStore({ client: admin, namespace }), logger: quiet });
  });

  afterAll(async () => {
    await till?.close();
    await other?.close();
    subscriber?.disconnect();
    await deleteNamespace(admin, namespace);
    client?.disconnect();
    admin?.disconnect();
  });

  it('reads keys from the store until the channel is back, so a revocation made meanwhile is refused at once', async () => {
    const { key, record } = await other.keys.create({ name: 'held', scopes: ['a'] });
    const store = till.verifier.store as RedisStore;
    // The store calls its listeners with null each time Redis confirms the subscription; the verifier's
    // listener (added by its first verification) drops the cache in that same call.
    let confirmations = 0;
    const off = store.onInvalidate((id) => void (id === null && confirmations++));
    expect((await till.verify(key)).valid).toBe(true);
    // Subscribed and confirmed (the confirmation drops the cache), then cached again.
    expect(await waitFor(() => confirmations === 1, 10_000, 5)).toBe(true);
    expect((await till.verify(key)).valid).toBe(true);
    const hits = till.verifier.stats.hits;
    expect((await till.verify(key)).valid).toBe(true);
    expect(till.verifier.stats.hits).toBe(hits + 1);
    expect(store.invalidationsLost()).toBe(false);

    // Redis drops the subscriber's connection (as a proxy, a failover or client-output-buffer-limit would).
    // Only this test's connection: other suites share this Redis.
    const list = String(await admin.client('LIST'));
    const id = /(?:^|\n)id=(\d+) [^\n]*name=(\S+)/g;
    const ids = [...list.matchAll(id)].filter((m) => m[2] === subscriberName).map((m) => m[1]!);
    expect(ids).toHaveLength(1);
    expect(await admin.client('KILL', 'ID', ids[0]!)).toBe(1);
    expect(await waitFor(() => store.invalidationsLost(), 1000, 5)).toBe(true);

    // Revoked elsewhere while this process cannot hear it: refused on the next request, not served from the cache.
    await other.keys.revoke(record.id, { reason: 'test' });
    const misses = till.verifier.stats.misses;
    const result = await till.verify(key);
    expect(result.valid).toBe(false);
    expect(result.code).toBe('REVOKED');
    expect(till.verifier.stats.misses).toBe(misses + 1);

    // Back on its own: the subscription is confirmed again and the cache trusted again.
    expect(await waitFor(() => !store.invalidationsLost(), 10_000, 5)).toBe(true);
    expect(confirmations).toBe(2);
    off();
    const { key: second } = await other.keys.create({ name: 'second', scopes: ['a'] });
    expect((await till.verify(second)).valid).toBe(true);
    const before = till.verifier.stats.hits;
    expect((await till.verify(second)).valid).toBe(true);
    expect(till.verifier.stats.hits).toBe(before + 1);
  });

  it('never reports a loss for a store nobody subscribed through', () => {
    expect((other.verifier.store as RedisStore).invalidationsLost()).toBe(false);
  });
});
