// The conformance suite every KeyStore runs: the memory store and the Redis store pass the same tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import { generateKey, keySlot } from '../src/key/format.js';
import type { KeyRecord } from '../src/store/record.js';
import fc from 'fast-check';
import { normalizeCredits } from '../src/limits/rules.js';
import { LocalBuckets } from '../src/limits/buckets.js';
import type { ConsumeResult, KeyStore } from '../src/store/types.js';
import { describeExpiryConformance } from './expiry-conformance.js';
import type { IdentityRecord } from '../src/identity/record.js';

export interface StoreHarness {
  /** A store, and a second one on the same data as another process would have it. */
  stores(): Promise<[KeyStore, KeyStore]>;
  cleanup(): Promise<void>;
  /**
   * The store's subscription is confirmed asynchronously, and it calls its listeners with `null` then
   * (Redis). A store without it (memory) is subscribed as soon as onInvalidate() returns.
   */
  confirmsSubscription?: boolean;
}

let seq = 0;
export function sampleRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const { id, prefix } = generateKey('till_test');
  const createdAt = 1_700_000_000_000 + seq++;
  return {
    id,
    prefix,
    hash: Buffer.alloc(32, seq).toString('base64url'),
    hashAlgorithm: 'sha256',
    name: `key ${seq}`,
    ownerId: null,
    scopes: ['users:read'],
    metadata: { plan: 'pro', nested: { n: 1 } },
    createdAt,
    updatedAt: createdAt,
    expiresAt: null,
    notBefore: null,
    revokedAt: null,
    revokedReason: null,
    disabled: false,
    rotatedFrom: null,
    rotatedTo: null,
    limits: [],
    credits: null,
    version: 1,
    allowedIps: [],
    roles: [],
    identityId: null,
    ...overrides,
  };
}

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function listAll(store: KeyStore, query: { ownerId?: string; limit?: number }): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...query, ...(cursor !== undefined && { cursor }) });
    ids.push(...page.keys.map((k) => k.id));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return ids;
}

export function describeStoreConformance(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`KeyStore conformance: ${name}`, () => {
    let harness: StoreHarness;
    let store: KeyStore;
    let other: KeyStore;

    beforeAll(async () => {
      harness = await makeHarness();
      [store, other] = await harness.stores();
    });
    afterAll(async () => {
      await store.close();
      await other.close();
      await harness.cleanup();
    });

    describeExpiryConformance(() => [store, other], sampleRecord);

    it('answers null for an unknown id', async () => {
      expect(await store.get(generateKey('till_test').id)).toBeNull();
    });

    it('returns what was inserted, field for field, to every process', async () => {
      const record = sampleRecord({ ownerId: 'team-a', expiresAt: 1_800_000_000_000, notBefore: 1_700_000_000_000 });
      await store.insert(record);
      expect(await store.get(record.id)).toEqual(record);
      expect(await other.get(record.id)).toEqual(record);
    });

    it('refuses a second insert of the same id and keeps the first', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const err = await store.insert({ ...record, name: 'impostor' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TillError);
      expect((err as TillError).code).toBe('KEY_EXISTS');
      expect((await store.get(record.id))?.name).toBe(record.name);
    });

    it('adds usage counts from every writer, and a batch id at most once', async () => {
      const id = sampleRecord().id;
      const day = new Date().toISOString().slice(0, 10);
      const item = (n: number, lastUsedAt: number | null = null) => ({ keyId: id, day, counts: { VALID: n }, lastUsedAt });
      await store.recordUsage([item(2, 1_000)]);
      await store.recordUsage([item(3)], 'writerA.1');
      await other.recordUsage([item(3)], 'writerA.1'); // the same batch again, through another client: skipped
      await store.recordUsage([item(5, 2_000)], 'writerB.1'); // another writer's first batch
      await store.recordUsage([item(7)], 'writerA.2');
      await store.recordUsage([item(11)], 'writerA.1'); // older than what writerA sent last: skipped
      const usage = await other.readUsage(id, 1);
      expect(usage.days[0]).toEqual({ day, counts: { VALID: 17 }, total: 17 });
      expect(usage.lastUsedAt).toBe(2_000);
      await expect(store.recordUsage([item(1)], 'not an id')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    it('writes a batch of many keys, at most once per batch id', async () => {
      const ids = Array.from({ length: 5 }, () => sampleRecord().id);
      const day = new Date().toISOString().slice(0, 10);
      const items = ids.map((keyId, i) => ({ keyId, day, counts: { VALID: i + 1, NOT_FOUND: 10 * (i + 1) }, lastUsedAt: 1_000 + i }));
      await store.recordUsage(items, 'writerC.1');
      await other.recordUsage(items, 'writerC.1'); // the same batch again: skipped
      await store.recordUsage([items[4]!, { ...items[0]!, counts: { VALID: 100 } }], 'writerC.2');
      const read = await Promise.all(ids.map((id) => other.readUsage(id, 1)));
      expect(read.map((u) => u.days[0]!.counts)).toEqual([
        { VALID: 101, NOT_FOUND: 10 },
        { VALID: 2, NOT_FOUND: 20 },
        { VALID: 3, NOT_FOUND: 30 },
        { VALID: 4, NOT_FOUND: 40 },
        { VALID: 10, NOT_FOUND: 100 },
      ]);
      expect(read.map((u) => u.lastUsedAt)).toEqual(ids.map((_, i) => 1_000 + i));
    });

    it('hands out records whose changes reach nothing stored (their lists frozen or copies)', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const got = (await store.get(record.id)) as unknown as { scopes: string[]; metadata: Record<string, unknown> };
      const attempt = (change: () => unknown) => {
        try {
          change();
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError); // frozen
        }
      };
      attempt(() => got.scopes.push('admin'));
      attempt(() => (got.metadata.plan = 'free'));
      expect(await store.get(record.id)).toEqual(record);
    });

    it('replaces only against the current version', async () => {
      const record = sampleRecord();
      await store.insert(record);
      expect(await store.replace({ ...record, name: 'v2', version: 2 }, 1)).toBe(true);
      expect(await store.replace({ ...record, name: 'stale', version: 2 }, 1)).toBe(false);
      expect(await other.get(record.id)).toMatchObject({ name: 'v2', version: 2 });
      const err = await store.replace(sampleRecord(), 1).catch((e: unknown) => e);
      expect((err as TillError).code).toBe('KEY_NOT_FOUND');
    });

    it('lets exactly one of many concurrent replaces of one version win', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).replace({ ...record, name: `w${i}`, version: 2 }, 1)));
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect((await store.get(record.id))?.name).toBe(`w${winner}`);
    });

    it('tells every process sharing the store about a change, until unsubscribed', async () => {
      const record = sampleRecord();
      await store.insert(record);
      const heard: Array<string | null> = [];
      // A second listener that stays: it shows when a message has been delivered, so the check that
      // the first one no longer hears waits on that delivery instead of on a sleep.
      const marker: Array<string | null> = [];
      const off = other.onInvalidate((id) => heard.push(id));
      const offMarker = other.onInvalidate((id) => marker.push(id));
      // A subscription may take a moment to be in place (Redis SUBSCRIBE is a round trip): a store that
      // confirms it calls its listeners with null then.
      if (harness.confirmsSubscription) await waitFor(() => heard.includes(null), 5000);
      await store.replace({ ...record, version: 2 }, 1);
      await waitFor(() => heard.includes(record.id), 5000);
      off();
      await store.replace({ ...record, version: 3 }, 2);
      // Listeners are called in one go for each message: once the marker has heard the second change,
      // the removed listener would have heard it too.
      await waitFor(() => marker.filter((id) => id === record.id).length === 2, 5000);
      offMarker();
      expect(heard.filter((id) => id === record.id)).toHaveLength(1);
    });

    it('lists in creation order, a page at a time, and by owner', async () => {
      const mine = Array.from({ length: 7 }, (_, i) => sampleRecord({ ownerId: `owner-${name}-list`, createdAt: 1_750_000_000_000 + (i % 3) }));
      for (const r of [...mine].reverse()) await store.insert(r);
      const expected = [...mine].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)).map((r) => r.id);
      expect(await listAll(other, { ownerId: `owner-${name}-list`, limit: 2 })).toEqual(expected);
      expect(await listAll(store, { ownerId: `owner-${name}-list` })).toEqual(expected);
      const all = await listAll(store, { limit: 3 });
      expect(all).toEqual(expect.arrayContaining(expected));
      expect(new Set(all).size).toBe(all.length);
      expect((await store.list({ ownerId: 'nobody' })).keys).toEqual([]);
    });

    it('refuses a bad cursor or page size', async () => {
      await expect(store.list({ cursor: 'not a cursor' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(store.list({ limit: 1.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    });

    describe('limits and credits', () => {
      const T = 1_900_000_000_000;
      const perSecond = { name: 'per-second', limit: 5, window: 1000, cost: 1 };
      const perMinute = { name: 'per-minute', limit: 8, window: 60_000, cost: 1 };
      let subjects = 0;
      const subject = () => `test:${name}:${process.pid}:${subjects++}:${Date.now()}`;

      it('admits a burst of exactly the limit, then one request per emission interval', async () => {
        const s = subject();
        const results: ConsumeResult[] = [];
        for (let i = 0; i < 7; i++) results.push(await (i % 2 ? other : store).consume({ subject: s, limits: [perSecond], now: T }));
        expect(results.map((r) => r.outcome)).toEqual(['OK', 'OK', 'OK', 'OK', 'OK', 'RATE_LIMITED', 'RATE_LIMITED']);
        expect(results[5]).toMatchObject({ retryAfter: 200, credits: null });
        expect(await store.consume({ subject: s, limits: [perSecond], now: T + 199 })).toMatchObject({ outcome: 'RATE_LIMITED', retryAfter: 1 });
        expect(await other.consume({ subject: s, limits: [perSecond], now: T + 200 })).toMatchObject({ outcome: 'OK' });
      });

      it('charges nothing when one limit refuses (all or nothing)', async () => {
        const s = subject();
        const tight = { ...perSecond, name: 'tight', limit: 1 };
        expect((await store.consume({ subject: s, limits: [perMinute, tight], now: T })).outcome).toBe('OK');
        for (let i = 0; i < 5; i++) expect((await store.consume({ subject: s, limits: [perMinute, tight], now: T })).outcome).toBe('RATE_LIMITED');
        const probe = await other.consume({ subject: s, limits: [{ ...perMinute, cost: 0 }], now: T });
        expect(probe).toMatchObject({ outcome: 'OK', limits: [{ name: 'per-minute', remaining: 7 }] });
      });

      it('keeps subjects and buckets apart', async () => {
        const [a, b] = [subject(), subject()];
        const one = { ...perSecond, limit: 1 };
        expect((await store.consume({ subject: a, limits: [one], now: T })).outcome).toBe('OK');
        expect((await store.consume({ subject: b, limits: [one], now: T })).outcome).toBe('OK');
        expect((await store.consume({ subject: a, limits: [{ ...one, bucket: 'other' }], now: T })).outcome).toBe('OK');
        expect((await store.consume({ subject: a, limits: [one], now: T })).outcome).toBe('RATE_LIMITED');
      });

      it('refuses a cost above the limit without a retry time, and charges nothing for it', async () => {
        const s = subject();
        expect(await store.consume({ subject: s, limits: [{ ...perSecond, cost: 6 }], now: T })).toMatchObject({ outcome: 'RATE_LIMITED', retryAfter: null });
        expect(await store.consume({ subject: s, limits: [{ ...perSecond, cost: 5 }], now: T })).toMatchObject({ outcome: 'OK', limits: [{ remaining: 0 }] });
      });

      it('checks the key record in the same step: unknown, changed, current', async () => {
        const record = sampleRecord();
        await store.insert(record);
        expect(await store.consume({ subject: generateKey('till_test').id, keyVersion: 1, limits: [perSecond], now: T })).toEqual({ outcome: 'NOT_FOUND' });
        expect(await other.consume({ subject: record.id, keyVersion: 1, credits: record.credits, limits: [perSecond], now: T })).toMatchObject({
          outcome: 'OK',
          credits: null,
        });
        await store.replace({ ...record, name: 'renamed', version: 2 }, 1);
        const changed = await other.consume({ subject: record.id, keyVersion: 1, credits: record.credits, limits: [perSecond], now: T });
        expect(changed).toEqual({ outcome: 'CHANGED', record: { ...record, name: 'renamed', version: 2 } });
        // The refused charge was not made: 4 left of 5 after the one admitted above.
        expect(await store.consume({ subject: record.id, keyVersion: 2, credits: record.credits, limits: [{ ...perSecond, cost: 0 }], now: T })).toMatchObject({
          limits: [{ remaining: 4 }],
        });
      });

      it('spends credits from every process, never below zero', async () => {
        const credits = normalizeCredits({ remaining: 25 }, 'test', T, 1);
        const record = sampleRecord({ credits });
        await store.insert(record);
        const results = await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            (i % 2 ? store : other).consume({ subject: record.id, keyVersion: 1, credits: record.credits, limits: [], cost: 1, now: T }),
          ),
        );
        expect(results.filter((r) => r.outcome === 'OK')).toHaveLength(25);
        expect(results.filter((r) => r.outcome === 'USAGE_EXCEEDED')).toHaveLength(35);
        for (const r of results) expect('credits' in r && r.credits! >= 0).toBe(true);
        expect(await store.consume({ subject: record.id, keyVersion: 1, credits: record.credits, limits: [], cost: 0, now: T })).toMatchObject({
          outcome: 'OK',
          credits: 0,
        });
      });

      it('refills credits each interval, restarts them when set anew, and charges no limit when they refuse', async () => {
        const credits = normalizeCredits({ remaining: 2, refill: { amount: 3, interval: '1h' } }, 'test', T, 1);
        const record = sampleRecord({ credits });
        await store.insert(record);
        const spend = (now: number, cost = 1, version = 1) =>
          store.consume({ subject: record.id, keyVersion: version, credits: record.credits, limits: [perMinute], cost, now });
        expect(await spend(T, 2)).toMatchObject({ outcome: 'OK', credits: 0 });
        expect(await spend(T + 1000)).toMatchObject({ outcome: 'USAGE_EXCEEDED', credits: 0, retryAfter: 3_600_000 - 1000 });
        // The refused request took nothing from the minute limit: 7 left, as after the first alone.
        expect(
          await store.consume({ subject: record.id, keyVersion: 1, credits: record.credits, limits: [{ ...perMinute, cost: 0 }], now: T + 1000 }),
        ).toMatchObject({ limits: [{ remaining: 7 }] });
        expect(await spend(T + 3_600_000)).toMatchObject({ outcome: 'OK', credits: 2 });
        expect(await spend(T + 3 * 3_600_000 + 5, 3)).toMatchObject({ outcome: 'OK', credits: 0 });
        const reset = normalizeCredits({ remaining: 10 }, 'test', T + 4 * 3_600_000, 2);
        await store.replace({ ...record, credits: reset, version: 2 }, 1);
        expect(await other.consume({ subject: record.id, keyVersion: 2, credits: reset, limits: [], cost: 4, now: T + 4 * 3_600_000 })).toMatchObject({
          outcome: 'OK',
          credits: 6,
        });
      });

      it("charges a rotation chain's one count from each of its keys, refuses an older policy, and keeps the count when the first key goes", async () => {
        // Keys of one chain, drawn in the first one's slot as the key manager draws them (Cluster).
        const first = sampleRecord();
        const { id: secondId } = generateKey('till_test', keySlot(first.id));
        const credits = { ...normalizeCredits({ remaining: 5 }, 'test', T, 1), account: first.id };
        await store.insert({ ...first, credits, rotatedTo: secondId, version: 2 });
        const second = sampleRecord({ id: secondId, credits, rotatedFrom: first.id });
        await store.insert(second);
        const spend = (s: KeyStore, id: string, version: number, policy = credits) =>
          s.consume({ subject: id, keyVersion: version, credits: policy, limits: [perSecond], cost: 1, now: T });
        const answers = [];
        for (let i = 0; i < 4; i++) answers.push(await spend(store, first.id, 2), await spend(other, second.id, 1));
        expect(answers.map((a) => (a as { credits: number }).credits)).toEqual([4, 3, 2, 1, 0, 0, 0, 0]);
        expect(answers.filter((a) => a.outcome === 'OK')).toHaveLength(5);
        // Credits set anew on the newest key: a newer generation. The old key's copy of the policy is behind.
        const anew = { ...normalizeCredits({ remaining: 3 }, 'test', T, 3), account: first.id };
        await store.replace({ ...second, credits: anew, version: 2 }, 1);
        expect(await spend(other, second.id, 2, anew)).toMatchObject({ outcome: 'OK', credits: 2 });
        expect(await spend(other, first.id, 2)).toMatchObject({ outcome: 'CHANGED' });
        // Removing the superseded first key keeps the count its successor charges.
        expect(await store.remove(first.id, 2)).toBe(true);
        expect(await spend(store, second.id, 2, anew)).toMatchObject({ outcome: 'OK', credits: 1 });
      });

      it('answers charges made at once as if made one after the other, in the order made', async () => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.record({ a: fc.nat({ max: 3 }), b: fc.nat({ max: 2 }), credits: fc.nat({ max: 2 }) }), { minLength: 1, maxLength: 30 }),
            async (burst) => {
              const credits = normalizeCredits({ remaining: 7 }, 'test', T, 1);
              const record = sampleRecord({ credits });
              await store.insert(record);
              const model = new LocalBuckets();
              const charges = burst.map((c) => [
                { name: 'a', limit: 5, window: 700, cost: c.a },
                { name: 'b', limit: 4, window: 2000, cost: c.b },
              ]);
              const got = await Promise.all(
                charges.map((limits, i) => store.consume({ subject: record.id, keyVersion: 1, credits, limits, cost: burst[i]!.credits, now: T })),
              );
              expect(got).toEqual(charges.map((limits, i) => model.consume(record.id, limits, { policy: credits, cost: burst[i]!.credits }, T)));
            },
          ),
          { numRuns: 15 },
        );
      });

      it('answers every sequence of charges and clock steps as the reference evaluation does', async () => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.record({ dt: fc.nat({ max: 300 }), a: fc.nat({ max: 3 }), b: fc.nat({ max: 2 }), credits: fc.nat({ max: 2 }) }), {
              minLength: 1,
              maxLength: 40,
            }),
            async (seq) => {
              const credits = normalizeCredits({ remaining: 6, refill: { amount: 4, interval: '1s' } }, 'test', T, 1);
              const record = sampleRecord({ credits });
              await store.insert(record);
              const model = new LocalBuckets();
              let now = T;
              for (const step of seq) {
                now += step.dt;
                const limits = [
                  { name: 'a', limit: 4, window: 700, cost: step.a },
                  { name: 'b', limit: 3, window: 2000, cost: step.b },
                ];
                const got = await (step.dt % 2 ? store : other).consume({
                  subject: record.id,
                  keyVersion: 1,
                  credits: record.credits,
                  limits,
                  cost: step.credits,
                  now,
                });
                expect(got).toEqual(model.consume(record.id, limits, { policy: credits, cost: step.credits }, now));
              }
            },
          ),
          { numRuns: 15 },
        );
      });
    });

    it("keeps a key's IP allowlist through insert and replace, for every process", async () => {
      const record = sampleRecord({ allowedIps: ['203.0.113.0/24', '2001:db8::/32'] });
      await store.insert(record);
      expect((await other.get(record.id))?.allowedIps).toEqual(['203.0.113.0/24', '2001:db8::/32']);
      const next = { ...record, allowedIps: [], version: 2, updatedAt: record.updatedAt + 1 };
      expect(await store.replace(next, 1)).toBe(true);
      expect((await other.get(record.id))?.allowedIps).toEqual([]);
    });

    it('keeps roles: compare-and-set, read in one call by every process, listed, removed, each change announced as role:<name>', async () => {
      const name = `role-${seq++}`;
      const heard: Array<string | null> = [];
      const off = other.onInvalidate((id) => heard.push(id));
      // The subscription is in place once a key's change is heard (a store confirms it only once).
      // Each change awaited before the next, so that none is still under way when the test ends.
      const probe = sampleRecord();
      await store.insert(probe);
      for (let version = 1; !heard.includes(probe.id); version++) {
        if (version > 50) throw new Error('the subscription never heard a change');
        await store.replace({ ...probe, version: version + 1 }, version);
        await waitFor(() => heard.includes(probe.id), 200).catch(() => {});
      }
      const role = { name, scopes: ['reports:read'], createdAt: 1_700_000_000_000, updatedAt: 1_700_000_000_000, version: 1 };
      const audit = { type: 'role.defined' as const, at: 1_700_000_000_000, keyId: null, ownerId: null, actor: 'test', reason: null, detail: `role ${name}` };
      expect(await store.saveRole!(role, null, audit)).toBe(true);
      // Only against the version it read: a second create, or a stale version, loses.
      expect(await store.saveRole!({ ...role, scopes: ['x'] }, null)).toBe(false);
      expect(await other.saveRole!({ ...role, scopes: ['x'], version: 2 }, 7)).toBe(false);
      await waitFor(() => heard.includes(`role:${name}`), 5000);
      expect(await other.getRoles!([name, `${name}-none`])).toEqual([role, null]);
      const next = { ...role, scopes: ['exports:*', 'reports:read'], version: 2, updatedAt: role.updatedAt + 1 };
      expect(await other.saveRole!(next, 1)).toBe(true);
      expect((await store.getRoles!([name]))[0]).toEqual(next);
      expect((await store.listRoles!()).filter((r) => r.name === name)).toEqual([next]);
      expect(await store.removeRole!(name, 1)).toBe(false);
      expect(await store.removeRole!(name, 2, { ...audit, type: 'role.deleted' })).toBe(true);
      expect(await other.getRoles!([name])).toEqual([null]);
      expect(await store.removeRole!(name, 2)).toBe(false);
      await waitFor(() => heard.filter((id) => id === `role:${name}`).length === 3, 5000);
      off();
      // The changes are in the store's trail, in order.
      const { entries } = await other.readAudit({ types: ['role.defined', 'role.deleted'], limit: 1000 });
      expect(entries.filter((e) => e.detail === `role ${name}`).map((e) => [e.type, e.actor, e.keyId])).toEqual([
        ['role.defined', 'test', null],
        ['role.deleted', 'test', null],
      ]);
    });

    describe('identities', () => {
      const identity = (id: string, overrides: Partial<IdentityRecord> = {}): IdentityRecord => ({
        id,
        name: `identity ${id}`,
        metadata: { tier: 'gold' },
        limits: [],
        credits: null,
        allowedIps: ['203.0.113.0/24'],
        roles: ['reporting'],
        createdAt: 1_700_000_000_000 + seq++,
        updatedAt: 1_700_000_000_000 + seq,
        version: 1,
        ...overrides,
      });
      const fresh = () => `id-${seq++}-${Math.random().toString(36).slice(2, 8)}`;
      const code = (error: unknown) => (error instanceof TillError ? error.code : String(error));

      it('keeps identities: insert once, read from every process, compare-and-set, remove, each change heard', async () => {
        const id = fresh();
        const first = identity(id);
        await store.insertIdentity!(first);
        expect(await other.getIdentity!(id)).toEqual(first);
        expect(code(await store.insertIdentity!(identity(id)).catch((e: unknown) => e))).toBe('IDENTITY_EXISTS');
        const heard: Array<string | null> = [];
        const off = other.onInvalidate((changed) => heard.push(changed));
        // Subscribed already by an earlier test, or confirmed now (heard as null).
        if (harness.confirmsSubscription) await waitFor(() => heard.includes(null) || other.invalidationsLost?.() === false, 5000);
        const second = { ...first, name: 'renamed', version: 2 };
        expect(await store.replaceIdentity!(second, 1)).toBe(true);
        expect(await store.replaceIdentity!({ ...second, version: 3 }, 1)).toBe(false);
        expect(await other.getIdentity!(id)).toEqual(second);
        await waitFor(() => heard.includes(`identity:${id}`), 5000);
        expect(await store.removeIdentity!(id, 1)).toBe(false);
        expect(await store.removeIdentity!(id, 2)).toBe(true);
        expect(await other.getIdentity!(id)).toBeNull();
        expect(code(await store.replaceIdentity!(second, 2).catch((e: unknown) => e))).toBe('IDENTITY_NOT_FOUND');
        expect(code(await store.removeIdentity!(id, 2).catch((e: unknown) => e))).toBe('IDENTITY_NOT_FOUND');
        off();
      });

      it('lists identities in creation order, a page at a time, and counts the keys of each as they come and go', async () => {
        const ids = [fresh(), fresh(), fresh()];
        for (const id of ids) await store.insertIdentity!(identity(id));
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await other.listIdentities!({ limit: 2, ...(cursor !== undefined && { cursor }) });
          seen.push(...page.identities.map((i) => i.id));
          cursor = page.cursor;
        } while (cursor !== undefined);
        expect(seen.filter((id) => ids.includes(id))).toEqual(ids);
        const a = sampleRecord({ identityId: ids[0]! });
        const b = sampleRecord({ identityId: ids[0]! });
        await store.insert(a);
        await store.insert(b);
        expect(await other.countIdentityKeys!(ids[0]!)).toBe(2);
        expect((await other.list({ identityId: ids[0]! })).keys.map((k) => k.id)).toEqual([a.id, b.id]);
        expect(await store.replace({ ...b, identityId: ids[1]!, version: 2 }, 1)).toBe(true);
        expect(await other.countIdentityKeys!(ids[0]!)).toBe(1);
        expect(await other.countIdentityKeys!(ids[1]!)).toBe(1);
        expect(await store.remove(a.id, 1)).toBe(true);
        expect(await other.countIdentityKeys!(ids[0]!)).toBe(0);
      });

      it('charges a key and its identity all or nothing, and gives both back on a refund', async () => {
        const id = fresh();
        const credits = normalizeCredits({ remaining: 3 }, 'keys', 1_000, 1);
        await store.insertIdentity!(identity(id, { limits: [{ name: 'shared', limit: 4, window: 60_000 }], credits }));
        const a = sampleRecord({ identityId: id, limits: [{ name: 'own', limit: 2, window: 60_000 }] });
        const b = sampleRecord({ identityId: id });
        await store.insert(a);
        await store.insert(b);
        const shared = { id, version: 1, credits, limits: [{ name: 'shared', limit: 4, window: 60_000, cost: 1, bucket: 'i.shared' }] };
        const now = 2_000_000_000_000;
        const charge = (record: KeyRecord, cost = 1, identityCharge: typeof shared | undefined = shared) =>
          other.consume({
            subject: record.id,
            keyVersion: 1,
            credits: null,
            limits: record.limits.map((l) => ({ ...l, cost: 1, bucket: `k.${l.name}` })),
            cost,
            now,
            ...(identityCharge !== undefined && { identity: identityCharge }),
          });
        const outcome = (r: ConsumeResult) => r.outcome;
        expect(outcome(await charge(a))).toBe('OK');
        expect(outcome(await charge(a))).toBe('OK');
        // The key's own limit refuses: the identity keeps its last credit.
        expect(outcome(await charge(a))).toBe('RATE_LIMITED');
        const last = await charge(b);
        expect(last).toMatchObject({ outcome: 'OK', credits: 0 });
        // The identity's credits refuse: nothing is charged of b's (none here) nor of the identity's limit.
        const refused = await charge(b);
        expect(refused).toMatchObject({ outcome: 'USAGE_EXCEEDED', credits: 0 });
        if ('limits' in refused) expect(refused.limits.map((l) => [l.name, l.remaining])).toEqual([['shared', 1]]);
        // A refund gives back the identity's limit and credit.
        await other.refund!({ subject: b.id, keyVersion: 1, credits: null, limits: [], cost: 1, now, identity: shared });
        expect(await charge(b)).toMatchObject({ outcome: 'OK', credits: 0 });
        // A stale or missing identity answers CHANGED (with the key's record), never a charge.
        expect(outcome(await charge(b, 1, { ...shared, version: 2 }))).toBe('CHANGED');
        expect(outcome(await charge(b, 0, { ...shared, id: fresh() }))).toBe('CHANGED');
      });
    });
  });
}
