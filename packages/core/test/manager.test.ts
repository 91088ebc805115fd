import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/store/memory.js';
import { createTill } from '../src/till.js';
import { KeyManager } from '../src/manage/manager.js';
import { TillError } from '../src/errors.js';

describe('KeyManager (minimal lifecycle)', () => {
  const now = 1_700_000_000_000;
  const make = () => createTill({ clock: () => now, prefix: 'sk_test' });

  it('creates a key shown once, storing only its hash', async () => {
    const till = make();
    const created = await till.keys.create({
      name: 'billing',
      scopes: ['b', 'a', 'a'],
      ownerId: 'team-1',
      metadata: { tier: 2 },
      expiresAt: new Date(now + 86_400_000),
    });
    expect(created.key).toMatch(/^sk_test_[0-9A-Za-z]{44}$/);
    expect(created.record).toMatchObject({
      name: 'billing',
      scopes: ['a', 'b'],
      ownerId: 'team-1',
      metadata: { tier: 2 },
      expiresAt: now + 86_400_000,
      version: 1,
      createdAt: now,
    });
    expect(created.record).not.toHaveProperty('hash');
    const stored = (await till.store.get(created.record.id))!;
    expect(JSON.stringify(stored)).not.toContain(created.key);
    expect(JSON.stringify(stored)).not.toContain(created.key.slice(24, 46));
    expect(await till.keys.get(created.record.id)).toEqual(created.record);
  });

  it('refuses bad input with a clear error and stores nothing', async () => {
    const till = make();
    const bad: unknown[] = [
      undefined,
      { scopes: ['a'] },
      { name: '', scopes: ['a'] },
      { name: 'x'.repeat(201), scopes: ['a'] },
      { name: 'a\nb', scopes: ['a'] },
      { name: 'n', scopes: 'a' },
      { name: 'n', scopes: ['bad scope'] },
      { name: 'n', scopes: ['a'], metadata: [] },
      { name: 'n', scopes: ['a'], metadata: { big: 'x'.repeat(5000) } },
      { name: 'n', scopes: ['a'], expiresAt: now - 1 },
      { name: 'n', scopes: ['a'], expiresAt: new Date('nope') },
      { name: 'n', scopes: ['a'], expiresAt: now + 10, notBefore: now + 20 },
      { name: 'n', scopes: ['a'], prefix: 'Bad' },
      { name: 'n', scopes: ['a'], ownerId: 42 },
    ];
    for (const input of bad) {
      const err = await till.keys.create(input as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(input)?.slice(0, 80)).toBeInstanceOf(TillError);
      expect((err as TillError).message).toMatch(/^\[till\] \[(keys|generateKey)\]/);
    }
    expect((await till.keys.list()).keys).toEqual([]);
  });

  it('revokes once, keeping the first time and reason, and reports unknown ids', async () => {
    let t = now;
    const till = createTill({ clock: () => t });
    const { record } = await till.keys.create({ name: 'k', scopes: ['a'] });
    const revoked = await till.keys.revoke(record.id, { reason: 'leaked' });
    expect(revoked).toMatchObject({ revokedAt: now, revokedReason: 'leaked', version: 2 });
    t += 1000;
    expect(await till.keys.revoke(record.id, { reason: 'again' })).toMatchObject({ revokedAt: now, revokedReason: 'leaked', version: 2 });
    await expect(till.keys.revoke('0000000000000000')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(till.keys.revoke('bad id')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.get('bad id')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('says what scopes are for when a key is created without them', async () => {
    const till = createTill();
    const missing = till.keys.create({ name: 'k' } as unknown as Parameters<typeof till.keys.create>[0]);
    await expect(missing).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(missing).rejects.toThrow(/create needs scopes: the narrowest list of what this key may do.*"\*".*roles or identity/);
    expect((await till.keys.list()).keys).toEqual([]);
  });

  it('loses no revocation when many run at once', async () => {
    const store = new MemoryStore();
    const managers = [new KeyManager({ store }), new KeyManager({ store })];
    const { record } = await managers[0]!.create({ name: 'k', scopes: ['a'] });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => managers[i % 2]!.revoke(record.id, { reason: `r${i}` })));
    const final = (await store.get(record.id))!;
    expect(final.version).toBe(2);
    expect(results.every((r) => r.revokedReason === final.revokedReason)).toBe(true);
  });
});
