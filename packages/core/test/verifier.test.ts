import { describe, expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import { generateKey } from '../src/key/format.js';
import type { VerifyResult } from '../src/verify/outcome.js';
import type { KeyRecord } from '../src/store/record.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill } from '../src/till.js';
import { Verifier } from '../src/verify/verifier.js';

/** A real MemoryStore behind a switch: counts reads, can hold them, or fail like a store that is down. */
class ControlledStore extends MemoryStore {
  reads = 0;
  down = false;
  gate: Promise<void> | null = null;
  override async get(id: string): Promise<KeyRecord | null> {
    this.reads++;
    if (this.gate) await this.gate;
    if (this.down) throw new TillError('STORE_UNAVAILABLE', '[till] [test] store down');
    return super.get(id);
  }
}

function setup(cache?: ConstructorParameters<typeof Verifier>[0]['cache']) {
  let now = 1_700_000_000_000;
  const store = new ControlledStore();
  const till = createTill({ store, clock: () => now, ...(cache && { cache }) });
  return { till, store, advance: (ms: number) => (now += ms), now: () => now };
}

const sync = (r: VerifyResult | Promise<VerifyResult>) => {
  expect(r).not.toBeInstanceOf(Promise);
  return r as VerifyResult;
};

describe('Verifier', () => {
  it('verifies a key, then answers from the cache synchronously', async () => {
    const { till, store } = setup();
    const { key, record } = await till.keys.create({ name: 'svc', scopes: ['users:read'], metadata: { team: 'a' } });
    const first = await till.verify(key);
    expect(first).toMatchObject({
      valid: true,
      code: 'VALID',
      stale: false,
      key: { id: record.id, name: 'svc', scopes: ['users:read'], metadata: { team: 'a' } },
    });
    expect(JSON.stringify(first)).not.toContain(key.slice(-20));
    expect(Object.keys((first as { key: object }).key)).not.toContain('hash');
    const second = sync(till.verify(key));
    expect(second.valid).toBe(true);
    expect(store.reads).toBe(1);
    expect(till.verifier.stats).toMatchObject({ hits: 1, misses: 1 });
  });

  it('rejects malformed input with no store read', async () => {
    const { till, store } = setup();
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    for (const bad of ['', 'nope', `${key}x`, `${key.slice(0, -1)}${key.endsWith('a') ? 'b' : 'a'}`, 'x'.repeat(10_000), null, 12, {}]) {
      const result = sync(till.verify(bad));
      expect(result.valid).toBe(false);
      expect(['MISSING', 'MALFORMED']).toContain(result.code);
    }
    expect(store.reads).toBe(0);
  });

  it('answers NOT_FOUND alike for an unknown id and a wrong secret, and caches the unknown id briefly', async () => {
    const { till, store, advance } = setup({ negativeTtl: 1000 });
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    const unknown = generateKey('till').key;
    const forged = generateKey('till');
    // Same id, other secret, valid check: only the hash comparison can refuse it.
    const { crc32 } = await import('node:zlib');
    const { encodeBase62 } = await import('../src/key/base62.js');
    const head = key.slice(0, 5 + 16) + forged.key.slice(5 + 16, 5 + 16 + 22);
    const wrongSecret = head + encodeBase62(crc32(head), 6);
    const a = await till.verify(unknown);
    const b = await till.verify(wrongSecret);
    expect(a).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(b).toEqual(a);
    const reads = store.reads;
    expect(sync(till.verify(unknown)).code).toBe('NOT_FOUND');
    expect(store.reads).toBe(reads);
    advance(1001);
    expect(await till.verify(unknown)).toMatchObject({ code: 'NOT_FOUND' });
    expect(store.reads).toBe(reads + 1);
  });

  it('refuses keys by status, in order, once the secret matched', async () => {
    const { till, advance, now } = setup({ ttl: 120_000 });
    const expiring = await till.keys.create({ name: 'e', scopes: ['a'], expiresAt: now() + 60_000 });
    const later = await till.keys.create({ name: 'n', scopes: ['a'], notBefore: now() + 60_000 });
    const revoked = await till.keys.create({ name: 'r', scopes: ['a'], expiresAt: now() + 1000 });
    const disabled = await till.keys.create({ name: 'd', scopes: ['a'] });
    await till.keys.revoke(revoked.record.id, { reason: 'test' });
    const raw = (await till.store.get(disabled.record.id))!;
    await till.store.replace({ ...raw, disabled: true, version: raw.version + 1 }, raw.version);
    expect(await till.verify(later.key)).toMatchObject({ code: 'NOT_YET_VALID', keyId: later.record.id });
    expect(await till.verify(revoked.key)).toMatchObject({ code: 'REVOKED' });
    expect(await till.verify(disabled.key)).toMatchObject({ code: 'DISABLED' });
    expect(await till.verify(expiring.key)).toMatchObject({ code: 'VALID' });
    advance(60_000);
    // Expiry is judged at verification time, also from the cache.
    expect(sync(till.verify(expiring.key))).toMatchObject({ code: 'EXPIRED' });
    expect(sync(till.verify(later.key))).toMatchObject({ code: 'VALID' });
  });

  it('checks scopes, all or any, with wildcards on the key', async () => {
    const { till } = setup();
    const { key } = await till.keys.create({ name: 'k', scopes: ['users:*', 'reports:read'] });
    expect(await till.verify(key, { scopes: ['users:write', 'reports:read'] })).toMatchObject({ code: 'VALID' });
    expect(await till.verify(key, { scopes: ['reports:write'] })).toMatchObject({
      code: 'INSUFFICIENT_SCOPE',
      requiredScopes: ['reports:write'],
      scopeMode: 'all',
    });
    expect(await till.verify(key, { scopes: ['reports:write', 'users:x'], scopeMode: 'any' })).toMatchObject({ code: 'VALID' });
  });

  it('evicts the least recently used key when full, counting uses to the second', async () => {
    const { till, store, advance } = setup({ max: 2, ttl: 60_000 });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((name) => till.keys.create({ name, scopes: ['x'] })));
    await till.verify(a!.key);
    await till.verify(b!.key);
    advance(1000);
    expect(sync(till.verify(a!.key)).valid).toBe(true); // a use the cache hears of: a is now the most recent
    await till.verify(c!.key); // full: evicts b, not a
    const reads = store.reads;
    expect(sync(till.verify(a!.key)).valid).toBe(true);
    expect(await till.verify(b!.key)).toMatchObject({ valid: true });
    expect(store.reads).toBe(reads + 1);
  });

  it('reads the store once for many concurrent misses of one id (single-flight)', async () => {
    const { till, store } = setup();
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    let open!: () => void;
    store.gate = new Promise((r) => (open = r));
    const pending = Array.from({ length: 50 }, () => till.verify(key));
    open();
    const results = await Promise.all(pending);
    expect(results.every((r) => r.valid)).toBe(true);
    expect(store.reads).toBe(1);
  });

  it('does not cache a read that a change overtook', async () => {
    const { till, store } = setup();
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'] });
    let open!: () => void;
    store.gate = new Promise((r) => (open = r));
    const before = till.verify(key);
    store.gate = null;
    await till.keys.revoke(record.id);
    open();
    await before;
    // Whatever the overtaken read saw, the next verification must see the revocation.
    expect(await till.verify(key)).toMatchObject({ code: 'REVOKED' });
  });

  it('refreshes a cached key after its TTL', async () => {
    const { till, store, advance } = setup({ ttl: 1000 });
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'] });
    await till.verify(key);
    // A change this process did not hear of: written straight to the store, no invalidation reaches it.
    const raw = (await MemoryStore.prototype.get.call(store, record.id))!;
    (store as unknown as { records: Map<string, string> }).records.set(
      record.id,
      JSON.stringify({ ...raw, revokedAt: raw.createdAt, version: raw.version + 1 }),
    );
    expect(sync(till.verify(key)).code).toBe('VALID');
    advance(1000);
    expect(await till.verify(key)).toMatchObject({ code: 'REVOKED' });
  });

  it('keeps recently verified keys working for the stale window when the store is down, then answers 503', async () => {
    const { till, store, advance } = setup({ ttl: 1000, staleWindow: 10_000 });
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    await till.verify(key);
    store.down = true;
    advance(5000);
    expect(await till.verify(key)).toMatchObject({ valid: true, stale: true });
    expect(await till.verify(generateKey('till').key)).toEqual({ valid: false, code: 'STORE_UNAVAILABLE', retryAfter: 2 });
    advance(6001);
    expect(await till.verify(key)).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    store.down = false;
    expect(await till.verify(key)).toMatchObject({ valid: true, stale: false });
  });

  it('does not serve from the stale window a key whose change this process heard during the failed read', async () => {
    const { till, store, advance } = setup({ ttl: 1000, staleWindow: 60_000 });
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'] });
    await till.verify(key);
    advance(1000);
    let open!: () => void;
    store.gate = new Promise((r) => (open = r));
    store.down = true;
    const pending = till.verify(key);
    till.verifier.invalidate(record.id); // the revocation message arrives while the read hangs
    open();
    expect(await pending).toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('treats a misspelt scope mode as "all", never as "any"', async () => {
    const { till } = setup();
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    expect(await till.verify(key, { scopes: ['a', 'admin'], scopeMode: 'ALL' as never })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
    expect(await till.verify(key, { scopes: 'a' as never })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
  });

  it('keeps real keys cached however many made-up keys are tried (unknown ids have a cache of their own)', async () => {
    const { till, store, advance } = setup({ max: 10, negativeMax: 10, ttl: 1000, staleWindow: 60_000 });
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    await till.verify(key);
    for (let i = 0; i < 100; i++) expect(await till.verify(generateKey('till').key)).toMatchObject({ code: 'NOT_FOUND' });
    store.down = true;
    advance(1000);
    // Still cached, so still served from the stale window while the store is down.
    expect(await till.verify(key)).toMatchObject({ valid: true, stale: true });
  });

  it('never serves stale when the window is 0', async () => {
    const { till, store, advance } = setup({ ttl: 1000, staleWindow: 0 });
    const { key } = await till.keys.create({ name: 'k', scopes: ['a'] });
    await till.verify(key);
    store.down = true;
    advance(1000);
    expect(await till.verify(key)).toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('turns any store failure, even a synchronous throw, into STORE_UNAVAILABLE', async () => {
    const broken = new MemoryStore();
    broken.get = () => {
      throw new Error('boom');
    };
    const till = createTill({ store: broken });
    expect(await till.verify(generateKey('till').key)).toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('accepts only the configured prefixes', async () => {
    const store = new MemoryStore();
    const issuer = createTill({ store, prefix: 'sk_test' });
    const live = createTill({ store, prefixes: ['sk_live'] });
    const { key } = await issuer.keys.create({ name: 'k', scopes: ['a'] });
    expect(await issuer.verify(key)).toMatchObject({ code: 'VALID' });
    expect(await live.verify(key)).toMatchObject({ code: 'MALFORMED' });
  });

  it('sees changes made through another Till on the same store at once', async () => {
    const store = new MemoryStore();
    const a = createTill({ store });
    const b = createTill({ store });
    const { key, record } = await a.keys.create({ name: 'k', scopes: ['a'] });
    expect(await b.verify(key)).toMatchObject({ code: 'VALID' });
    expect(sync(b.verify(key)).code).toBe('VALID');
    await a.keys.revoke(record.id);
    expect(await b.verify(key)).toMatchObject({ code: 'REVOKED' });
  });

  it('checks its options when created', () => {
    const store = new MemoryStore();
    expect(() => new Verifier({} as never)).toThrow(/store is required/);
    expect(() => new Verifier({ store, cache: { max: 0 } })).toThrow(/cache.max/);
    expect(() => new Verifier({ store, cache: { negativeMax: 1.5 } })).toThrow(/cache.negativeMax/);
    expect(() => new Verifier({ store, cache: { ttl: -1 } })).toThrow(/cache.ttl/);
    expect(() => new Verifier({ store, cache: { staleWindow: 'x' as never } })).toThrow(/staleWindow/);
    expect(() => new Verifier({ store, prefixes: ['Bad Prefix'] })).toThrow(/prefixes/);
    expect(() => new Verifier({ store, clock: 5 as never })).toThrow(/clock/);
    expect(() => createTill({ pepper: 'short' })).toThrow(/pepper/);
  });

  it('uses the pepper: a key made with one pepper does not verify under another', async () => {
    const store: KeyStore = new MemoryStore();
    const a = createTill({ store, pepper: 'pepper-number-one-0123456789' });
    const b = createTill({ store, pepper: 'pepper-number-two-0123456789' });
    const { key, record } = await a.keys.create({ name: 'k', scopes: ['a'] });
    expect((await store.get(record.id))!.hashAlgorithm).toBe('hmac-sha256');
    expect(await a.verify(key)).toMatchObject({ code: 'VALID' });
    expect(await b.verify(key)).toMatchObject({ code: 'NOT_FOUND' });
  });
});
