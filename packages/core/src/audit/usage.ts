// Usage tracking: per-key request counts by day and outcome, and when each key was last used.
// Counted in process memory on the request path (an increment), written to the store in batches.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { OUTCOME_CODES, type OutcomeCode } from '../verify/outcome.js';
import { PeriodicWriter } from '../util/batching.js';
import { tillError, tillMessage } from '../errors.js';
import type { KeyStore, KeyUsage, UsageBatchItem } from '../store/types.js';

// The shapes usage is stored in belong to the store contract; named here too for their readers.
export type { KeyUsage, UsageBatchItem };

export interface UsageOptions {
  /** Milliseconds between writes of gathered counts. Default 10,000. */
  interval?: number;
  /**
   * Most keys counted between two writes: when more keys than this are used within one interval, the
   * write starts at once, so tracking holds a bounded number of counters however traffic spreads over
   * keys. Default 10,000.
   */
  maxKeys?: number;
}

const VALID_INDEX = OUTCOME_CODES.indexOf('VALID');

/** Most keys in one write to the store. */
export const USAGE_CHUNK = 500;

export const OUTCOME_INDEX: Readonly<Record<OutcomeCode, number>> = Object.freeze(
  Object.fromEntries(OUTCOME_CODES.map((c, i) => [c, i])) as Record<OutcomeCode, number>,
);

/** Counts an outcome on a counter. */
export function countOutcome(counter: UsageCounter, code: OutcomeCode): void {
  const i = OUTCOME_INDEX[code];
  if (i === VALID_INDEX) counter.valid++;
  else (counter.others ??= new Array<number>(OUTCOME_CODES.length).fill(0))[i]!++;
}

/** One key's counts since the last write. */
export class UsageCounter {
  /** VALID outcomes (nearly all of them) since the last write. */
  valid = 0;
  /** Other outcomes by OUTCOME_INDEX, made on the first one: most keys never need it. */
  others: number[] | null = null;
  /** Last VALID verification, epoch ms; 0 when none since the last write. */
  last = 0;
}

/** The UTC day of an instant, `YYYY-MM-DD`. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * Gathers counts in memory and writes them every `interval`, so tracking costs an increment per
 * request and one store write per key per interval, never one per request. Counts are filed under
 * the UTC day of the write's window start (off by at most one interval at midnight). A failed write
 * is retried with the next one; counts are lost only if the process ends first.
 */
export class UsageTracker extends PeriodicWriter {
  /** Counters of the keys used since the last write, and nothing else. */
  private counters = new Map<string, UsageCounter>();
  /**
   * The key counted last and its counter, until the next write: a run of requests with one key counts
   * with one comparison (the cached path passes the key's own id string each time) instead of a lookup.
   */
  private lastId: string | null = null;
  private lastCounter: UsageCounter | null = null;
  private readonly maxKeys: number;
  private windowStart: number;
  /** This tracker's name in chunk ids, and the next chunk's number. */
  private readonly writer = randomBytes(6).toString('base64url');
  private seq = 0;
  /** Chunks whose write failed: perhaps made, perhaps not; sent again with their ids. */
  private unsettled: Array<{ readonly id: string; readonly items: UsageBatchItem[] }> = [];
  private carry: UsageBatchItem[] = [];

  constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    logger: Logger,
    options: UsageOptions = {},
  ) {
    const { interval = 10_000, maxKeys = 10_000 } = options;
    for (const [name, value] of [
      ['interval', interval],
      ['maxKeys', maxKeys],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw tillError('INVALID_OPTIONS', 'createTill', `usage.${name} must be a positive integer`);
    }
    super(logger, interval);
    this.maxKeys = maxKeys;
    this.windowStart = clock();
  }

  /** Counts a VALID outcome of a key: the verifier's cached path. */
  countValid(keyId: string, now: number): void {
    let counter = this.lastCounter;
    if (keyId !== this.lastId || counter === null) {
      counter = this.counters.get(keyId) ?? this.counter(keyId);
      this.lastId = keyId;
      this.lastCounter = counter;
    }
    counter.valid++;
    counter.last = now;
  }

  /** The counter of a key since the last write (a new one after each write). */
  counter(keyId: string): UsageCounter {
    let counter = this.counters.get(keyId);
    if (counter === undefined) {
      // The first count after a write opens the window whose day the counts are filed under.
      if (this.counters.size === 0) this.windowStart = this.clock();
      else if (this.counters.size >= this.maxKeys) void this.flush();
      counter = new UsageCounter();
      this.counters.set(keyId, counter);
      this.schedule();
    }
    return counter;
  }

  /** Writes what was counted; resolves once written (a failed write keeps its counts for the next, never counted twice). */
  override flush(): Promise<void> {
    const now = this.clock();
    const day = dayOf(this.windowStart);
    this.windowStart = now;
    const batch: UsageBatchItem[] = this.carry;
    this.carry = [];
    // Every counter is taken: between writes the tracker holds only the keys used since.
    const counters = this.counters;
    this.counters = new Map();
    this.lastId = null;
    this.lastCounter = null;
    for (const [id, counter] of counters) {
      let any = counter.valid > 0;
      const counts: Partial<Record<OutcomeCode, number>> = {};
      if (any) counts.VALID = counter.valid;
      counter.valid = 0;
      const others = counter.others;
      if (others !== null) {
        for (let i = 0; i < others.length; i++) {
          const n = others[i]!;
          if (n > 0) {
            counts[OUTCOME_CODES[i]!] = n;
            others[i] = 0;
            any = true;
          }
        }
      }
      if (any) batch.push({ keyId: id, day, counts, lastUsedAt: counter.last === 0 ? null : counter.last });
    }
    this.pause(); // until the next count
    if (batch.length === 0 && this.unsettled.length === 0) return this.pending;
    return this.enqueue(
      () => this.write(batch),
      () => {},
      tillMessage('usage', 'usage counts could not be written; retrying with the next batch'),
    );
  }

  /**
   * Writes in chunks, one after the other: a busy process has counts for a great many keys after one
   * interval, and one write for all of them would hold them all in flight at once (on Redis, one
   * pipeline per key for 200,000 keys ran out of memory). Each chunk has an id (`<writer>.<seq>`): a
   * write that timed out may still have been made, so a failed chunk is sent again with the same id,
   * which the store applies at most once; and until it is settled, no newer counts are sent (they
   * wait, folded, in `carry`), since the store keeps only the newest id per writer and key.
   * Rejects when anything is left for the next write.
   */
  private async write(batch: UsageBatchItem[]): Promise<void> {
    const failed: Array<{ readonly id: string; readonly items: UsageBatchItem[] }> = [];
    let error: unknown = null;
    for (const chunk of this.unsettled) {
      try {
        await this.store.recordUsage(chunk.items, chunk.id);
      } catch (e) {
        failed.push(chunk);
        error = e;
      }
    }
    this.unsettled = failed;
    if (failed.length > 0) {
      this.carry = mergeBatches(this.carry, batch);
    } else {
      for (let i = 0; i < batch.length; i += USAGE_CHUNK) {
        const chunk = { id: `${this.writer}.${(this.seq++).toString(36)}`, items: batch.slice(i, i + USAGE_CHUNK) };
        try {
          await this.store.recordUsage(chunk.items, chunk.id);
        } catch (e) {
          this.unsettled.push(chunk);
          error = e;
        }
      }
    }
    if (error !== null) {
      this.schedule(); // the timer makes the next attempt, counts or not
      throw error;
    }
  }
}

/** A usage batch id, `<writer>.<seq in base 36>`, as [writer, seq]; throws on anything else. */
export function parseBatchId(id: string): [string, number] {
  const m = /^([A-Za-z0-9_-]{1,32})\.([0-9a-z]{1,10})$/.exec(id);
  if (m === null) throw tillError('INVALID_ARGUMENT', 'usage', 'a batch id is <writer>.<seq in base 36>');
  return [m[1]!, parseInt(m[2]!, 36)];
}

/** Batches folded by key and day. */
export function mergeBatches(...batches: UsageBatchItem[][]): UsageBatchItem[] {
  const merged = new Map<string, { keyId: string; day: string; counts: Partial<Record<OutcomeCode, number>>; lastUsedAt: number | null }>();
  for (const batch of batches) {
    for (const item of batch) {
      const k = `${item.keyId}\n${item.day}`;
      const into = merged.get(k) ?? { keyId: item.keyId, day: item.day, counts: {}, lastUsedAt: null };
      for (const [code, n] of Object.entries(item.counts) as Array<[OutcomeCode, number]>) into.counts[code] = (into.counts[code] ?? 0) + n;
      if (item.lastUsedAt !== null && (into.lastUsedAt === null || item.lastUsedAt > into.lastUsedAt)) into.lastUsedAt = item.lastUsedAt;
      merged.set(k, into);
    }
  }
  return [...merged.values()];
}
