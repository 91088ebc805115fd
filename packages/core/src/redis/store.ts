// A KeyStore on Redis or Redis Cluster through ioredis, with command timeouts and fail-fast when down.
import type { Cluster, Redis } from 'ioredis';
import { TillError, storeUnavailable } from '../errors.js';
import { decodeRecord, type KeyRecord } from '../record.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from '../store/cursor.js';
import type { ChargeOutcome, LimitState } from '../limits.js';
import type { ConsumeRequest, ConsumeResult, InvalidationListener, KeyPage, KeyStore, ListKeysQuery } from '../store/types.js';
import { CONSUME_SCRIPT, REPLACE_SCRIPT } from './scripts.js';

export type RedisClient = Redis | Cluster;

export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster` client. The application owns it: `close()` leaves it open. */
  client: RedisClient;
  /** Prefix of every Redis key and channel this store uses. Default `till:`. */
  namespace?: string;
  /** Milliseconds a command may take before the store counts Redis as unavailable. Default 1000. */
  commandTimeout?: number;
  /**
   * Client for the invalidation subscription. Default: `client.duplicate()`, made on the first
   * subscription and closed by `close()`.
   */
  subscriber?: RedisClient;
  /**
   * Whose clock rate limits and credit refills follow: `redis` (default), the server's, so that
   * processes on hosts with skewed clocks share one time line; or `caller`, the `now` each request
   * carries (tests with a controlled clock).
   */
  limitClock?: 'redis' | 'caller';
}

type ScriptClient = RedisClient & {
  tillReplace(record: string, json: string, version: number, channel: string, id: string): Promise<number>;
  tillConsume(numberOfKeys: number, ...args: Array<string | number>): Promise<Array<string | number>>;
};

// Statuses in which ioredis would only queue a command: answering "unavailable" at once beats a hang.
const DOWN = new Set(['reconnecting', 'close', 'end']);
const CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Connection is closed|Stream isn't writeable|enableOfflineQueue|max retries|MaxRetriesPerRequest|ClusterAllFailed|Failed to refresh slots|CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN/i;

/**
 * Layout, with `till:` as the namespace:
 * - `till:{<id>}:k`: the record as JSON. Everything about one key shares the `{<id>}` hash tag so
 *   one script can read and change it atomically on a single Redis and on Cluster alike.
 * - `till:idx:all`, `till:idx:owner:<owner>`: sorted sets of ids scored by creation time, read by
 *   admin paths only. They live in other slots, so they are written beside the record, not with it:
 *   the index is written first, so a crash between the two leaves an entry that `list` skips,
 *   never a key that `list` cannot find.
 * - `till:invalidate`: the channel on which every change publishes the id.
 */
export class RedisStore implements KeyStore {
  readonly kind = 'redis';
  private readonly client: ScriptClient;
  private readonly ns: string;
  private readonly timeout: number;
  private readonly channel: string;
  private subscriber: RedisClient | undefined;
  private readonly ownsSubscriber: boolean;
  private readonly listeners = new Set<InvalidationListener>();
  private subscribed = false;
  private detach: (() => void) | undefined;
  private readonly callerClock: boolean;

  constructor(options: RedisStoreOptions) {
    if (!options || typeof options !== 'object' || !options.client || typeof (options.client as Redis).get !== 'function') {
      throw new TillError('INVALID_OPTIONS', '[till] [redis] RedisStore needs { client }: an ioredis Redis or Cluster instance');
    }
    const { namespace = 'till:', commandTimeout = 1000, limitClock = 'redis' } = options;
    if (limitClock !== 'redis' && limitClock !== 'caller') {
      throw new TillError('INVALID_OPTIONS', '[till] [redis] limitClock must be "redis" or "caller"');
    }
    this.callerClock = limitClock === 'caller';
    if (typeof namespace !== 'string' || /[{}]/.test(namespace)) {
      throw new TillError('INVALID_OPTIONS', '[till] [redis] namespace must be a string without braces (braces would change the hash slot)');
    }
    if (!Number.isFinite(commandTimeout) || commandTimeout <= 0) {
      throw new TillError('INVALID_OPTIONS', '[till] [redis] commandTimeout must be a positive number of milliseconds');
    }
    this.client = options.client as ScriptClient;
    this.ns = namespace;
    this.timeout = commandTimeout;
    this.channel = `${namespace}invalidate`;
    this.subscriber = options.subscriber;
    this.ownsSubscriber = options.subscriber === undefined;
    if (typeof this.client.tillReplace !== 'function') {
      this.client.defineCommand('tillReplace', { numberOfKeys: 1, lua: REPLACE_SCRIPT });
    }
    if (typeof this.client.tillConsume !== 'function') {
      this.client.defineCommand('tillConsume', { lua: CONSUME_SCRIPT });
    }
  }

  /** The Redis key of a record. */
  recordKey(id: string): string {
    return `${this.ns}{${id}}:k`;
  }

  private indexKey(ownerId: string | null): string {
    return ownerId === null ? `${this.ns}idx:all` : `${this.ns}idx:owner:${ownerId}`;
  }

  async get(id: string): Promise<KeyRecord | null> {
    const json = await this.run(() => this.client.get(this.recordKey(id)));
    if (json === null) return null;
    try {
      return decodeRecord(json);
    } catch (cause) {
      throw new TillError('STORE_ERROR', `[till] [redis] record of key ${id} is corrupt`, { cause });
    }
  }

  async insert(record: KeyRecord): Promise<void> {
    const json = JSON.stringify(record);
    await this.run(async () => {
      await this.client.zadd(this.indexKey(null), record.createdAt, record.id);
      if (record.ownerId !== null) await this.client.zadd(this.indexKey(record.ownerId), record.createdAt, record.id);
      const ok = await this.client.set(this.recordKey(record.id), json, 'NX');
      if (ok !== 'OK') throw new TillError('KEY_EXISTS', `[till] [redis] key ${record.id} exists`);
    });
  }

  async replace(record: KeyRecord, expectedVersion: number): Promise<boolean> {
    const result = await this.run(() =>
      this.client.tillReplace(this.recordKey(record.id), JSON.stringify(record), expectedVersion, this.channel, record.id),
    );
    if (result === -1) throw new TillError('KEY_NOT_FOUND', `[till] [redis] no key ${record.id}`);
    return result === 1;
  }

  async consume(request: ConsumeRequest): Promise<ConsumeResult> {
    const subject = request.subject;
    if (typeof subject !== 'string' || subject.length === 0 || /[{}]/.test(subject)) {
      throw new TillError('INVALID_ARGUMENT', '[till] [redis] a limit subject must be a non-empty string without braces');
    }
    const tag = `${this.ns}{${subject}}:`;
    const isKey = request.keyVersion !== undefined;
    const keys = isKey ? [this.recordKey(subject), `${tag}cr`] : [];
    const args: Array<string | number> = [this.callerClock ? request.now : '', isKey ? request.keyVersion! : '', request.cost ?? 0, request.limits.length];
    for (const charge of request.limits) {
      keys.push(`${tag}rl:${charge.bucket ?? charge.name}`);
      args.push(charge.limit, charge.window, charge.cost);
    }
    const reply = await this.run(() => this.client.tillConsume(keys.length, ...keys, ...args));
    const outcome = reply[0] as string;
    if (outcome === 'NOT_FOUND') return { outcome };
    if (outcome === 'CHANGED') {
      try {
        return { outcome, record: decodeRecord(reply[1] as string) };
      } catch (cause) {
        throw new TillError('STORE_ERROR', `[till] [redis] record of key ${subject} is corrupt`, { cause });
      }
    }
    const limits: LimitState[] = request.limits.map((charge, i) => ({
      name: charge.name,
      limit: charge.limit,
      window: charge.window,
      remaining: Number(reply[3 + 2 * i]),
      reset: Number(reply[4 + 2 * i]),
    }));
    const credits = Number(reply[1]);
    const retry = Number(reply[2]);
    return { outcome: outcome as ChargeOutcome, limits, credits: credits < 0 ? null : credits, retryAfter: retry < 0 ? null : retry };
  }

  async list(query: ListKeysQuery = {}): Promise<KeyPage> {
    const limit = pageSize(query.limit);
    const after = decodeCursor(query.cursor);
    const index = this.indexKey(query.ownerId ?? null);
    const keys: KeyRecord[] = [];
    let offset = 0;
    const batch = limit + 1;
    for (;;) {
      const rows = await this.run(() =>
        this.client.zrangebyscore(index, after ? after.createdAt : '-inf', '+inf', 'WITHSCORES', 'LIMIT', offset, batch),
      );
      offset += rows.length / 2;
      const ids: string[] = [];
      for (let i = 0; i < rows.length; i += 2) {
        if (isAfter(Number(rows[i + 1]), rows[i]!, after)) ids.push(rows[i]!);
      }
      // One GET per record, not MGET: on Cluster the records live in different slots.
      const records = await Promise.all(ids.map((id) => this.get(id)));
      for (const record of records) {
        if (record === null || (query.ownerId !== undefined && record.ownerId !== query.ownerId)) continue;
        if (keys.length === limit) return { keys, cursor: encodeCursor(keys[keys.length - 1]!) };
        keys.push(record);
      }
      if (rows.length / 2 < batch) return { keys };
    }
  }

  onInvalidate(listener: InvalidationListener): () => void {
    this.listeners.add(listener);
    if (!this.subscribed) this.subscribe();
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.subscribed = false;
    this.detach?.();
    this.detach = undefined;
    if (this.subscriber && this.ownsSubscriber) {
      const sub = this.subscriber;
      this.subscriber = undefined;
      sub.disconnect();
    }
  }

  private subscribe(): void {
    this.subscribed = true;
    const sub = (this.subscriber ??= this.client.duplicate() as RedisClient);
    const onMessage = (channel: string, id: string) => {
      if (channel === this.channel) this.emit(id);
    };
    sub.on('message', onMessage);
    // Subscribed on every (re)connection, and only once Redis confirms it are cached records
    // dropped: anything cached before that moment, at start or during an outage, may have missed
    // its message. A SUBSCRIBE that fails (Redis down at start) is tried again on the next
    // connection, rather than left to ioredis, which only restores subscriptions it saw confirmed.
    const confirm = () => {
      sub.subscribe(this.channel).then(
        () => this.emit(null),
        () => {},
      );
    };
    // Reconnection is ioredis's job; an unhandled 'error' event would crash the process.
    const onError = () => {};
    sub.on('ready', confirm);
    sub.on('error', onError);
    if (sub.status === 'ready') confirm();
    // A client made with lazyConnect (and its duplicate) waits for a first command; a subscriber
    // that never connected would never hear a revocation.
    else if (sub.status === 'wait') sub.connect().catch(() => {});
    this.detach = () => {
      sub.off('message', onMessage);
      sub.off('ready', confirm);
      sub.off('error', onError);
      sub.unsubscribe(this.channel).catch(() => {});
    };
  }

  private emit(id: string | null): void {
    for (const listener of this.listeners) listener(id);
  }

  /** Runs a command with a deadline, and turns connection trouble into a STORE_UNAVAILABLE error. */
  private run<T>(command: () => Promise<T>): Promise<T> {
    if (DOWN.has(this.client.status)) return Promise.reject(storeUnavailable('redis', new Error(`client is ${this.client.status}`)));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(storeUnavailable('redis', new Error(`no answer within ${this.timeout} ms`))), this.timeout);
      timer.unref?.();
      command().then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (error instanceof TillError) reject(error);
          // A command that failed while the client was not connected failed for that reason.
          else if (this.client.status !== 'ready' || (error instanceof Error && CONNECTION_ERROR.test(`${error.name} ${error.message}`))) reject(storeUnavailable('redis', error));
          else reject(new TillError('STORE_ERROR', `[till] [redis] command failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
        },
      );
    });
  }
}
