// The verifier's caches: least recently used entries go first, kept in one Map (whose iteration order
// is its insertion order: a use moves an entry to the end, eviction takes the first). Nothing else per
// entry, where lru-cache keeps two lists and two index arrays beside its Map, and its `peek` checks for
// background fetches and staleness the verifier does not use: the cached path's lookup is one Map.get,
// and none for a request with the key of the last lookup (see recent). Eviction goes on with one kept
// iterator of the Map (see evictor), never a new one per eviction.

export class KeyCache<V> {
  private readonly entries = new Map<string, V>();
  /**
   * The entry `peek` found last, while the cache has not changed since (every change but a use clears
   * it): a run of requests with one key is then matched by its id read in place (see hasIdAt), with no
   * slice of the request's key made and no Map lookup. Only an entry kept under its own id (`idOf`) is
   * remembered; without `idOf`, nothing is.
   */
  private last: V | undefined = undefined;
  /**
   * Whether an entry was ever set under an id other than its own (a store that answered a read with
   * another key's record): the last lookup is then not remembered until the cache is cleared, since
   * its own id would answer for an id the Map does not hold. Checked on `set`, not on every lookup.
   */
  private foreign = false;
  /**
   * The iterator that eviction takes the oldest key from, kept while every `set` evicts. A Map leaves a
   * deleted entry's slot in place until it grows or shrinks, so evicting from the front leaves the slots
   * before the oldest live entry all deleted: a new iterator per eviction walked them all, about half the
   * cache on average (31 µs per eviction with 100,000 entries, 0.5 µs with 1,000, in one loop on the
   * machine of docs/performance.md). A kept one walks each slot once. It only ever sits just before the
   * oldest live entry: every entry it passed was evicted, and a use or a replacement moves an entry to the
   * end. Dropped by a `set` that evicts nothing (the cache is not full: below it, a kept iterator would
   * hold on to the Map's old tables as it grows).
   */
  private evictor: Iterator<string> | null = null;

  constructor(
    private readonly max: number,
    private readonly idOf: ((value: V) => string) | null = null,
  ) {}

  /** The entry of `id`, without counting it as a use. */
  peek(id: string): V | undefined {
    const value = this.entries.get(id);
    if (value !== undefined && this.idOf !== null && !this.foreign) this.last = value;
    return value;
  }

  /** The entry `peek` found last, if the cache has not changed since; it is kept under its own id. */
  recent(): V | undefined {
    return this.last;
  }

  /** Forgets the last `peek`: called by every change but a use. */
  private changed(): void {
    this.last = undefined;
  }

  /** The entry of `id`, counted as a use (it is evicted last). */
  get(id: string): V | undefined {
    const entries = this.entries;
    const value = entries.get(id);
    if (value !== undefined) {
      entries.delete(id);
      entries.set(id, value);
    }
    return value;
  }

  /** Sets the entry of `id` as the most recently used, evicting the least recently used past `max`. */
  set(id: string, value: V): void {
    this.changed();
    if (this.idOf !== null && !this.foreign && this.idOf(value) !== id) this.foreign = true;
    const entries = this.entries;
    if (!entries.delete(id)) {
      if (entries.size >= this.max) this.evictOldest();
      else this.evictor = null;
    }
    entries.set(id, value);
  }

  /** Deletes the least recently used entry (see evictor). */
  private evictOldest(): void {
    let next = this.evictor?.next();
    if (next === undefined || next.done === true) {
      this.evictor = this.entries.keys();
      next = this.evictor.next();
    }
    if (next.done !== true) this.entries.delete(next.value);
  }

  delete(id: string): void {
    this.changed();
    this.entries.delete(id);
  }

  clear(): void {
    this.changed();
    this.foreign = false;
    this.entries.clear();
  }

  /** Drops every entry `drop` says to (a walk of the whole cache: for rare changes, like a role's or an identity's). */
  deleteWhere(drop: (value: V) => boolean): void {
    this.changed();
    for (const [id, value] of this.entries) if (drop(value)) this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
  }
}
