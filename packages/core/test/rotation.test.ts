// Rotation chains: credits shared by the chain. Memory store and real Redis.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/redis/index.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill } from '../src/till.js';
import { deleteNamespace, newClient, uniqueNamespace } from '../../../test/helpers/redis.js';

const HOUR = 3_600_000;
const quiet = { warn() {}, error() {} };

const clients: Redis[] = [];
const namespaces: string[] = [];
afterAll(async () => {
  for (const ns of namespaces) await deleteNamespace(clients[0]!, ns);
  for (const c of clients) c.disconnect();
});

/** Stores on one backend as independent processes would have them: each Redis store on its own client. */
function backend(kind: 'memory' | 'redis'): () => KeyStore {
  if (kind === 'memory') {
    const store = new MemoryStore();
    return () => store;
  }
  const namespace = uniqueNamespace();
  namespaces.push(namespace);
  return () => {
    const client = newClient();
    clients.push(client);
    return new RedisStore({ client, namespace });
  };
}

/** Redis Cluster's slot of a key id (CRC16/XMODEM of the hash tag, mod 16384). */
function slotOf(id: string): number {
  let crc = 0;
  for (const byte of Buffer.from(id)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe.each(['memory', 'redis'] as const)('rotation chains on the %s store', (kind) => {
  const setup = () => {
    const stores = backend(kind);
    const till = createTill({ store: stores(), logger: quiet });
    return { till, stores };
  };

  it('keeps one balance for the chain: 100 credits, 5 rotations with a grace, 100 requests admitted in all', async () => {
    const { till } = setup();
    const first = await till.keys.create({ name: 'metered', scopes: ['a:read'], credits: { remaining: 100 } });
    const live = [first.key];
    let id = first.record.id;
    for (let i = 0; i < 5; i++) {
      // Spend a little on the newest key before each rotation, as a customer would.
      for (let j = 0; j < 3; j++) expect(await till.verify(live[live.length - 1]!)).toMatchObject({ code: 'VALID' });
      const rotated = await till.keys.rotate(id, { grace: '24h' });
      live.push(rotated.key);
      id = rotated.record.id;
    }
    let admitted = 15;
    // Every key of the chain is within its grace: requests alternate over all six until all refuse.
    for (let round = 0; round < 200; round++) {
      const results = await Promise.all(live.map((key) => till.verify(key)));
      const ok = results.filter((r) => r.valid).length;
      for (const r of results) if (!r.valid) expect(r.code).toBe('USAGE_EXCEEDED');
      admitted += ok;
      if (ok === 0) break;
    }
    expect(admitted).toBe(100);
    expect(await till.keys.credits(first.record.id)).toBe(0);
    expect(await till.keys.credits(id)).toBe(0);
  });

  it('draws every key of a chain in its first key\'s Cluster slot, so one script charges the shared balance', async () => {
    const { till } = setup();
    const first = await till.keys.create({ name: 'slot', scopes: ['a'], credits: { remaining: 5 } });
    let id = first.record.id;
    for (let i = 0; i < 3; i++) {
      const rotated = await till.keys.rotate(id, { grace: '1h' });
      expect(slotOf(rotated.record.id)).toBe(slotOf(first.record.id));
      id = rotated.record.id;
    }
  });
});
