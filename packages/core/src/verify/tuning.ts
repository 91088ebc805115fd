// The verifier's tuning for V8 and for memory, apart from the algorithm in verifier.ts. Each trick
// says what it buys; `pnpm bench core` measures the cached path they serve. Two more live where
// the cache entry is made (entry.ts): every entry has the same fields, and the digest is kept as bytes
// until the key it stands for is confirmed.
import type { Clock } from '../util/clock.js';
import { BODY_LENGTH, CHECK_LENGTH, ID_LENGTH, MAX_KEY_LENGTH, SECRET_LENGTH } from '../key/format.js';

/**
 * Cache times as milliseconds since an epoch of the verifier's own, not since 1970. Small integers
 * (below 2^31) are V8 "Smis", kept inside the entry object; epoch milliseconds would each be a 16-byte
 * heap number of their own: 3 MB per 100,000 cached keys, and a pointer chase on every read.
 */
export class CacheClock {
  private readonly epoch: number;

  constructor(clock: Clock) {
    this.epoch = clock();
  }

  /**
   * A clock reading (epoch milliseconds) as a cache time: an int32 (`| 0`) while it fits, so that V8
   * keeps it as a Smi (a difference of two clock readings is otherwise a heap number, 16 bytes per
   * field per entry, even when it is a whole number). Past 2^31 ms (24 days of the process), or with a
   * clock that reads fractions, it is the plain difference: still right, only boxed.
   */
  at(now: number): number {
    const t = now - this.epoch;
    const small = t | 0;
    return small === t ? small : t;
  }
}

/**
 * The fast path reads the cache with `peek` and tells it of a use at most this often (ms): eviction
 * order is kept to a second, and most requests skip the LRU's bookkeeping (a Map delete and set per `get`).
 */
export const RECENCY_STEP = 1000;

/** Tells the LRU that `id` was used at cache time `at`, at most once per RECENCY_STEP. */
export function noteUse(cache: { get(id: string): unknown }, id: string, entry: { touched: number }, at: number): void {
  if (at - entry.touched >= RECENCY_STEP) {
    entry.touched = at;
    cache.get(id);
  }
}

/**
 * Where a cached key's id would start in `key`, found before parsing: a key whose digest then matches an
 * issued key's is well-formed and carries the right check, so the parse (a base62 pass and a CRC-32) is
 * spent only on keys that are not cached. -1 when the value cannot be a key (parsing will say why).
 */
export function idOffset(key: unknown): number {
  if (typeof key !== 'string' || key.length > MAX_KEY_LENGTH || key.length <= BODY_LENGTH + 1) return -1;
  return key.length - BODY_LENGTH;
}

/**
 * Whether the key in `text` has `id` at `at`, read in place by one builtin: no slice of the key is made,
 * and no Map lookup hashes one, for a request with the key of the last lookup (see KeyCache.recent).
 * A slice compared with a string costs V8 a runtime call (it is not a flat string). Ids are public: the
 * comparison may stop at the first difference.
 */
export function hasIdAt(id: string, text: string, at: number): boolean {
  // One character first: with many keys in turn, most requests are for another key than the last, and
  // for them the call is spared.
  return id.length === ID_LENGTH && text.charCodeAt(at) === id.charCodeAt(0) && text.startsWith(id, at);
}

/**
 * What a cache entry keeps of a confirmed key: its tail (secret and check, the 28 characters after the
 * id) as 7 small integers (Smis) inside the entry object, 4 characters of 7 bits to each. The first
 * (packTail returns it) takes the place of the entry's digest (see confirms in entry.ts). The
 * comparison then reads one string per character, where it read two from a string of its own (about
 * 30 ns less per verification on the machine of docs/performance.md), for the same memory: 7 fields of
 * 8 bytes where there was a field and a string of 48 bytes.
 */
export interface PackedTail {
  t1: number;
  t2: number;
  t3: number;
  t4: number;
  t5: number;
  t6: number;
}

const TAIL_LENGTH = SECRET_LENGTH + CHECK_LENGTH;
// The comparison below is made for 7 groups of 4 characters.
if (TAIL_LENGTH !== 28) throw new Error('[till] the packed tail is made for 28 characters after the id');

/** Four characters of `text` from `at` in one integer below 2^28, 7 bits each (a key's characters are ASCII). */
function four(text: string, at: number): number {
  return (text.charCodeAt(at) << 21) | (text.charCodeAt(at + 1) << 14) | (text.charCodeAt(at + 2) << 7) | text.charCodeAt(at + 3);
}

/** Keeps the tail of `key` (a key that matched the entry's digest, so ASCII) in `into`, but for its first 4 characters, returned. */
export function packTail(into: PackedTail, key: string): number {
  const from = key.length - TAIL_LENGTH;
  into.t1 = four(key, from + 4);
  into.t2 = four(key, from + 8);
  into.t3 = four(key, from + 12);
  into.t4 = four(key, from + 16);
  into.t5 = four(key, from + 20);
  into.t6 = four(key, from + 24);
  return four(key, from);
}

/** The tail that `first` (see packTail) and a PackedTail hold, as a string. */
export function tailOf(first: number, packed: PackedTail): string {
  let out = '';
  for (const v of [first, packed.t1, packed.t2, packed.t3, packed.t4, packed.t5, packed.t6]) {
    out += String.fromCharCode((v >>> 21) & 127, (v >>> 14) & 127, (v >>> 7) & 127, v & 127);
  }
  return out;
}

/** Read in place of a presented key of the wrong length, so that it costs the same work. */
const FILLER = '\0'.repeat(MAX_KEY_LENGTH + 1);

/**
 * Whether `presented` is the key of a cache entry that keeps its prefix and its tail (secret and check,
 * packed: `first` and `tail`, see PackedTail), in constant time. The id is not compared: the entry was
 * found by the presented key's id. Every character of the prefix, the underscore and the tail is
 * compared, whatever differs first; a presented key of another length is refused after the same
 * comparisons, made against a filler of the right length, so its length tells nothing either. A
 * character past 7 bits (which no key has) is refused too, with the same work: its high bits are
 * gathered apart, so it cannot pass for the character of its low 7 bits. The characters are read from
 * `text` from `start`, where the caller found `presented` (by default `presented` itself): a flat header
 * value reads faster than a slice of it (see KeyExtractor.origin).
 */
export function sameKey(prefix: string, first: number, tail: PackedTail, presented: string, text: string = presented, start = 0): boolean {
  const p = prefix.length;
  const n = p + 1 + ID_LENGTH + TAIL_LENGTH;
  const fits = presented.length === n;
  const s = fits ? text : FILLER;
  const o = fits ? start : 0;
  let diff = fits ? 0 : 1;
  for (let i = 0; i < p; i++) diff |= prefix.charCodeAt(i) ^ s.charCodeAt(o + i);
  diff |= 95 /* _ */ ^ s.charCodeAt(o + p);
  // One loop over the 7 groups, each 4 characters against one field as four() packs them, the field
  // picked by the group's number (public): as fast in a loop of calls as the 7 groups written out, and
  // about 200 ns less per request in a server (docs/performance.md), most likely because Node's and
  // Express's code between two requests pushes Till's out of the CPU's caches, and shorter code is read
  // back sooner. (A helper function per group was not always inlined: then twice as slow.)
  let f = o + n - TAIL_LENGTH;
  let high = 0;
  for (let g = 0; g < 7; g++, f += 4) {
    const a = s.charCodeAt(f);
    const b = s.charCodeAt(f + 1);
    const c = s.charCodeAt(f + 2);
    const d = s.charCodeAt(f + 3);
    high |= a | b | c | d;
    const held = g === 0 ? first : g === 1 ? tail.t1 : g === 2 ? tail.t2 : g === 3 ? tail.t3 : g === 4 ? tail.t4 : g === 5 ? tail.t5 : tail.t6;
    diff |= held ^ ((a << 21) | (b << 14) | (c << 7) | d);
  }
  return (diff | (high & ~127)) === 0;
}

/** The whole key of a cache entry that keeps its prefix, id and tail (see tailOf). */
export function keyOf(prefix: string, id: string, tail: string): string {
  return `${prefix}_${id}${tail}`;
}

/**
 * A string with storage of its own. An id sliced from a request's key is a view that keeps the whole
 * key (secret included) alive for as long as the cache and the in-flight map hold the id.
 */
export function ownCopy(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}
