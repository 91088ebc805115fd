// The audit report: each kind of finding, on keys made to show it, and nothing on a healthy key.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/store/memory.js';
import { createTill } from '../src/till.js';
import { dayOf } from '../src/audit/usage.js';

const DAY = 86_400_000;

describe('audit report', () => {
  it('lists never-used, unused, no-expiry, rotation-due, wildcard and failing keys, each with why and what to do', async () => {
    let now = Date.UTC(2030, 0, 1);
    const store = new MemoryStore();
    const till = createTill({ store, clock: () => now, logger: { warn() {}, error() {} }, usage: false });
    const healthy = await till.keys.create({ name: 'healthy', scopes: ['a:read'], expiresIn: '365d' });
    const neverUsed = await till.keys.create({ name: 'never used', scopes: ['a:read'], expiresIn: '365d' });
    const stale = await till.keys.create({ name: 'stale', scopes: ['a:read'], expiresIn: '365d' });
    const forever = await till.keys.create({ name: 'forever', scopes: ['a:read'] });
    const wild = await till.keys.create({ name: 'wild', scopes: ['admin:*'], expiresIn: '365d' });
    const attacked = await till.keys.create({ name: 'attacked', scopes: ['a:read'], expiresIn: '365d' });
    const revoked = await till.keys.create({ name: 'revoked', scopes: ['*'] });
    await till.keys.revoke(revoked.record.id);
    now += 30 * DAY;
    const old = await till.keys.create({ name: 'old', scopes: ['a:read'], expiresIn: '365d' });
    now += 100 * DAY;
    // Usage as the verifying processes would have written it.
    const used = (id: string, at: number, counts: Record<string, number> = { VALID: 1 }) =>
      store.recordUsage([{ keyId: id, day: dayOf(at), counts, lastUsedAt: counts.VALID ? at : null }]);
    await used(healthy.record.id, now - DAY);
    await used(stale.record.id, now - 100 * DAY);
    await used(forever.record.id, now - DAY);
    await used(wild.record.id, now - DAY);
    await used(old.record.id, now - DAY);
    await used(attacked.record.id, now - 2 * DAY);
    await used(attacked.record.id, Date.now(), { INSUFFICIENT_SCOPE: 100, DISABLED: 50 });

    // Failure counts are read by UTC day as the store sees today: written for today.
    const report = await till.keys.report({ unusedFor: '90d', rotationAge: '90d', failures: 100 });
    const kinds = (id: string) =>
      report.findings
        .filter((f) => f.keyId === id)
        .map((f) => f.kind)
        .sort();
    expect(report.keysChecked).toBe(7);
    expect(kinds(neverUsed.record.id)).toEqual(['never-used', 'rotation-due']);
    expect(kinds(stale.record.id)).toEqual(['rotation-due', 'unused']);
    expect(kinds(forever.record.id)).toEqual(['no-expiry', 'rotation-due']);
    expect(kinds(wild.record.id)).toEqual(['rotation-due', 'wildcard-scope']);
    expect(kinds(attacked.record.id)).toEqual(['failures', 'rotation-due']);
    expect(kinds(old.record.id)).toEqual(['rotation-due']);
    expect(kinds(revoked.record.id)).toEqual([]);
    const stalest = report.findings.find((f) => f.keyId === stale.record.id && f.kind === 'unused')!;
    expect(stalest.why).toBe('last used 100 days ago');
    expect(stalest.action).toMatch(/revoke/);
    expect(report.findings.find((f) => f.kind === 'failures')!.why).toBe('150 failed requests in the last 7 days');
    expect(report.findings.find((f) => f.kind === 'wildcard-scope')!.why).toBe('holds wildcard scopes: admin:*');

    // A fresh, used, expiring, narrow key has nothing to report.
    const fine = await till.keys.create({ name: 'fine', scopes: ['a:read'], expiresIn: '30d' });
    expect(kinds(healthy.record.id)).toEqual(['rotation-due']);
    await used(fine.record.id, now);
    expect((await till.keys.report()).findings.filter((f) => f.keyId === fine.record.id)).toEqual([]);
    await expect(till.keys.report({ failures: 0 })).rejects.toThrow(/failures/);
    await expect(till.keys.report({ unusedFor: 'soon' })).rejects.toThrow(/unusedFor/);
  });

  it("never lists a key for wrong secrets: NOT_FOUND sent with its public id is anyone's to send", async () => {
    const now = Date.UTC(2030, 0, 1);
    const store = new MemoryStore();
    const till = createTill({ store, clock: () => now, logger: { warn() {}, error() {} }, usage: false });
    const target = await till.keys.create({ name: 'target', scopes: ['a:read'], expiresIn: '365d' });
    const scoped = await till.keys.create({ name: 'scoped', scopes: ['a:read'], expiresIn: '365d' });
    await store.recordUsage([{ keyId: target.record.id, day: dayOf(Date.now()), counts: { VALID: 1, NOT_FOUND: 100_000 }, lastUsedAt: now }]);
    await store.recordUsage([{ keyId: scoped.record.id, day: dayOf(Date.now()), counts: { VALID: 1, NOT_FOUND: 99, INSUFFICIENT_SCOPE: 1 }, lastUsedAt: now }]);
    const report = await till.keys.report({ failures: 100 });
    expect(report.findings.filter((f) => f.kind === 'failures')).toEqual([]);
    expect((await till.keys.report({ failures: 1 })).findings.filter((f) => f.kind === 'failures').map((f) => [f.keyId, f.why])).toEqual([
      [scoped.record.id, '1 failed request in the last 7 days'],
    ]);
  });
});
