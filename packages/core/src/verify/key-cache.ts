// The verifier's caches: least recently used entries go first, kept in one Map (whose iteration order
// is its insertion order: a use moves an entry to the end, eviction takes the first). Nothing else per
// entry, where lru-cache keeps two lists and two index arrays beside its Map, and its `peek` checks for
// background fetches and staleness the verifier does not use: the cached path's lookup is one Map.get.

export class KeyCache<V> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly max: number) {}

  /** The entry of `id`, without counting it as a use. */
  peek(id: string): V | undefined {
    return this.entries.get(id);
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
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  /** Drops every entry `drop` says to (a walk of the whole cache: for rare changes, like a role's or an identity's). */
  deleteWhere(drop: (value: V) => boolean): void {
    for (const [id, value] of this.entries) if (drop(value)) this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
  }
}
