// The expiry index on Redis: one sorted set per Cluster slot, in the slot of the keys it indexes.
import { tillError } from '../errors.js';
import { keySlot } from '../util/cluster-slot.js';
import { byExpiry, checkExpiringQuery } from '../store/expiry.js';
import type { ExpiringEntry, ExpiringPage, ExpiringQuery, ReindexResult } from '../store/types.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';

const SLOTS = 16384;

let tags: string[] | undefined;

/**
 * A hash tag in each Cluster slot: `x<n in base 36>` for the smallest n that falls in it. Every process
 * computes the same table (about 170,000 CRC16s of a few bytes, once): a key's shard of the index is
 * `{<tag of its slot>}`, so the script that changes the key's record changes its index entry too.
 */
/** The expiry index's shard and reminders in the slot of the record of `id` (a key id, or another subject such as an identity's). */
export function expiryKeysOf(layout: Layout, id: string): { tag: string; shard: string; reminded: string } {
  const tag = slotTag(keySlot(id));
  return { tag, shard: layout.expiries(tag), reminded: layout.reminded(tag) };
}

export function slotTag(slot: number): string {
  if (tags === undefined) {
    const table = new Array<string>(SLOTS);
    let filled = 0;
    for (let n = 0; filled < SLOTS; n++) {
      const tag = `x${n.toString(36)}`;
      const s = keySlot(tag);
      if (table[s] === undefined) {
        table[s] = tag;
        filled++;
      }
    }
    tags = table;
  }
  return tags[slot]!;
}

/** Ids asked for per step of a rebuild (ZSCAN's COUNT: a hint), and shards read at once by a query. */
const REINDEX_PAGE = 500;
const SHARD_READS = 256;
/** A store holding at most this many keys and no sign of an index builds it on first use (bounded); more waits for `till audit --reindex`. */
export const AUTO_REINDEX_MAX = 10_000;

/**
 * The index: `<ns>{<tag>}:exp` per slot (ids scored by indexed expiry) with `<ns>{<tag>}:exp:sent` beside
 * it (ids scored by the expiry whose reminder was claimed), written by the record's own scripts; the set
 * `<ns>exp:shards` names the tags in use (written before the record, as the id indexes are: a crash
 * between leaves a shard named and empty, never entries nobody reads); `<ns>exp:indexed` says the
 * records written before the index existed have been indexed.
 */
export class RedisExpiries {
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
  ) {}

  /** The shard and reminders of key `id`, and its tag. */
  of(id: string): { tag: string; shard: string; reminded: string } {
    return expiryKeysOf(this.layout, id);
  }

  /** Names the shard of key `id` as one in use; before the script that may put an entry in it. */
  async register(id: string): Promise<void> {
    const { tag } = this.of(id);
    await this.commands.run(() => this.commands.client.sadd(this.layout.expiryShards, tag));
  }

  async range(query: ExpiringQuery): Promise<ExpiringPage> {
    const { from, to, limit } = checkExpiringQuery(query, 'redis');
    const complete = await this.ensureIndexed();
    const client = this.commands.client;
    const shardTags = await this.commands.run(() => client.smembers(this.layout.expiryShards));
    const entries: ExpiringEntry[] = [];
    let more = false;
    for (let i = 0; i < shardTags.length; i += SHARD_READS) {
      // Each shard's first `limit` in range: the soonest `limit` of all are among them.
      const rows = await Promise.all(
        shardTags
          .slice(i, i + SHARD_READS)
          .map((tag) => this.commands.run(() => client.zrangebyscore(this.layout.expiries(tag), from, to, 'WITHSCORES', 'LIMIT', 0, limit + 1))),
      );
      for (const row of rows) {
        if (row.length / 2 > limit) more = true;
        for (let j = 0; j < row.length; j += 2) entries.push({ id: row[j]!, expiresAt: Number(row[j + 1]) });
      }
      // Never more than `limit` kept between steps, however many shards there are.
      entries.sort(byExpiry);
      if (entries.length > limit) {
        more = true;
        entries.length = limit;
      }
    }
    return { entries, more, complete };
  }

  async claim(id: string, expiresAt: number): Promise<boolean> {
    if (typeof id !== 'string' || id === '' || !Number.isSafeInteger(expiresAt))
      throw tillError('INVALID_ARGUMENT', 'redis', 'claimReminder: an id and an integer expiry are required');
    const { shard, reminded } = this.of(id);
    return (await this.commands.run(() => this.commands.client.tillClaimReminder(shard, reminded, id, expiresAt))) === 1;
  }

  /**
   * Indexes every key in the store's id index from its record, about REINDEX_PAGE at a time; then marks
   * the index built. `checked` counts ids as the scan returned them (an id may come twice under churn).
   */
  async reindex(): Promise<ReindexResult> {
    const client = this.commands.client;
    const all = this.layout.index(null);
    let checked = 0;
    let indexed = 0;
    // ZSCAN: every id present for the whole walk is returned at least once, whatever is inserted or
    // removed meanwhile (paging by rank would skip ids when others are removed); an id returned twice
    // is harmless, the step is idempotent. A key inserted meanwhile is indexed by its own insert.
    let cursor = '0';
    do {
      const [next, rows] = await this.commands.run(() => client.zscan(all, cursor, 'COUNT', REINDEX_PAGE));
      cursor = next;
      const ids: string[] = [];
      for (let i = 0; i < rows.length; i += 2) ids.push(rows[i]!);
      const results = await Promise.all(
        ids.map((id) => {
          const { shard, reminded } = this.of(id);
          return this.commands.run(() => client.tillReindexExpiry(this.layout.record(id), shard, reminded, id));
        }),
      );
      const used = new Set<string>();
      results.forEach((r, i) => {
        if (r === 1) {
          indexed++;
          used.add(this.of(ids[i]!).tag);
        }
      });
      if (used.size > 0) await this.commands.run(() => client.sadd(this.layout.expiryShards, ...used));
      checked += ids.length;
    } while (cursor !== '0');
    await this.commands.run(() => client.set(this.layout.expiryIndexed, '1'));
    return { checked, indexed };
  }

  /**
   * Whether every key is indexed: yes once a rebuild finished here. A store without that mark may hold
   * keys written before the index existed: with at most AUTO_REINDEX_MAX keys it is built now (once);
   * with more, the page says it is not complete and `till audit --reindex` builds it.
   */
  private async ensureIndexed(): Promise<boolean> {
    const client = this.commands.client;
    if ((await this.commands.run(() => client.exists(this.layout.expiryIndexed))) === 1) return true;
    const count = await this.commands.run(() => client.zcard(this.layout.index(null)));
    if (count > AUTO_REINDEX_MAX) return false;
    await this.reindex();
    return true;
  }
}
