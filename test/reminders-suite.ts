// Expiry reminders end to end, for any pair of stores sharing data (two processes' views): the
// `key-expiring` alert rule, `till.keys.expiring()` and the audit's `expiring` finding. Run on memory,
// Redis (expiry-reminders.test.ts) and the Redis Cluster (cluster.test.ts).
import { expect, it } from 'vitest';
import { createAlerts, createTill, silentLogger, type Alert, type KeyStore, type Till } from '@till/core';

const DAY = 86_400_000;

export interface RemindersHarness {
  /** Two stores on the same data, as two processes have them; a third for "after a restart" (null: the store cannot outlive its process). */
  stores(): Promise<{ a: KeyStore; b: KeyStore; restarted: (() => KeyStore) | null }>;
}

export function remindersSuite(harness: RemindersHarness): void {
  it('key-expiring reminds of each key once, across processes, again for a new expiry, never for revoked or far-off keys', async () => {
    const { a, b, restarted } = await harness.stores();
    const tills: Till[] = [];
    const till = (store: KeyStore) => {
      const t = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
      tills.push(t);
      return t;
    };
    const admin = till(a);
    const owner = `owner-${Math.random().toString(36).slice(2)}`;
    const soon = await admin.keys.create({ name: 'soon', scopes: [], ownerId: owner, expiresIn: '3d' });
    const later = await admin.keys.create({ name: 'later', scopes: [], ownerId: owner, expiresIn: '30d' });
    const revoked = await admin.keys.create({ name: 'revoked', scopes: [], ownerId: owner, expiresIn: '2d' });
    await admin.keys.revoke(revoked.record.id);
    await admin.keys.create({ name: 'forever', scopes: [], ownerId: owner });
    const mine = new Set([soon.record.id, later.record.id, revoked.record.id]);

    const got: Alert[] = [];
    const sink = (alert: Alert) => {
      if (alert.keyId !== undefined && mine.has(alert.keyId)) got.push(alert);
    };
    // Two processes run the rule; every check of both at once.
    const alerts = [till(a), till(b)].map((t) => createAlerts(t, { rules: [{ type: 'key-expiring', days: 7, every: '1h' }], sinks: [sink] }));
    try {
      const checkAll = async () => {
        await Promise.all(alerts.map((al) => al.checkExpiring()));
        await Promise.all(alerts.map((al) => al.idle()));
      };
      await checkAll();
      await checkAll();
      expect(got.map((g) => g.keyId)).toEqual([soon.record.id]);
      expect(got[0]).toMatchObject({ rule: 'key-expiring', subject: soon.record.id, expiresAt: soon.record.expiresAt, count: 1 });
      expect(got[0]!.message).toContain(new Date(soon.record.expiresAt!).toISOString());

      // A new expiry is a new reminder; a change that keeps the expiry is not.
      await admin.keys.update(soon.record.id, { name: 'soon, renamed' });
      await checkAll();
      expect(got).toHaveLength(1);
      const moved = await admin.keys.update(soon.record.id, { expiresIn: '5d' });
      await checkAll();
      expect(got.map((g) => g.expiresAt)).toEqual([soon.record.expiresAt, moved.expiresAt]);

      // After a restart, the store still knows what was reminded of.
      if (restarted !== null) {
        const fresh = createAlerts(till(restarted()), { rules: [{ type: 'key-expiring', days: 7 }], sinks: [sink] });
        expect(await fresh.checkExpiring()).toBe(0);
        fresh.stop();
      }
      expect(got).toHaveLength(2);

      // The finding and the listing read the same index.
      const listed = await admin.keys.expiring({ within: 7 * DAY, ownerId: owner });
      expect(listed.keys.map((k) => k.id)).toEqual([soon.record.id]);
      expect(listed.complete).toBe(true);
      const wide = await admin.keys.expiring({ within: '60d', ownerId: owner, limit: 1 });
      expect(wide.keys.map((k) => k.id)).toEqual([soon.record.id]);
      const rest = await admin.keys.expiring({ within: '60d', ownerId: owner, limit: 1, cursor: wide.cursor! });
      expect(rest.keys.map((k) => k.id)).toEqual([later.record.id]);
      const report = await admin.keys.report({ expiringWithin: '7d', ownerId: owner });
      const expiring = report.findings.filter((f) => f.kind === 'expiring');
      expect(expiring.map((f) => f.keyId)).toEqual([soon.record.id]);
      expect(expiring[0]!.why).toMatch(/^expires in 4 days \(/);
      expect(report.expiryIndexComplete).toBe(true);
    } finally {
      for (const al of alerts) al.stop();
      await Promise.all(tills.map((t) => t.close()));
    }
  });
}
