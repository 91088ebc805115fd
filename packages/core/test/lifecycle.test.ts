// The key lifecycle through the manager, on the memory store and on real Redis alike.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../src/util/duration.js';
import { TillError } from '../src/errors.js';
import { RedisStore } from '../src/redis/index.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill, type Till } from '../src/till.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { freePort } from '@till/testkit/redis-server';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  it('reads units and sums parts', () => {
    expect(parseDuration('30d')).toBe(30 * DAY);
    expect(parseDuration('1h30m')).toBe(90 * 60_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2w')).toBe(14 * DAY);
    expect(parseDuration(0)).toBe(0);
  });
  it('refuses anything else with a clear message', () => {
    for (const bad of ['', 'd', '1x', '1 d', '-1d', '1.5h', '30days', 'h1', 1.5, -1, Number.NaN, '999999999999w', null]) {
      expect(() => parseDuration(bad as never), String(bad)).toThrow(/like 30d, 24h, 1h30m/);
    }
    // Milliseconds are offered only where a number was given; text is never read as a bare number.
    expect(() => parseDuration(-1, 'grace')).toThrow(/, or a whole number of milliseconds, up to 100 years/);
    expect(() => parseDuration('1x', 'grace')).not.toThrow(/milliseconds/);
  });
  it('tells text of digits alone that it has no unit', () => {
    expect(() => parseDuration('5000', 'grace')).toThrow(/^\[till\] \[keys\] grace "5000": a bare number has no unit: write 5000ms or 5s$/);
    expect(() => parseDuration('1500', 'expiresIn')).toThrow(/^\[till\] \[keys\] expiresIn "1500": a bare number has no unit: write 1500ms$/);
    expect(() => parseDuration('0', 'grace')).toThrow(/a bare number has no unit: write 0ms$/);
  });
});

const redisClients: Redis[] = [];
const namespaces: string[] = [];
afterAll(async () => {
  for (const ns of namespaces) await deleteNamespace(redisClients[0]!, ns);
  for (const c of redisClients) c.disconnect();
});

function redisStore(): KeyStore {
  const client = newClient();
  redisClients.push(client);
  const namespace = uniqueNamespace();
  namespaces.push(namespace);
  return new RedisStore({ client, namespace });
}

describe.each([
  ['memory', () => new MemoryStore() as KeyStore],
  ['redis', redisStore],
])('key lifecycle on the %s store', (_name, makeStore) => {
  const T0 = 1_800_000_000_000;
  function setup() {
    let now = T0;
    const store = makeStore();
    const till = createTill({ store, clock: () => now, logger: { warn() {}, error() {} } });
    return { till, store, advance: (ms: number) => (now += ms), now: () => now };
  }
  const make = (till: Till, extra: Record<string, unknown> = {}) =>
    till.keys.create({ name: 'svc', scopes: ['a:read'], ownerId: 'team-1', metadata: { env: 'prod' }, expiresIn: '30d', ...extra });

  it('creates with a duration, gets and lists by owner with a cursor', async () => {
    const { till } = setup();
    const created = await make(till);
    expect(created.record.expiresAt).toBe(T0 + 30 * DAY);
    expect(await till.keys.get(created.record.id)).toEqual(created.record);
    for (let i = 0; i < 4; i++) await make(till, { ownerId: 'team-2', name: `k${i}` });
    const first = await till.keys.list({ ownerId: 'team-2', limit: 3 });
    expect(first.keys).toHaveLength(3);
    const second = await till.keys.list({ ownerId: 'team-2', limit: 3, cursor: first.cursor! });
    expect([...first.keys, ...second.keys].map((k) => k.name).sort()).toEqual(['k0', 'k1', 'k2', 'k3']);
    expect(second.cursor).toBeUndefined();
    expect(await till.keys.get('0000000000000000')).toBeNull();
  });

  it('updates fields, bumps the version, and the verifier sees it', async () => {
    const { till } = setup();
    const { key, record } = await make(till);
    expect(await till.verify(key, { scopes: ['a:write'] })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
    const updated = await till.keys.update(record.id, { name: 'renamed', scopes: ['a:*'], metadata: { env: 'staging' }, expiresAt: null });
    expect(updated).toMatchObject({ name: 'renamed', scopes: ['a:*'], metadata: { env: 'staging' }, expiresAt: null, version: 2, ownerId: 'team-1' });
    expect(await till.verify(key, { scopes: ['a:write'] })).toMatchObject({ code: 'VALID' });
    expect((await till.keys.update(record.id, { expiresIn: '1h' })).expiresAt).toBe(T0 + HOUR);
  });

  it('refuses bad updates and changes nothing', async () => {
    const { till } = setup();
    const { record } = await make(till);
    const bad: unknown[] = [
      {},
      { hash: 'x' },
      { name: '' },
      { scopes: ['no spaces'] },
      { expiresAt: T0 - 1 },
      { expiresIn: 'soon' },
      { expiresAt: T0 + DAY, expiresIn: '1d' },
      { disabled: 'yes' },
      { notBefore: T0 + 40 * DAY },
      null,
    ];
    for (const patch of bad) {
      await expect(till.keys.update(record.id, patch as never), JSON.stringify(patch)).rejects.toBeInstanceOf(TillError);
    }
    await expect(till.keys.update('not-an-id', { name: 'x' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.update('0000000000000000', { name: 'x' })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(await till.keys.get(record.id)).toEqual(record);
  });

  it('disables and enables; a revoked key can no longer change', async () => {
    const { till } = setup();
    const { key, record } = await make(till);
    expect(await till.keys.disable(record.id)).toMatchObject({ disabled: true, version: 2 });
    expect(await till.verify(key)).toMatchObject({ code: 'DISABLED' });
    expect((await till.keys.disable(record.id)).version).toBe(2); // nothing to change
    expect(await till.keys.enable(record.id)).toMatchObject({ disabled: false, version: 3 });
    expect(await till.verify(key)).toMatchObject({ code: 'VALID' });
    await till.keys.revoke(record.id, { reason: 'done' });
    for (const op of [() => till.keys.enable(record.id), () => till.keys.disable(record.id), () => till.keys.update(record.id, { name: 'x' })]) {
      await expect(op()).rejects.toMatchObject({ code: 'KEY_REVOKED' });
    }
    expect(await till.verify(key)).toMatchObject({ code: 'REVOKED' });
  });

  it('loses no update when many run at once on one key', async () => {
    const { till, store } = setup();
    const { record } = await make(till);
    // Two managers as two processes would have them, each changing a different field.
    const other = createTill({ store, clock: () => T0 });
    await Promise.all([
      ...Array.from({ length: 8 }, (_, i) => till.keys.update(record.id, { metadata: { n: i } })),
      other.keys.update(record.id, { name: 'concurrent' }),
      other.keys.update(record.id, { scopes: ['b:read'] }),
    ]);
    const final = (await till.keys.get(record.id))!;
    expect(final.version).toBe(1 + 10);
    expect(final.name).toBe('concurrent');
    expect(final.scopes).toEqual(['b:read']);
  });

  it('merges metadata inside the compare-and-set: concurrent merges all land', async () => {
    const { till, store } = setup();
    const { record } = await make(till);
    const other = createTill({ store, clock: () => T0 });
    await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => till.keys.update(record.id, { setMetadata: { [`k${i}`]: i } })),
      other.keys.update(record.id, { unsetMetadata: ['env'] }),
    ]);
    expect((await till.keys.get(record.id))!.metadata).toEqual({ k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5 });
    await expect(till.keys.update(record.id, { metadata: {}, setMetadata: { a: 1 } })).rejects.toThrow(/not both/);
    await expect(till.keys.update(record.id, { setMetadata: { big: 'x'.repeat(5000) } })).rejects.toThrow(/4096 bytes/);
  });

  it('rotates: same settings, linked, old key valid through the grace period only', async () => {
    const { till, advance } = setup();
    const old = await make(till, { expiresIn: '10d' });
    advance(DAY);
    const rotated = await till.keys.rotate(old.record.id, { grace: '1h' });
    expect(rotated.key).not.toBe(old.key);
    expect(rotated.record).toMatchObject({
      name: 'svc',
      scopes: ['a:read'],
      ownerId: 'team-1',
      metadata: { env: 'prod' },
      rotatedFrom: old.record.id,
      expiresAt: T0 + DAY + 10 * DAY,
    });
    expect(rotated.previous).toMatchObject({ id: old.record.id, rotatedTo: rotated.record.id, expiresAt: T0 + DAY + HOUR });
    expect(await till.verify(old.key)).toMatchObject({ code: 'VALID' });
    expect(await till.verify(rotated.key)).toMatchObject({ code: 'VALID' });
    advance(HOUR);
    expect(await till.verify(old.key)).toMatchObject({ code: 'EXPIRED' });
    expect(await till.verify(rotated.key)).toMatchObject({ code: 'VALID' });
  });

  it('never extends the old key: a grace longer than its remaining life keeps its expiry', async () => {
    const { till } = setup();
    const old = await make(till, { expiresIn: '2h' });
    const rotated = await till.keys.rotate(old.record.id, { grace: '7d' });
    expect(rotated.previous.expiresAt).toBe(T0 + 2 * HOUR);
    const forever = await make(till, { expiresIn: undefined });
    const r2 = await till.keys.rotate(forever.record.id);
    expect(r2.previous.expiresAt).toBe(T0 + 24 * HOUR); // default grace
    expect(r2.record.expiresAt).toBeNull();
  });

  it('refuses to rotate a revoked, disabled or already rotated key, and leaves no new key behind', async () => {
    const { till } = setup();
    const revoked = await make(till, { name: 'revoked' });
    await till.keys.revoke(revoked.record.id);
    await expect(till.keys.rotate(revoked.record.id, { grace: '1h' })).rejects.toMatchObject({ code: 'KEY_REVOKED' });
    const disabled = await make(till, { name: 'disabled' });
    await till.keys.disable(disabled.record.id);
    await expect(till.keys.rotate(disabled.record.id, { grace: '1h' })).rejects.toThrow(/enable it/);
    const once = await make(till, { name: 'once' });
    const first = await till.keys.rotate(once.record.id, { grace: '1h' });
    await expect(till.keys.rotate(once.record.id, { grace: '1h' })).rejects.toMatchObject({ code: 'KEY_ROTATED' });
    // Rotating the new key is how a key is rotated again.
    const second = await till.keys.rotate(first.record.id, { grace: '1h' });
    expect(second.record.rotatedFrom).toBe(first.record.id);
    await expect(till.keys.rotate(once.record.id, { grace: 'soon' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const names = (await till.keys.list({ ownerId: 'team-1' })).keys.map((k) => k.name).sort();
    expect(names).toEqual(['disabled', 'once', 'once', 'once', 'revoked']);
  });

  it('abandons a rotation when the key changed meanwhile, so the new key never carries stale settings', async () => {
    const { till, store } = setup();
    const old = await make(till, { scopes: ['admin:*', 'users:read'] });
    // The narrowing lands between the rotation's read and its write (inside the new key's insert).
    const insert = store.insert.bind(store);
    store.insert = async (record) => {
      await till.keys.update(old.record.id, { scopes: ['users:read'] });
      return insert(record);
    };
    await expect(till.keys.rotate(old.record.id, { grace: '1h' })).rejects.toMatchObject({ code: 'CONFLICT' });
    const all = (await till.keys.list({ ownerId: 'team-1' })).keys;
    const made = all.find((k) => k.rotatedFrom === old.record.id)!;
    expect(made.revokedReason).toBe('rotation aborted');
    expect((await till.keys.get(old.record.id))!).toMatchObject({ rotatedTo: null, scopes: ['users:read'] });
  });

  it("lets exactly one of two concurrent rotations of one key win, and revokes the loser's new key", async () => {
    const { till, store } = setup();
    const other = createTill({ store, clock: () => T0 });
    const old = await make(till);
    const results = await Promise.allSettled([till.keys.rotate(old.record.id, { grace: '1h' }), other.keys.rotate(old.record.id, { grace: '1h' })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: 'KEY_ROTATED' });
    const all = (await till.keys.list({ ownerId: 'team-1' })).keys;
    const winner = (won[0] as PromiseFulfilledResult<{ record: { id: string } }>).value.record.id;
    expect((await till.keys.get(old.record.id))!.rotatedTo).toBe(winner);
    const orphans = all.filter((k) => k.rotatedFrom === old.record.id && k.id !== winner);
    expect(orphans.every((k) => k.revokedReason === 'rotation aborted')).toBe(true);
  });
});

describe('key lifecycle when Redis is unreachable', () => {
  it('fails with STORE_UNAVAILABLE and a clear message', async () => {
    const port = await freePort();
    const client = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, enableOfflineQueue: false });
    client.on('error', () => {});
    const till = createTill({ store: new RedisStore({ client, commandTimeout: 300 }) });
    const err = await till.keys.create({ name: 'x', scopes: ['a'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TillError);
    expect((err as TillError).code).toBe('STORE_UNAVAILABLE');
    expect((err as TillError).message).toMatch(/^\[till\] \[redis\] store unavailable/);
    await expect(till.keys.revoke('0000000000000000')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    client.disconnect();
  });
});
