// A cached key is confirmed by a constant-time comparison with the key its first presentation matched,
// not by a hash: what that fast path must still refuse, still judge per request, and forget on a change.
import { crc32 } from 'node:zlib';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { encodeBase62 } from '../src/key/base62.js';
import { createHasher, type KeyHasher } from '../src/key/hash.js';
import { RedisStore } from '../src/redis/store.js';
import { MemoryStore } from '../src/store/memory.js';
import { createTill } from '../src/till.js';
import { isWrongSecret, type VerifyResult } from '../src/verify/outcome.js';
import { packTail, sameKey, tailOf, type PackedTail } from '../src/verify/tuning.js';
import { Verifier } from '../src/verify/verifier.js';

const START = 1_700_000_000_000;

function setup(cache?: { hashEveryRequest?: boolean }) {
  let now = START;
  const till = createTill({ store: new MemoryStore(), clock: () => now, ...(cache && { cache }) });
  return { till, advance: (ms: number) => (now += ms), now: () => now };
}

/** A verification answered from the cache: synchronous, and no store read. */
function cached(till: ReturnType<typeof setup>['till'], key: string): VerifyResult {
  const misses = till.verifier.stats.misses;
  const result = till.verify(key);
  expect(result).not.toBeInstanceOf(Promise);
  expect(till.verifier.stats.misses).toBe(misses);
  return result as VerifyResult;
}

/** `head` (prefix, underscore, id, secret) with its check: a well-formed key. */
const withCheck = (head: string) => head + encodeBase62(crc32(head), 6);

/** `text` as sameKey sees a string, counting the reads of each position. */
function counting(text: string) {
  const reads = new Array<number>(text.length).fill(0);
  const value = {
    length: text.length,
    charCodeAt(i: number) {
      reads[i] = (reads[i] ?? 0) + 1;
      return text.charCodeAt(i);
    },
  };
  return { value: value as unknown as string, reads };
}

/** The tail of a confirmed key as a cache entry keeps it: its first characters, and the fields of the rest. */
function packed(key: string): { first: number; rest: PackedTail } {
  const rest: PackedTail = { t1: 0, t2: 0, t3: 0, t4: 0, t5: 0, t6: 0 };
  const first = packTail(rest, key);
  return { first, rest };
}

/** sameKey() of a cache entry that keeps `tail`. */
const matches = (prefix: string, tail: ReturnType<typeof packed>, presented: string, text?: string, start?: number) =>
  sameKey(prefix, tail.first, tail.rest, presented, text, start);

/** Verifies a key twice: the first presentation is hashed and confirms it, the second is answered from the cache. */
async function confirm(till: ReturnType<typeof setup>['till'], key: string): Promise<void> {
  expect((await till.verify(key)).valid).toBe(true);
  expect(cached(till, key).valid).toBe(true);
}

describe('a cached key confirmed without a hash', () => {
  it('refuses a wrong secret for a cached id: another secret, one character off, another length', async () => {
    const { till } = setup();
    const { key } = await till.keys.create({ name: 'svc', scopes: [] });
    await confirm(till, key);
    const head = key.slice(0, -6);
    const last = head.at(-1) === 'A' ? 'B' : 'A';
    // The secret's last character changed, with a valid check: the id is the cached one.
    expect(isWrongSecret(cached(till, withCheck(head.slice(0, -1) + last)))).toBe(true);
    // The key's last character changed: its check fails before the cache is asked.
    expect((await till.verify(key.slice(0, -1) + (key.at(-1) === 'A' ? 'B' : 'A'))).code).toBe('MALFORMED');
    // Another prefix, one character longer, the same id and secret, a valid check.
    const longer = withCheck(`${key.slice(0, key.indexOf('_'))}x${head.slice(key.indexOf('_'))}`);
    expect(longer.length).toBe(key.length + 1);
    expect(isWrongSecret(cached(till, longer))).toBe(true);
    // A prefix one character shorter.
    const shorter = withCheck(`${key.slice(0, key.indexOf('_') - 1)}${head.slice(key.indexOf('_'))}`);
    expect(isWrongSecret(cached(till, shorter))).toBe(true);
    // And the key itself still verifies, from the cache.
    expect(cached(till, key).valid).toBe(true);
    await till.close();
  });

  it('confirms a key with what few keys have (a version past the first, limits, an allowlist) the same way, its proof kept apart', async () => {
    const { till } = setup();
    const plain = await till.keys.create({ name: 'plain', scopes: [] });
    const changed = await till.keys.create({ name: 'changed', scopes: [] });
    await till.keys.update(changed.record.id, { scopes: ['orders:read'] });
    const listed = await till.keys.create({ name: 'listed', scopes: [], allowedIps: ['127.0.0.1'] });
    for (const made of [plain, changed, listed]) {
      const options = { ip: '127.0.0.1' };
      expect((await till.verify(made.key, options)).valid).toBe(true);
      // Answered from the cache (synchronously, no store read), by its kept tail.
      const misses = till.verifier.stats.misses;
      const again = till.verify(made.key, options) as VerifyResult;
      expect(again.valid).toBe(true);
      expect(till.verifier.stats.misses).toBe(misses);
      const head = made.key.slice(0, -6);
      const wrong = withCheck(head.slice(0, -1) + (head.at(-1) === 'A' ? 'B' : 'A'));
      expect(isWrongSecret(till.verify(wrong, options) as VerifyResult)).toBe(true);
      expect(till.verifier.stats.misses).toBe(misses);
    }
    // Still judged by what it has: the allowlist, and the version it was confirmed at.
    expect(till.verify(listed.key, { ip: '10.0.0.1' })).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED' });
    expect(till.verify(changed.key)).toMatchObject({ valid: true, key: { scopes: ['orders:read'] } });
    await till.close();
  });

  it('answers for the key of the last lookup only when the presented id is its id: its tail after another id is refused', async () => {
    const { till } = setup();
    const a = await till.keys.create({ name: 'a', scopes: [] });
    const b = await till.keys.create({ name: 'b', scopes: [] });
    await confirm(till, b.key);
    await confirm(till, a.key);
    const tail = a.key.slice(-28);
    const prefix = a.key.slice(0, a.key.indexOf('_') + 1);
    // B's id, then A's secret and check, which A's comparison reads (its check does not fit B's id): A
    // is the entry of the last lookup, B is cached. Only the parse answers.
    expect(cached(till, `${prefix}${b.record.id}${tail}`)).toMatchObject({ valid: false, code: 'MALFORMED' });
    // B's id and A's secret with a check that fits: B's secret is not A's.
    expect(isWrongSecret(cached(till, withCheck(`${prefix}${b.record.id}${tail.slice(0, 22)}`)))).toBe(true);
    // An id no key has, A's secret and check.
    expect((await till.verify(`${prefix}${'z'.repeat(16)}${tail}`)).valid).toBe(false);
    // A itself, then B after it: each is still its own key.
    const first = cached(till, a.key);
    const second = cached(till, b.key);
    expect(first.valid && first.key.id).toBe(a.record.id);
    expect(second.valid && second.key.id).toBe(b.record.id);
    await till.close();
  });

  it('compares every character but the id (the lookup matched it), wherever the first difference is, and a key of another length after the same work', () => {
    const confirmed = withCheck(`till_${'a'.repeat(16)}${'b'.repeat(22)}`);
    const tail = packed(confirmed);
    expect(tailOf(tail.first, tail.rest)).toBe(confirmed.slice(-28));
    // Every character of a key's alphabet, at every place, packs and reads back.
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    for (const t of ['0'.repeat(28), 'z'.repeat(28), alphabet.slice(0, 28), alphabet.slice(34), alphabet.slice(20, 48)]) {
      const key = `till_${'a'.repeat(16)}${t}`;
      expect(tailOf(packed(key).first, packed(key).rest)).toBe(t);
      expect(matches('till', packed(key), key)).toBe(true);
    }
    const match = counting(confirmed);
    expect(matches('till', tail, match.value)).toBe(true);
    // Prefix, underscore and tail read once each; the id (positions 5 to 20) not at all.
    expect(match.reads.map((n, i) => (i >= 5 && i < 21 ? n === 0 : n === 1)).every(Boolean)).toBe(true);
    for (const at of [0, 4, 21, 35, confirmed.length - 1]) {
      const other = counting(confirmed.slice(0, at) + (confirmed[at] === 'c' ? 'd' : 'c') + confirmed.slice(at + 1));
      expect(matches('till', tail, other.value), `difference at ${at}`).toBe(false);
      expect(other.reads).toEqual(match.reads);
    }
    // A character past 7 bits whose low 7 bits are the right one, wherever it packs (each group's first
    // and last place): refused, after the same reads.
    const tailAt = confirmed.length - 28;
    for (const at of [0, 4, tailAt, tailAt + 3, tailAt + 4, tailAt + 24, confirmed.length - 1]) {
      const c = confirmed.charCodeAt(at);
      for (const code of [c | 0x80, c | 0x100, c | 0xff00, 0xffff]) {
        const other = counting(confirmed.slice(0, at) + String.fromCharCode(code) + confirmed.slice(at + 1));
        expect(matches('till', tail, other.value), `character ${at} as ${code}`).toBe(false);
        expect(other.reads).toEqual(match.reads);
      }
    }
    // Another length: refused, its characters never read (a filler of the right length is).
    for (const presented of [confirmed.slice(0, -1), `${confirmed}x`, `x${confirmed}`, '']) {
      const other = counting(presented);
      expect(matches('till', tail, other.value)).toBe(false);
      expect(other.reads.every((n) => n === 0)).toBe(true);
    }
  });

  it('reads the key where it lies in its header value: the same verdicts, and nothing outside the key is read', () => {
    const confirmed = withCheck(`till_${'a'.repeat(16)}${'b'.repeat(22)}`);
    const tail = packed(confirmed);
    const header = (key: string) => counting(`Bearer ${key}`);
    const good = header(confirmed);
    expect(matches('till', tail, confirmed, good.value, 7)).toBe(true);
    // The scheme (positions 0 to 6) and the id are never read; prefix, underscore and tail once each.
    expect(good.reads.map((n, i) => (i < 7 || (i >= 12 && i < 28) ? n === 0 : n === 1)).every(Boolean)).toBe(true);
    for (const at of [0, 4, 21, 35, confirmed.length - 1]) {
      const wrong = confirmed.slice(0, at) + (confirmed[at] === 'c' ? 'd' : 'c') + confirmed.slice(at + 1);
      const other = header(wrong);
      expect(matches('till', tail, wrong, other.value, 7), `difference at ${at}`).toBe(false);
      expect(other.reads).toEqual(good.reads);
    }
  });

  it("gives the verifier the header value and the key's place in it, or the key alone when spaces were trimmed around it", async () => {
    const { createExtractor } = await import('../src/http/extract.js');
    const { scan, origin } = createExtractor();
    const key = withCheck(`till_${'a'.repeat(16)}${'b'.repeat(22)}`);
    const cases: [Record<string, string>, string, number][] = [
      [{ authorization: `Bearer ${key}` }, `Bearer ${key}`, 7],
      [{ authorization: `bearer ${key}` }, `bearer ${key}`, 7],
      [{ 'x-api-key': key }, key, 0],
      [{ authorization: `Bearer  ${key} ` }, key, 0],
      [{ 'x-api-key': ` ${key}` }, key, 0],
      [{ authorization: `Bearer ${key}`, 'x-api-key': key }, key, 0],
    ];
    for (const [headers, text, at] of cases) {
      expect(scan(headers)).toBe(key);
      expect(origin).toEqual({ text, at });
      expect(origin.text.slice(origin.at, origin.at + key.length)).toBe(key);
    }
    // Through apiKeyAuth()'s authenticator: a confirmed key in a header passes from the cache, a wrong secret does not.
    const { till } = setup();
    const made = await till.keys.create({ name: 'header', scopes: [] });
    await confirm(till, made.key);
    const { createAuthenticator } = await import('../src/http/authenticator.js');
    const auth = createAuthenticator({ till }, 'test');
    const request = (value: string) => ({ headers: { authorization: value }, rawHeaders: ['Authorization', value] });
    const misses = till.verifier.stats.misses;
    expect(auth.authenticate(request(`Bearer ${made.key}`), null, () => undefined)).toMatchObject({ valid: true });
    const last = made.key.length - 3;
    const wrong = made.key.slice(0, last) + (made.key[last] === 'A' ? 'B' : 'A') + made.key.slice(last + 1);
    expect(auth.authenticate(request(`Bearer ${wrong}`), null, () => undefined)).toMatchObject({ valid: false });
    expect(till.verifier.stats.misses).toBe(misses);
    await till.close();
  });

  it('judges expiry, not-before, disabling, revocation and rotation grace per request on a confirmed key', async () => {
    const { till, advance, now } = setup();
    const expiring = await till.keys.create({ name: 'expiring', scopes: [], expiresAt: now() + 10_000 });
    const early = await till.keys.create({ name: 'early', scopes: [], notBefore: now() + 10_000 });
    await confirm(till, expiring.key);
    expect((await till.verify(early.key)).code).toBe('NOT_YET_VALID');
    expect(cached(till, early.key).code).toBe('NOT_YET_VALID');
    advance(10_000);
    expect(cached(till, expiring.key).code).toBe('EXPIRED');
    expect(cached(till, early.key).valid).toBe(true);

    const toggled = await till.keys.create({ name: 'toggled', scopes: [] });
    await confirm(till, toggled.key);
    await till.keys.disable(toggled.record.id);
    expect((await till.verify(toggled.key)).code).toBe('DISABLED');
    expect(cached(till, toggled.key).code).toBe('DISABLED');
    await till.keys.enable(toggled.record.id);
    await confirm(till, toggled.key);
    await till.keys.revoke(toggled.record.id);
    expect((await till.verify(toggled.key)).code).toBe('REVOKED');
    expect(cached(till, toggled.key).code).toBe('REVOKED');

    const old = await till.keys.create({ name: 'old', scopes: [] });
    await confirm(till, old.key);
    const rotated = await till.keys.rotate(old.record.id, { grace: '10s' });
    await confirm(till, old.key);
    await confirm(till, rotated.key);
    advance(10_000);
    expect(cached(till, old.key).code).toBe('EXPIRED');
    expect(cached(till, rotated.key).valid).toBe(true);
    await till.close();
  });

  it('hashes a key once per cache entry, and every request with cache.hashEveryRequest', async () => {
    for (const [hashEveryRequest, hashes] of [
      [false, 1],
      [true, 5],
    ] as const) {
      const { till } = setup();
      const { key } = await till.keys.create({ name: 'svc', scopes: [] });
      let calls = 0;
      const plain = createHasher();
      const counting: KeyHasher = {
        algorithm: plain.algorithm,
        digest: plain.digest,
        matches: (...args) => {
          calls++;
          return plain.matches(...args);
        },
      };
      const verifier = new Verifier({ store: till.store, hasher: counting, cache: { hashEveryRequest } });
      expect((await verifier.verify(key)).valid).toBe(true);
      for (let i = 0; i < 4; i++) expect((verifier.verify(key) as VerifyResult).valid).toBe(true);
      expect(calls, `hashEveryRequest: ${hashEveryRequest}`).toBe(hashes);
      verifier.close();
      await till.close();
    }
  });

  it('checks the option', () => {
    expect(() => createTill({ store: new MemoryStore(), cache: { hashEveryRequest: 'yes' as unknown as boolean } })).toThrow(/hashEveryRequest/);
  });
});

describe('a revocation heard over pub/sub (Redis)', () => {
  const namespace = uniqueNamespace();
  const clients = [newClient(), newClient(), newClient()];
  afterAll(async () => {
    await deleteNamespace(clients[2]!, namespace);
    for (const c of clients) c.disconnect();
  });

  it('drops what the cache learned: the next presentation is judged from the store', async () => {
    const serving = createTill({ store: new RedisStore({ client: clients[0]!, namespace }) });
    const admin = createTill({ store: new RedisStore({ client: clients[1]!, namespace }) });
    const { key, record } = await admin.keys.create({ name: 'svc', scopes: [] });
    expect((await serving.verify(key)).valid).toBe(true);
    // Answered from the cache once the subscription to changes is made (the cache is not trusted before).
    const fromCache = () => {
      const r = serving.verify(key);
      return !(r instanceof Promise) && r.valid;
    };
    expect(await waitFor(fromCache, 10_000)).toBe(true);
    expect(serving.verifier.ownerOf(record.id)).toBeNull();
    await admin.keys.revoke(record.id);
    expect(await waitFor(() => serving.verifier.ownerOf(record.id) === undefined, 10_000)).toBe(true);
    const misses = serving.verifier.stats.misses;
    const after = serving.verify(key);
    expect(after).toBeInstanceOf(Promise);
    expect((await after).code).toBe('REVOKED');
    expect(serving.verifier.stats.misses).toBe(misses + 1);
    await serving.close();
    await admin.close();
  });
});

describe("the cached path's clock", () => {
  it('reads the clock again after its resolution has passed or its uses are spent, never in between', async () => {
    const { coarseClock } = await import('../src/util/clock.js');
    let reads = 0;
    const clock = coarseClock(() => ++reads, 5, 4);
    expect([clock(), clock(), clock(), clock()]).toEqual([1, 1, 1, 1]);
    // Four uses spent: the fifth call reads again.
    expect(clock()).toBe(2);
    expect(reads).toBe(2);
    // Once its timer has run (the event loop turns), the reading is dropped however few uses it served.
    let slowReads = 0;
    const slow = coarseClock(() => ++slowReads, 5, 1_000_000);
    expect(slow()).toBe(1);
    expect(await waitFor(() => slow() > 1, 5_000)).toBe(true);
    expect(slowReads).toBe(2);
  });

  it('keeps one timer while it is read, and none once a tick passes without a reading', async () => {
    const { coarseClock } = await import('../src/util/clock.js');
    const started = vi.spyOn(globalThis, 'setInterval');
    const stopped = vi.spyOn(globalThis, 'clearInterval');
    // This clock's timers: the ones with its resolution (7 ms; other clocks of the process use 5).
    const timers = () => started.mock.calls.flatMap((call, i) => (call[1] === 7 ? [started.mock.results[i]!.value] : []));
    const cleared = () => stopped.mock.calls.filter(([timer]) => timers().includes(timer)).length;
    try {
      let reads = 0;
      const clock = coarseClock(() => ++reads, 7, 1_000_000);
      expect(clock()).toBe(1);
      expect(timers()).toHaveLength(1);
      // Read at every turn of the event loop until three ticks have dropped the reading: the same timer
      // goes on (a turn runs between any two ticks).
      const deadline = Date.now() + 5_000;
      while (reads < 4 && Date.now() < deadline) {
        clock();
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(reads).toBe(4);
      expect(timers()).toHaveLength(1);
      expect(cleared()).toBe(0);
      // Left alone: the first tick with no reading since the one before stops the timer.
      expect(await waitFor(() => cleared() === 1, 5_000)).toBe(true);
      // Read again: a fresh reading, and a new timer.
      const before = reads;
      expect(clock()).toBe(before + 1);
      expect(clock()).toBe(before + 1);
      expect(timers()).toHaveLength(2);
      expect(await waitFor(() => cleared() === 2, 5_000)).toBe(true);
    } finally {
      started.mockRestore();
      stopped.mockRestore();
    }
  });

  it('refuses a cached key once it has expired by the system clock, within the resolution of the coarse clock', async () => {
    const { COARSE_CLOCK_RESOLUTION } = await import('../src/util/clock.js');
    const till = createTill({ store: new MemoryStore() });
    const expiresAt = Date.now() + 200;
    const made = await till.keys.create({ name: 'expiring', scopes: [], expiresAt });
    expect((await till.verify(made.key)).valid).toBe(true);
    expect((till.verify(made.key) as VerifyResult).valid).toBe(true);
    // Waited on the system clock alone: the coarse clock's timer runs meanwhile, so its next reading is fresh.
    expect(await waitFor(() => Date.now() > expiresAt + COARSE_CLOCK_RESOLUTION, 5_000)).toBe(true);
    const result = till.verify(made.key);
    expect(result).not.toBeInstanceOf(Promise);
    expect((result as VerifyResult).code).toBe('EXPIRED');
    await till.close();
  });
});
