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
 * Where a cached key's id would be, read before parsing: a key whose digest then matches an issued
 * key's is well-formed and carries the right check, so the parse (a base62 pass and a CRC-32) is
 * spent only on keys that are not cached. Null when the value cannot be a key (parsing will say why).
 * The id is a slice, which V8 makes a view of the key (13 characters or more), with no copy.
 */
export function idBeforeParse(key: unknown): string | null {
  if (typeof key !== 'string' || key.length > MAX_KEY_LENGTH || key.length <= BODY_LENGTH + 1) return null;
  const start = key.length - BODY_LENGTH;
  return key.slice(start, start + ID_LENGTH);
}

/** What a cache entry keeps of a confirmed key: its secret and check, the characters after the id. */
export function tailOf(key: string): string {
  return ownCopy(key.slice(key.length - SECRET_LENGTH - CHECK_LENGTH));
}

/** Read in place of a presented key of the wrong length, so that it costs the same work. */
const FILLER = '\0'.repeat(MAX_KEY_LENGTH + 1);

/**
 * Whether `presented` is the key of a cache entry that keeps its prefix and its tail (secret and check;
 * see tailOf), in constant time. The id is not compared: the entry was found by the presented key's id.
 * Every character of the prefix, the underscore and the tail is compared, whatever differs first; a
 * presented key of another length is refused after the same comparisons, made against a filler of the
 * right length, so its length tells nothing either. The characters are read from `text` from `start`,
 * where the caller found `presented` (by default `presented` itself): a flat header value reads faster
 * than a slice of it (see KeyExtractor.origin).
 */
export function sameKey(prefix: string, tail: string, presented: string, text: string = presented, start = 0): boolean {
  const p = prefix.length;
  const n = p + 1 + ID_LENGTH + tail.length;
  const fits = presented.length === n;
  const source = fits ? text : FILLER;
  const o = fits ? start : 0;
  let diff = fits ? 0 : 1;
  for (let i = 0; i < p; i++) diff |= prefix.charCodeAt(i) ^ source.charCodeAt(o + i);
  diff |= 95 /* _ */ ^ source.charCodeAt(o + p);
  const from = o + n - tail.length;
  for (let i = 0; i < tail.length; i++) diff |= tail.charCodeAt(i) ^ source.charCodeAt(from + i);
  return diff === 0;
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
