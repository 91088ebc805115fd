// Rotation chains: credits shared by the chain, changes that reach the whole chain, revocation of the
// chain, and rotate() raced against changes by independent managers. Memory store and real Redis.
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/redis/index.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill, type Till } from '../src/till.js';
import type { KeyInfo } from '../src/store/record.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

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

  it("draws every key of a chain in its first key's Cluster slot, so one script charges the shared balance", async () => {
    const { till } = setup();
    const first = await till.keys.create({ name: 'slot', scopes: ['a'], credits: { remaining: 5 } });
    let id = first.record.id;
    for (let i = 0; i < 3; i++) {
      const rotated = await till.keys.rotate(id, { grace: '1h' });
      expect(slotOf(rotated.record.id)).toBe(slotOf(first.record.id));
      id = rotated.record.id;
    }
  });

  it('sets credits anew on the newest key for the whole chain, and deleting an old key gives no credits back', async () => {
    const { till } = setup();
    const first = await till.keys.create({ name: 'reset', scopes: ['a'], credits: { remaining: 4 } });
    const second = await till.keys.rotate(first.record.id, { grace: '1h' });
    await till.keys.update(second.record.id, { credits: { remaining: 3 } });
    let admitted = 0;
    for (let i = 0; i < 4; i++) for (const key of [first.key, second.key]) if ((await till.verify(key)).valid) admitted++;
    expect(admitted).toBe(3);
    await till.keys.delete(first.record.id);
    expect((await till.verify(second.key)).code).toBe('USAGE_EXCEEDED');
  });

  it('refuses changes to a superseded key, naming its successor; revoke and delete still work', async () => {
    const { till } = setup();
    const old = await till.keys.create({ name: 'old', scopes: ['admin', 'read'], expiresIn: '30d' });
    const next = await till.keys.rotate(old.record.id, { grace: '1h' });
    for (const change of [
      () => till.keys.update(old.record.id, { expiresAt: null }),
      () => till.keys.update(old.record.id, { scopes: ['read'] }),
      () => till.keys.disable(old.record.id),
      () => till.keys.enable(old.record.id),
    ]) {
      await expect(change()).rejects.toMatchObject({ code: 'KEY_ROTATED', message: expect.stringContaining(next.record.id) });
    }
    expect((await till.keys.get(old.record.id))!.expiresAt).toBe(next.previous.expiresAt);
  });

  it('applies a change of the newest key to the keys still in their grace (their expiry aside)', async () => {
    const { till } = setup();
    const old = await till.keys.create({ name: 'old', scopes: ['admin', 'read'], expiresIn: '30d' });
    const next = await till.keys.rotate(old.record.id, { grace: '1h' });
    await till.keys.update(next.record.id, { scopes: ['read'], expiresIn: '60d', name: 'narrowed' });
    expect(await till.keys.get(old.record.id)).toMatchObject({ scopes: ['read'], name: 'narrowed', expiresAt: next.previous.expiresAt });
    expect(await till.verify(old.key, { scopes: ['admin'] })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
    await till.keys.disable(next.record.id);
    expect(await till.verify(old.key)).toMatchObject({ code: 'DISABLED' });
    await till.keys.enable(next.record.id);
    expect(await till.verify(old.key)).toMatchObject({ code: 'VALID' });
  });

  it('revokes the whole chain by default (a leak of either secret), or one key with chain: false', async () => {
    const { till } = setup();
    const a = await till.keys.create({ name: 'leaky', scopes: ['read'] });
    const b = await till.keys.rotate(a.record.id, { grace: '1h' });
    const c = await till.keys.rotate(b.record.id, { grace: '1h' });
    // The old secret leaked: whoever holds it may hold the new ones too.
    await till.keys.revoke(a.record.id, { reason: 'leaked' });
    for (const key of [a.key, b.key, c.key]) expect(await till.verify(key)).toMatchObject({ code: 'REVOKED' });
    expect((await till.keys.get(c.record.id))!.revokedReason).toBe('leaked');

    const d = await till.keys.create({ name: 'ending grace', scopes: ['read'] });
    const e = await till.keys.rotate(d.record.id, { grace: '1h' });
    // Ending a grace early is revoking the old key alone.
    await till.keys.revoke(d.record.id, { chain: false });
    expect(await till.verify(d.key)).toMatchObject({ code: 'REVOKED' });
    expect(await till.verify(e.key)).toMatchObject({ code: 'VALID' });
    // Revoking the newest key reaches back to the keys still in their grace.
    const f = await till.keys.rotate(e.record.id, { grace: '1h' });
    const { revoked } = await till.keys.revokeChain(f.record.id);
    expect(revoked.map((k) => k.id).sort()).toEqual([e.record.id, f.record.id].sort());
    expect(await till.verify(e.key)).toMatchObject({ code: 'REVOKED' });
  });

  it('races rotate() against narrowings and revocations from independent managers: 300 rounds, no acknowledged change misses the chain', async () => {
    const { stores } = setup();
    // Four actors, as four processes would be: each its own manager (and, on Redis, its own client).
    const actors: Till[] = Array.from({ length: 4 }, () => createTill({ store: stores(), logger: quiet }));
    const admin = actors[0]!.keys;
    // A start a few event-loop turns or milliseconds late: over the rounds, the change lands before,
    // inside and after each step of the rotation (a rotation takes a few round trips on Redis).
    const jitter = () =>
      new Promise<void>((resolve) => {
        if (Math.random() < 0.5) return void setTimeout(resolve, Math.random() * (kind === 'redis' ? 5 : 1));
        const step = (n: number): void => (n === 0 ? resolve() : void setImmediate(() => step(n - 1)));
        step(Math.floor(Math.random() * 8));
      });
    const started = Date.now();
    const problems: string[] = [];
    const acknowledged = { narrowed: 0, revoked: 0 };
    for (let round = 0; round < 300 && Date.now() - started < 60_000; round++) {
      const key = await admin.create({ name: `race-${round}`, scopes: ['admin', 'read'], ownerId: `race-${kind}` });
      const id = key.record.id;
      const revoking = round % 2 === 1;
      const [rotation, change] = await Promise.allSettled([
        jitter().then(() => actors[1 + (round % 3)]!.keys.rotate(id, { grace: '1h' })),
        jitter().then(() =>
          revoking
            ? actors[1 + ((round + 1) % 3)]!.keys.revoke(id, { reason: 'leaked' })
            : actors[1 + ((round + 1) % 3)]!.keys.update(id, { scopes: ['read'] }),
        ),
      ]);
      if (rotation.status === 'rejected' && !['KEY_REVOKED', 'CONFLICT', 'KEY_ROTATED'].includes((rotation.reason as { code?: string }).code ?? ''))
        throw rotation.reason;
      if (change.status === 'rejected' && (change.reason as { code?: string }).code !== 'KEY_ROTATED') throw change.reason;
      if (change.status !== 'fulfilled') continue;
      // Every key made from this one: the linked successor and any rotation that was abandoned.
      const chain: KeyInfo[] = [(await admin.get(id))!];
      for (let next = chain[0]!.rotatedTo; next !== null; next = chain[chain.length - 1]!.rotatedTo) chain.push((await admin.get(next))!);
      const made = (await admin.list({ ownerId: `race-${kind}`, limit: 1000 })).keys.filter((k) => k.rotatedFrom === id);
      for (const k of new Map([...chain, ...made].map((k) => [k.id, k])).values()) {
        if (k.revokedAt !== null) continue;
        if (revoking) problems.push(`round ${round}: revocation acknowledged, key ${k.id} (${k.rotatedFrom === null ? 'old' : 'new'}) still live`);
        else if (k.scopes.includes('admin'))
          problems.push(`round ${round}: narrowing acknowledged, key ${k.id} (${k.rotatedFrom === null ? 'old' : 'new'}) still has admin`);
      }
      if (revoking) acknowledged.revoked++;
      else acknowledged.narrowed++;
      // Keep the owner's list short.
      for (const k of made) await admin.delete(k.id).catch(() => {});
      await admin.delete(id).catch(() => {});
    }
    expect(problems).toEqual([]);
    // Both kinds of change were acknowledged often enough for the rounds to mean something.
    expect(acknowledged.narrowed).toBeGreaterThan(20);
    expect(acknowledged.revoked).toBeGreaterThan(20);
  }, 120_000);
});
