// Brute-force protection: clients are IPv4 addresses and IPv6 prefixes, blocked in the process the
// moment they reach the threshold (before any further lookup), shared across processes through Redis,
// with memory bounded however many addresses fail.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, generateKey, MemoryStore, type KeyRecord, type Till } from '@till/core';
import { TillEvents } from '../packages/core/src/audit/events.js';
import { BruteForceGuard } from '../packages/core/src/limits/brute-force.js';
import { Limiter } from '../packages/core/src/limits/limiter.js';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth, rateLimit } from '@till/express';
import { clientKey } from '../packages/core/src/limits/client-ip.js';
import { middlewareCaller } from '@till/testkit/call-middleware';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

const quiet = { warn() {}, error() {} };

describe('clientKey', () => {
  it('keeps IPv4, groups IPv6 by its prefix, maps IPv4-mapped IPv6 to IPv4, and hashes anything else', () => {
    expect(clientKey('203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('2001:db8:1:2::1')).toBe('2001:db8:1::/56');
    expect(clientKey('2001:0DB8:0001:00ff:ffff:ffff:ffff:ffff')).toBe('2001:db8:1::/56');
    expect(clientKey('2001:db8:1:100::1')).toBe('2001:db8:1:100::/56');
    expect(clientKey('2001:db8:1:2::1', 64)).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2::1', 128)).toBe('2001:db8:1:2::1');
    expect(clientKey('fe80::1%eth0', 64)).toBe('fe80::/64');
    expect(clientKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(clientKey('::1')).toBe('::/56');
    expect(clientKey('64:ff9b::192.0.2.33', 128)).toBe('64:ff9b::c000:221');
    expect(clientKey(undefined)).toBe('unknown');
    for (const odd of ['{evil}', 'not an address', 'x'.repeat(8192), '1.2.3.4.5', '2001:db8::1::2', '::ffff:999.1.1.1']) {
      const key = clientKey(odd);
      expect(key).toMatch(/^h:[A-Za-z0-9_-]{22}$/);
      expect(clientKey(odd)).toBe(key);
    }
  });
});

describe('brute-force blocking', () => {
  async function setup(options: { threshold?: number; ipv6Subnet?: number } = {}) {
    let gets = 0;
    class CountingStore extends MemoryStore {
      override get(id: string): Promise<KeyRecord | null> {
        gets++;
        return super.get(id);
      }
    }
    const till = createTill({ store: new CountingStore(), logger: quiet, auditEvents: false, usage: false });
    const call = middlewareCaller(
      apiKeyAuth({
        till,
        bruteForce: {
          threshold: options.threshold ?? 5,
          window: '1m',
          block: '10m',
          ...(options.ipv6Subnet !== undefined && { ipv6Subnet: options.ipv6Subnet }),
        },
      }),
    );
    const madeUp = () => ({ authorization: `Bearer ${generateKey('till').key}` });
    return { till, call, madeUp, gets: () => gets };
  }

  it('blocks at the threshold before any further lookup: exactly threshold lookups, then 429 from memory', async () => {
    const { call, madeUp, gets } = await setup({ threshold: 30 });
    for (let i = 0; i < 30; i++) expect(await call('192.0.2.10', madeUp())).toBe(401);
    expect(gets()).toBe(30);
    for (let i = 0; i < 100; i++) expect(await call('192.0.2.10', madeUp())).toBe(429);
    expect(gets()).toBe(30);
    // Another client is not touched.
    expect(await call('192.0.2.11', madeUp())).toBe(401);
  });

  it('counts an IPv6 client by its /56: rotating addresses within it is blocked, another /56 is not', async () => {
    const { call, madeUp } = await setup({ threshold: 5 });
    for (let i = 1; i <= 5; i++) expect(await call(`2001:db8:7:${i.toString(16)}::${i}`, madeUp())).toBe(401);
    expect(await call('2001:db8:7:ff:1234::9', madeUp())).toBe(429);
    expect(await call('2001:db8:7:100::1', madeUp())).toBe(401);
    // With a /64 grouping the same rotation spreads over five clients.
    const narrow = await setup({ threshold: 5, ipv6Subnet: 64 });
    for (let i = 1; i <= 6; i++) expect(await narrow.call(`2001:db8:7:${i.toString(16)}::${i}`, narrow.madeUp())).toBe(401);
  });

  it('keeps its per-client state bounded: 200,000 failing addresses leave at most maxTracked counted', () => {
    const store = new MemoryStore();
    const events = new TillEvents();
    const guard = new BruteForceGuard({ threshold: 30, maxTracked: 50_000 }, new Limiter(store, Date.now, events), Date.now, events, 'test', false);
    for (let i = 0; i < 200_000; i++) guard.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(guard.tracked).toBe(50_000);
    // IPv6 addresses of one /56 are one client however many there are.
    for (let i = 0; i < 30; i++) guard.failed(`2001:db8:9:${i.toString(16)}::${i}`);
    expect(guard.blockedFor('2001:db8:9:ab::1')).toBeGreaterThan(0);
  });
});

describe("rateLimit({ by: 'ip' })", () => {
  it('counts an IPv6 client by its /56 (ipv6Subnet to change it), and an odd address by its hash', async () => {
    const till = createTill({ logger: quiet, auditEvents: false, usage: false });
    const call = middlewareCaller(rateLimit({ till, name: 'per-client', by: 'ip', limit: 2, window: '1h' }));
    expect(await call('2001:db8:5:1::1', {})).toBe(200);
    expect(await call('2001:db8:5:2::2', {})).toBe(200);
    expect(await call('2001:db8:5:3::3', {})).toBe(429);
    const narrow = middlewareCaller(rateLimit({ till, name: 'per-host', by: 'ip', limit: 2, window: '1h', ipv6Subnet: 128 }));
    for (let i = 1; i <= 3; i++) expect(await narrow(`2001:db8:5:${i}::${i}`, {})).toBe(200);
    await till.close();
  });
});

describe('brute-force blocking across processes, on real Redis', () => {
  const namespace = uniqueNamespace();
  let client: Redis;
  const tills: Till[] = [];

  beforeAll(() => {
    client = newClient();
  });

  afterAll(async () => {
    for (const till of tills) await till.close();
    await deleteNamespace(client, namespace);
    client.disconnect();
  });

  it('a client spreading its failures over two processes is blocked by both once their shared count is full', async () => {
    const calls = [0, 1].map(() => {
      const till = createTill({
        store: new RedisStore({ client: newClient(), namespace, closeClient: true }),
        closeStore: true,
        logger: quiet,
        auditEvents: false,
        usage: false,
      });
      tills.push(till);
      return middlewareCaller(apiKeyAuth({ till, bruteForce: { threshold: 10, window: '1m', block: '10m' } }));
    });
    const madeUp = () => ({ authorization: `Bearer ${generateKey('till').key}` });
    // 4 failures in each process: below the threshold in each, 8 shared.
    for (let i = 0; i < 4; i++) for (const call of calls) expect(await call('198.51.100.77', madeUp())).toBe(401);
    // Shared in batches: wait until the store holds the count of both.
    const bucket = `${namespace}{ip:198.51.100.77}:rl:auth-failures`;
    expect(
      await waitFor(async () => {
        const state = await client.get(bucket);
        if (state === null) return false;
        // GCRA debt, in 1/limit ms: 8 failures of a 10-per-minute limit owe at least 7 windows' worth.
        const [, debt] = state.split(':').map(Number);
        return debt! >= 7 * 60_000;
      }, 5000),
    ).toBe(true);
    // Three more in the first process: its own count (7) is still below 10, but the shared one is full.
    for (let i = 0; i < 3; i++) await calls[0]!('198.51.100.77', madeUp());
    expect(await waitFor(async () => (await calls[0]!('198.51.100.77', madeUp())) === 429, 5000, 50)).toBe(true);
    // The second process learns of it from its next failures' shared count.
    expect(await waitFor(async () => (await calls[1]!('198.51.100.77', madeUp())) === 429, 5000, 50)).toBe(true);
  });
});
