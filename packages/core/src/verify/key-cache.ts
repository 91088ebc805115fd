// The verifier's caches: least recently used entries go first, kept in one Map (whose iteration order
// is its insertion order: a use moves an entry to the end, eviction takes the first). Nothing else per
// entry, where lru-cache keeps two lists and two index arrays beside its Map, and its `peek` checks for
// background fetches and staleness the verifier does not use: the cached path's lookup is one Map.get.

export class KeyCache<V> {
  private readonly entries = new Map<string, V>();
  /**
   * The id `peek` found last and its entry, while the cache has not changed since (every change but a
   * use clears them). A run of requests with one key then compares the id with this string instead of
   * hashing it: the id is a slice of the request's key, a new string each time, whose hash a Map lookup
   * computes first (about as long as the rest of the lookup). Ids are public: the comparison need not
   * be constant-time. The id kept is the entry's own (`idOf`), never the slice: that would keep the
   * request's whole key, secret included, alive. Without `idOf`, nothing is kept.
   */
  private lastId: string | null = null;
  private lastValue: V | undefined = undefined;
  /**
   * Whether an entry was ever set under an id other than its own (a store that answered a read with
   * another key's record): the last lookup is then not remembered until the cache is cleared, since
   * its own id would answer for an id the Map does not hold. Checked on `set`, not on every lookup.
   */
  private foreign = false;

  constructor(
    private readonly max: number,
    private readonly idOf: ((value: V) => string) | null = null,
  ) {}

  /** The entry of `id`, without counting it as a use. */
  peek(id: string): V | undefined {
    const last = this.lastId;
    // One character first: comparing a slice with another string can cost a runtime call even when
    // they differ at once, and with many keys in turn most lookups are for another id than the last.
    if (last !== null && id.charCodeAt(0) === last.charCodeAt(0) && id === last) return this.lastValue;
    const value = this.entries.get(id);
    if (value !== undefined && this.idOf !== null && !this.foreign) {
      this.lastId = this.idOf(value);
      this.lastValue = value;
    }
    return value;
  }

  /** Forgets the last `peek`: called by every change but a use. */
  private changed(): void {
    this.lastId = null;
    this.lastValue = undefined;
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
    if (!entries.delete(id) && entries.size >= this.max) {
      for (const oldest of entries.keys()) {
        entries.delete(oldest);
        break;
      }
    }
    entries.set(id, value);
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
