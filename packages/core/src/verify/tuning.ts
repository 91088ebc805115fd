// The verifier's tuning for V8 and for memory, apart from the algorithm in verifier.ts. Each trick
// says what it buys; `pnpm bench core` measures the cached path they serve. Two more live where
// the cache entry is made (entry.ts): every entry has the same fields, and the digest is kept as bytes
// until the key it stands for is confirmed.
import type { Clock } from '../util/clock.js';
import { BODY_LENGTH, ID_LENGTH, MAX_KEY_LENGTH } from '../key/format.js';

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

  /** A clock reading (epoch milliseconds) as a cache time. */
  at(now: number): number {
    return now - this.epoch;
  }
}

/**
 * The fast path reads the cache with `peek` and tells it of a use at most this often (ms): eviction
 * order is kept to a second, and most requests skip the LRU's bookkeeping (a linked-list move and
 * two typed-array writes per `get`).
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

/**
 * Whether a presented key is the one a cache entry confirmed, in constant time: every character of
 * the confirmed key is compared, whatever differs first, with no early exit on content. A presented
 * key of another length is refused after the same work, done against a dummy of the confirmed key's
 * length (the confirmed key itself), so its length tells nothing either.
 */
export function sameKey(confirmed: string, presented: string): boolean {
  const n = confirmed.length;
  const other = presented.length === n ? presented : confirmed;
  let diff = presented.length ^ n;
  for (let i = 0; i < n; i++) diff |= confirmed.charCodeAt(i) ^ other.charCodeAt(i);
  return diff === 0;
}

/**
 * A string with storage of its own. An id sliced from a request's key is a view that keeps the whole
 * key (secret included) alive for as long as the cache and the in-flight map hold the id.
 */
export function ownCopy(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}
