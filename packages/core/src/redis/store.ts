// A KeyStore on Redis or Redis Cluster through ioredis, with command timeouts and fail-fast when down.
// One file because it is one class, the KeyStore on Redis, whose methods share its connection, command timeouts and error mapping.
import type { Cluster, Redis } from 'ioredis';
import { TillError, storeUnavailable, tillError } from '../errors.js';
import { consoleLogger, type Logger } from '../util/logger.js';
import { compactInfo, decodeRecord, encodeRecord, expandInfo, type KeyInfo, type KeyRecord } from '../store/record.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from '../store/cursor.js';
import type { ChargeOutcome, Credits, LimitState } from '../limits/rules.js';
import type { ConsumeRequest, ConsumeResult, InvalidationListener, KeyPage, KeyStore, ListKeysQuery, SubscriptionListener } from '../store/types.js';
import { CONSUME_SCRIPT, EVENTS_SCRIPT, INSERT_SCRIPT, LOG_SCRIPT, REFUND_SCRIPT, REMOVE_SCRIPT, REPLACE_SCRIPT, USAGE_SCRIPT } from './scripts.js';
import { dayOf, parseBatchId, type KeyUsage, type UsageBatchItem } from '../audit/usage.js';
import { OUTCOME_CODES, type OutcomeCode } from '../verify/outcome.js';
import { isUnknownId } from '../audit/writer.js';
import { CHANGE_TYPES, normalizeQuery, matches, type AuditEntry, type AuditPage, type AuditQuery, type AuditRecord } from '../audit/trail.js';

const OUTCOMES: ReadonlySet<string> = new Set(OUTCOME_CODES);

export type RedisClient = Redis | Cluster;

export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster` client. The application owns it: `close()` leaves it open. */
  client: RedisClient;
  /**
   * Whether `close()` also closes `client` (gracefully, after its pending replies): for a script that
   * hands the client to the store for good. Default false: the application closes its own client.
   */
  closeClient?: boolean;
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
  /**
   * Most entries in each of the store's two logs, changes (`till:audit`) and security events; the
   * oldest go first. Default 100,000.
   */
  auditMaxLength?: number;
  /** Most entries in each key's change trail, and apart from it in its list of security events. Default 1,000. */
  auditPerKeyMaxLength?: number;
  /**
   * Replicas that must have a revocation, a disabling, a deletion, an update or a rotation before the key
   * manager's call resolves: Redis replicates asynchronously, so a change its primary acknowledged is
   * lost if the primary fails before a replica has it, and a revoked key works again on the promoted
   * replica. With `replicas` set, those changes are followed by WAIT (`confirmChanges()`); when fewer
   * replicas confirm within `replicaTimeout` (ms, default 500) the change stays made on the primary and
   * the call rejects with TillError `NOT_REPLICATED`: not yet safe from a failover (a rotation's error
   * carries the rotation, see `unconfirmedRotation`). Creations and enablings do not wait (a lost one
   * fails closed: the key is refused). Default 0: no wait.
   */
  replicas?: number;
  replicaTimeout?: number;
  /**
   * Whether charges (credits and rate limits spent by verifications) also wait for `replicas`: without
   * it, charges acknowledged by the primary but not yet copied are lost in a failover and the promoted
   * replica hands those credits out again. With it, each batch of charges (one script call per subject
   * and event-loop turn) is followed by one WAIT per turn, shared by every batch whose reply arrived in
   * it, and a request is admitted only once its charge is confirmed: when fewer replicas confirm within
   * `replicaTimeout` its charge is refunded on the primary and the store answers NOT_REPLICATED, which
   * the verifier turns into STORE_UNAVAILABLE (503): never admitted, never left to per-process limits.
   * Needs `replicas` >= 1. Default false.
   */
  chargesWait?: boolean;
  /**
   * What to do when Redis may evict Till's keys (`maxmemory-policy` `allkeys-*`: under memory pressure
   * it drops any key, key records and credit counters included): `warn` (default) logs it once through
   * `logger`; `refuse` makes every command of this store fail with TillError STORE_ERROR. Checked once,
   * before the store's first command (INFO memory, else CONFIG GET; on Cluster, of the node ioredis
   * picks). `noeviction` and `volatile-*` pass.
   */
  eviction?: 'warn' | 'refuse';
  /** Where the store's warnings go (the eviction check; charges going unconfirmed). Default: the console. */
  logger?: Logger;
}

/** Policies under which Redis never evicts a key without a TTL: Till's records and credits have none. */
const SAFE_POLICIES = /^(noeviction|volatile-(lru|lfu|random|ttl))$/;

type ScriptClient = RedisClient & {
  tillReplace(record: string, trail: string, json: string, version: number, channel: string, id: string, entry: string, cap: number): Promise<[number, string?, number?, string?]>;
  tillInsert(record: string, trail: string, json: string, entry: string, cap: number): Promise<[number, string?]>;
  tillRemove(record: string, credits: string, trail: string, version: number, channel: string, id: string, entry: string, cap: number): Promise<[number, string?, string?, number?, string?]>;
  tillEvents(events: string, record: string, trail: string, cap: number, ...entries: string[]): Promise<number>;
  tillLog(changes: string, security: string, which: 1 | 2, cap: number, ...entries: string[]): Promise<string[]>;
  tillUsage(...args: Array<string | number>): Promise<number>;
  tillConsume(numberOfKeys: number, ...args: Array<string | number>): Promise<Array<string | number>>;
  tillRefund(numberOfKeys: number, ...args: Array<string | number>): Promise<number>;
};

// Statuses in which ioredis would only queue a command: answering "unavailable" at once beats a hang.
const DOWN = new Set(['reconnecting', 'close', 'end']);
const CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Connection is closed|Stream isn't writeable|enableOfflineQueue|max retries|MaxRetriesPerRequest|ClusterAllFailed|Failed to refresh slots|CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN/i;

/** Delays between tries of a SUBSCRIBE that Redis refused (doubling from the first to the last). */
const RESUBSCRIBE_MIN_MS = 250;
const RESUBSCRIBE_MAX_MS = 30_000;

/** Closes a client gracefully (its pending replies first), or at once when it is not connected. */
function quit(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect();
    return Promise.resolve();
  }
  return client.quit().then(
    () => {},
    () => client.disconnect(),
  );
}

/** Most security events written in one script call. */
const EVENTS_PER_CALL = 200;

/** Whether audit id `a` (`<ms>-<seq>`) comes before `b`. */
function idBefore(a: string, b: string): boolean {
  const i = a.indexOf('-');
  const j = b.indexOf('-');
  const ams = Number(a.slice(0, i));
  const bms = Number(b.slice(0, j));
  return ams < bms || (ams === bms && Number(a.slice(i + 1)) < Number(b.slice(j + 1)));
}

/** Two lists of `<id> <json>` lines, each oldest first, as one. */
function mergeById(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  const idOf = (line: string) => line.slice(0, line.indexOf(' '));
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && !idBefore(idOf(b[j]!), idOf(a[i]!)))) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  return out;
}

/** Days of usage counts kept per key (`till:{<id>}:u:<day>` expires after them). */
const USAGE_DAYS_KEPT = 100;

interface Batch {
  readonly request: ConsumeRequest;
  readonly policy: string;
  readonly items: Array<{ request: ConsumeRequest; resolve: (result: ConsumeResult) => void; reject: (error: unknown) => void }>;
}

const shapes = new WeakMap<readonly unknown[], string>();

/** What charges of one batch must share besides their subject: each limit's bucket, name and policy. */
function shapeOf(limits: ConsumeRequest['limits']): string {
  let shape = shapes.get(limits);
  if (shape === undefined) {
    shape = limits.map((c) => `${c.bucket ?? c.name}:${c.name}:${c.limit}:${c.window}`).join('\n');
    shapes.set(limits, shape);
  }
  return shape;
}

/**
 * An audit entry as stored: compact JSON without what the store knows otherwise (the time is the
 * entry id's; the key id is a trail's own, and the snapshots' `id`; the owner is the snapshots') or
 * what holds its default (null actor, reason and snapshots; snapshots compacted like records).
 * `withKey` false: for a key's own trail.
 */
function encodeEntry(audit: AuditRecord, withKey: boolean): string {
  const snapshot = audit.after ?? audit.before;
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(audit)) {
    if (value === undefined || value === null || field === 'at' || (field === 'keyId' && !withKey)) continue;
    if (field === 'ownerId' && snapshot && snapshot.ownerId === value) continue;
    if (field === 'before' || field === 'after') {
      const { id, ...rest } = compactInfo(value as KeyInfo);
      out[field] = id === audit.keyId ? rest : { id, ...rest };
    } else {
      out[field] = value;
    }
  }
  return JSON.stringify(out);
}

const trailEntry = (audit: AuditRecord | undefined): string => (audit === undefined ? '' : encodeEntry(audit, false));

/** A stored entry as an audit entry; its time is its id's (the Redis server's clock). */
function parseEntry(id: string, json: string | undefined, trailOf: string | null): AuditEntry | null {
  if (json === undefined) return null;
  try {
    const stored = JSON.parse(json) as Record<string, unknown>;
    const keyId = (stored.keyId as string | undefined) ?? trailOf;
    const entry = { keyId, actor: null, reason: null, ...stored, id, at: Number(id.slice(0, id.indexOf('-'))) } as Record<string, unknown>;
    // A change has both snapshots (null for none); a security event has neither.
    const change = (CHANGE_TYPES as readonly unknown[]).includes(stored.type);
    for (const field of ['before', 'after'] as const) {
      if (stored[field] !== undefined) entry[field] = expandInfo({ id: keyId, ...(stored[field] as Record<string, unknown>) });
      else if (change) entry[field] = null;
    }
    const snapshot = (entry.after ?? entry.before) as KeyInfo | null | undefined;
    if (entry.ownerId === undefined) entry.ownerId = snapshot ? snapshot.ownerId : null;
    return entry as unknown as AuditEntry;
  } catch {
    return null;
  }
}

/** A credit policy as the consume script reads it: `remaining:setAt:generation[:amount:interval]`. */
function creditPolicy(c: Credits): string {
  const head = `${c.remaining}:${c.setAt}:${c.generation}`;
  return c.refill === null ? head : `${head}:${c.refill.amount}:${c.refill.interval}`;
}

/**
 * Layout, with `till:` as the namespace:
 * - `till:{<id>}:audit`: the key's change trail, a list of `<id> <json>` entries, oldest first, capped,
 *   written in the script that makes each change; `till:{<id>}:events`: the security events that named
 *   the key, a list of its own (capped apart: a flood of refusals never pushes a change out).
 * - `till:audit`: the log of every change, a stream; `till:audit:security{till:audit}`: the log of
 *   security events, a stream in the same slot (its hash tag is the first one's whole name), so one
 *   script gives both one id sequence.
 * - `till:{<id>}:k`: the record as compact JSON, `version` first (all a rate-limit charge reads of it);
 *   `till:{<id>}:cr` the live credit count (of the key, or of a rotation chain whose first key it is: every
 *   key of a chain is drawn in that key's slot); `till:{<id>}:rl:<bucket>` the state of each rate limit (a
 *   GCRA debt, expiring once drained); `till:{<id>}:u:<day>` the day's usage counts.
 *   Everything about one key shares the `{<id>}` hash tag so one script can read and change it
 *   atomically on a single Redis and on Cluster alike.
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
  private readonly statusListeners = new Set<SubscriptionListener>();
  private subscribed = false;
  /** Whether the subscription is confirmed and its connection up: see invalidationsLost(). */
  private heard = false;
  private readonly closeClient: boolean;
  private detach: (() => void) | undefined;
  private readonly callerClock: boolean;
  private readonly batches = new Map<string, Batch>();
  private readonly logKey: string;
  /** The security events' log: in the change log's slot (its hash tag is that key's whole name). */
  private readonly securityLogKey: string;
  private readonly usageKey: string;
  private readonly logCap: number;
  private readonly trailCap: number;
  private readonly replicas: number;
  private readonly replicaTimeout: number;
  private readonly chargesWait: boolean;
  private readonly eviction: 'warn' | 'refuse';
  private readonly logger: Logger;
  /** The eviction check: undefined until the first command starts it (again after it could not ask). */
  private evictionCheck: Promise<void> | undefined;
  /** Whether the check has answered (commands then skip it). */
  private evictionKnown = false;
  /** Set when the policy evicts and `eviction` is `refuse`: every command fails with it. */
  private evictionRefusal: TillError | undefined;
  /** The WAIT that confirms the charges answered in this turn of the event loop, once it is sent. */
  private chargeWait: Promise<number> | undefined;
  /** Whether the last charges went unconfirmed (logged once per stretch, and once when it ends). */
  private chargesUnconfirmed = false;

  constructor(options: RedisStoreOptions) {
    if (!options || typeof options !== 'object' || !options.client || typeof (options.client as Redis).get !== 'function') {
      throw tillError('INVALID_OPTIONS', 'redis', 'RedisStore needs { client }: an ioredis Redis or Cluster instance');
    }
    const { namespace = 'till:', commandTimeout = 1000, limitClock = 'redis' } = options;
    if (limitClock !== 'redis' && limitClock !== 'caller') {
      throw tillError('INVALID_OPTIONS', 'redis', 'limitClock must be "redis" or "caller"');
    }
    this.callerClock = limitClock === 'caller';
    const { auditMaxLength = 100_000, auditPerKeyMaxLength = 1000 } = options;
    for (const [name, value] of [['auditMaxLength', auditMaxLength], ['auditPerKeyMaxLength', auditPerKeyMaxLength]] as const) {
      if (!Number.isInteger(value) || value < 1) throw tillError('INVALID_OPTIONS', 'redis', `${name} must be a positive integer`);
    }
    this.logKey = `${namespace}audit`;
    this.securityLogKey = `${namespace}audit:security{${namespace}audit}`;
    this.usageKey = `${namespace}usage:last`;
    this.logCap = auditMaxLength;
    this.trailCap = auditPerKeyMaxLength;
    const { replicas = 0, replicaTimeout = 500 } = options;
    if (!Number.isInteger(replicas) || replicas < 0) throw tillError('INVALID_OPTIONS', 'redis', 'replicas must be a non-negative integer');
    if (!Number.isInteger(replicaTimeout) || replicaTimeout < 1) throw tillError('INVALID_OPTIONS', 'redis', 'replicaTimeout must be a positive integer of milliseconds');
    this.replicas = replicas;
    this.replicaTimeout = replicaTimeout;
    if (options.chargesWait !== undefined && typeof options.chargesWait !== 'boolean') throw tillError('INVALID_OPTIONS', 'redis', 'chargesWait must be true or false');
    if (options.chargesWait === true && replicas === 0) throw tillError('INVALID_OPTIONS', 'redis', 'chargesWait needs replicas (1 or more): it waits for that many replicas');
    this.chargesWait = options.chargesWait === true;
    const { eviction = 'warn', logger = consoleLogger } = options;
    if (eviction !== 'warn' && eviction !== 'refuse') throw tillError('INVALID_OPTIONS', 'redis', 'eviction must be "warn" or "refuse"');
    if (!logger || typeof logger.warn !== 'function') throw tillError('INVALID_OPTIONS', 'redis', 'logger must have warn() and error()');
    this.eviction = eviction;
    this.logger = logger;
    if (typeof namespace !== 'string' || /[{}]/.test(namespace)) {
      throw tillError('INVALID_OPTIONS', 'redis', 'namespace must be a string without braces (braces would change the hash slot)');
    }
    if (!Number.isFinite(commandTimeout) || commandTimeout <= 0) {
      throw tillError('INVALID_OPTIONS', 'redis', 'commandTimeout must be a positive number of milliseconds');
    }
    this.client = options.client as ScriptClient;
    if (options.closeClient !== undefined && typeof options.closeClient !== 'boolean') throw tillError('INVALID_OPTIONS', 'redis', 'closeClient must be true or false');
    this.closeClient = options.closeClient === true;
    this.ns = namespace;
    this.timeout = commandTimeout;
    this.channel = `${namespace}invalidate`;
    this.subscriber = options.subscriber;
    this.ownsSubscriber = options.subscriber === undefined;
    if (typeof this.client.tillReplace !== 'function') {
      this.client.defineCommand('tillReplace', { numberOfKeys: 2, lua: REPLACE_SCRIPT });
    }
    if (typeof this.client.tillInsert !== 'function') {
      this.client.defineCommand('tillInsert', { numberOfKeys: 2, lua: INSERT_SCRIPT });
    }
    if (typeof this.client.tillEvents !== 'function') {
      this.client.defineCommand('tillEvents', { numberOfKeys: 3, lua: EVENTS_SCRIPT });
    }
    if (typeof this.client.tillLog !== 'function') {
      this.client.defineCommand('tillLog', { numberOfKeys: 2, lua: LOG_SCRIPT });
    }
    if (typeof this.client.tillRemove !== 'function') {
      this.client.defineCommand('tillRemove', { numberOfKeys: 3, lua: REMOVE_SCRIPT });
    }
    if (typeof this.client.tillUsage !== 'function') {
      this.client.defineCommand('tillUsage', { numberOfKeys: 1, lua: USAGE_SCRIPT });
    }
    if (typeof this.client.tillConsume !== 'function') {
      this.client.defineCommand('tillConsume', { lua: CONSUME_SCRIPT });
    }
    if (typeof this.client.tillRefund !== 'function') {
      this.client.defineCommand('tillRefund', { lua: REFUND_SCRIPT });
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
      throw tillError('STORE_ERROR', 'redis', `record of key ${id} is corrupt`, { cause });
    }
  }

  async insert(record: KeyRecord, audit?: AuditRecord): Promise<void> {
    const json = encodeRecord(record);
    // Each step under its own timeout: when one times out, the next is never sent (a key whose insert
    // was reported failed is then not written after all, except when the record's own step is the one
    // that timed out: what was sent may still be done).
    await this.run(() => this.client.zadd(this.indexKey(null), record.createdAt, record.id));
    if (record.ownerId !== null) await this.run(() => this.client.zadd(this.indexKey(record.ownerId!), record.createdAt, record.id));
    const [ok] = await this.run(() => this.client.tillInsert(this.recordKey(record.id), this.trailKey(record.id), json, trailEntry(audit), this.trailCap));
    if (ok !== 1) throw tillError('KEY_EXISTS', 'redis', `key ${record.id} exists`);
    if (audit !== undefined) await this.copyToLog(audit);
  }

  async replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const [result, , announced, why] = await this.run(() =>
      this.client.tillReplace(this.recordKey(record.id), this.trailKey(record.id), encodeRecord(record), expectedVersion, this.channel, record.id, trailEntry(audit), this.trailCap),
    );
    if (result === -1) throw tillError('KEY_NOT_FOUND', 'redis', `no key ${record.id}`);
    if (result !== 1) return false;
    if (audit !== undefined) await this.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(record.id, why);
    return true;
  }

  /** A change that is saved but that the services were not told of: the caller must learn it. */
  private notAnnounced(id: string, why: string | undefined): TillError {
    return tillError('NOT_ANNOUNCED', 'redis', `the change to key ${id} is saved, but it could not be announced to running services (PUBLISH refused: ${String(why ?? 'unknown error').slice(0, 200)}): they may keep serving the key as it was until their cache TTL (cache.ttl, 30 s by default) runs out. Give this Redis user the right to publish on ${this.channel} (ACL: +publish &${this.channel})`,
    );
  }

  async remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const [result, , owner, announced, why] = await this.run(() =>
      this.client.tillRemove(this.recordKey(id), `${this.ns}{${id}}:cr`, this.trailKey(id), expectedVersion, this.channel, id, trailEntry(audit), this.trailCap),
    );
    if (result === -1) throw tillError('KEY_NOT_FOUND', 'redis', `no key ${id}`);
    if (result !== 1) return false;
    // The indexes live in other slots: removed after the record, so a crash between leaves an index
    // entry that listing skips (it finds no record), never a record that listing cannot find.
    await this.run(() => this.client.zrem(this.indexKey(null), id)).catch(() => {});
    if (owner) await this.run(() => this.client.zrem(this.indexKey(owner), id)).catch(() => {});
    await this.run(() => this.client.zrem(this.usageKey, id)).catch(() => {});
    if (audit !== undefined) await this.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(id, why);
    return true;
  }

  /**
   * Security events: into the security log, in chunks of one script call each, and into each named
   * key's own list of events (one call per key). Each append is O(1) in Redis, and changes are kept
   * apart: a flood of events trims only events.
   */
  async appendAudit(entries: readonly AuditRecord[]): Promise<void> {
    const byKey = new Map<string, string[]>();
    for (const audit of entries) {
      // An unknown id has no trail to add to (asking costs a command per made-up key of a scan).
      if (audit.keyId !== null && !isUnknownId(audit) && /^[0-9A-Za-z]{16}$/.test(audit.keyId)) {
        const list = byKey.get(audit.keyId);
        if (list === undefined) byKey.set(audit.keyId, [trailEntry(audit)]);
        else list.push(trailEntry(audit));
      }
    }
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < entries.length; i += EVENTS_PER_CALL) {
      const chunk = entries.slice(i, i + EVENTS_PER_CALL).map((audit) => encodeEntry(audit, true));
      writes.push(this.run(() => this.client.tillLog(this.logKey, this.securityLogKey, 2, this.logCap, ...chunk)));
    }
    // One command per key: on Cluster each key's lists live in its own slot.
    for (const [id, list] of byKey) {
      for (let i = 0; i < list.length; i += EVENTS_PER_CALL) {
        const chunk = list.slice(i, i + EVENTS_PER_CALL);
        writes.push(this.run(() => this.client.tillEvents(this.eventsKey(id), this.recordKey(id), this.trailKey(id), this.trailCap, ...chunk)));
      }
    }
    await Promise.all(writes);
  }

  /**
   * Reads the trail: a key's own trail when the query names a key (its changes, written with them,
   * and the security events that named it), the store's log otherwise. Times are the Redis server's:
   * an entry's `at` is its id's.
   */
  async readAudit(query?: AuditQuery): Promise<AuditPage> {
    const q = normalizeQuery(query);
    if (q.cursor !== undefined && !/^\d{1,16}-\d{1,16}$/.test(q.cursor)) throw tillError('INVALID_ARGUMENT', 'audit', 'invalid cursor');
    if (q.keyId !== undefined) return this.readTrail(q.keyId, q);
    const start = q.cursor !== undefined ? `(${q.cursor}` : String(Math.max(0, Math.floor(q.from)));
    const end = q.to >= Number.MAX_SAFE_INTEGER ? '+' : String(Math.max(0, Math.ceil(q.to) - 1));
    // Only the logs that can hold the types asked for; both, merged by id, otherwise.
    const wantsChanges = q.types === null || CHANGE_TYPES.some((t) => q.types!.has(t));
    const wantsEvents = q.types === null || [...q.types].some((t) => !(CHANGE_TYPES as readonly string[]).includes(t));
    const batch = Math.min(1000, q.limit + 1);
    const readers = [...(wantsChanges ? [this.logKey] : []), ...(wantsEvents ? [this.securityLogKey] : [])].map((key) => ({ key, start, rows: [] as Array<[string, string[]]>, done: false }));
    const entries: AuditEntry[] = [];
    for (;;) {
      for (const r of readers) {
        if (r.rows.length > 0 || r.done) continue;
        r.rows = (await this.run(() => this.client.xrange(r.key, r.start, end, 'COUNT', batch))) as Array<[string, string[]]>;
        if (r.rows.length < batch) r.done = true;
        if (r.rows.length > 0) r.start = `(${r.rows[r.rows.length - 1]![0]}`;
      }
      // The oldest head of the logs that still have rows.
      let next: { rows: Array<[string, string[]]> } | undefined;
      for (const r of readers) if (r.rows.length > 0 && (next === undefined || idBefore(r.rows[0]![0], next.rows[0]![0]))) next = r;
      if (next === undefined) return { entries };
      const [id, fields] = next.rows.shift()!;
      const i = fields.indexOf('e');
      const entry = i < 0 ? null : parseEntry(id, fields[i + 1], null);
      if (entry === null || !matches(entry, q)) continue;
      if (entries.length === q.limit) return { entries, cursor: entries[entries.length - 1]!.id };
      entries.push(entry);
    }
  }

  /** A key's own trail: its changes and its events (each at most its cap), merged, oldest first, filtered and paged like the log. */
  private async readTrail(keyId: string, q: ReturnType<typeof normalizeQuery>): Promise<AuditPage> {
    const [changes, events] = await Promise.all([this.readList(this.trailKey(keyId)), this.readList(this.eventsKey(keyId))]);
    const lines = mergeById(changes, events);
    const after = q.cursor === undefined ? null : q.cursor;
    const entries: AuditEntry[] = [];
    for (const line of lines) {
      const space = line.indexOf(' ');
      const entry = space < 0 ? null : parseEntry(line.slice(0, space), line.slice(space + 1), keyId);
      if (entry === null || !matches(entry, q)) continue;
      if (after !== null && !idBefore(after, entry.id)) continue;
      if (entries.length === q.limit) return { entries, cursor: entries[entries.length - 1]!.id };
      entries.push(entry);
    }
    return { entries };
  }

  /** A list of `<id> <json>` entries (a trail written by an earlier version may still be one string of lines). */
  private async readList(key: string): Promise<string[]> {
    const type = await this.run(() => this.client.type(key));
    if (type === 'string') return ((await this.run(() => this.client.get(key))) ?? '').split('\n').filter((l) => l !== '');
    if (type !== 'list') return [];
    return this.run(() => this.client.lrange(key, 0, -1));
  }

  /**
   * Writes a batch of usage counts (the tracker sends at most USAGE_CHUNK keys at a time), each key's
   * in one script that applies a batch id at most once. On a single Redis the batch is one
   * transaction; on Cluster, where one cannot span slots, a call per key (a retry then skips the keys
   * already written).
   */
  async recordUsage(batch: readonly UsageBatchItem[], batchId?: string): Promise<void> {
    const [writer, seq] = batchId === undefined ? ['', 0] : parseBatchId(batchId);
    const last: Array<string | number> = [];
    const args = (item: UsageBatchItem): Array<string | number> => {
      const out: Array<string | number> = [`${this.ns}{${item.keyId}}:u:${item.day}`, writer, seq, USAGE_DAYS_KEPT * 86_400];
      for (const [code, n] of Object.entries(item.counts)) out.push(code, n as number);
      return out;
    };
    for (const item of batch) if (item.lastUsedAt !== null) last.push(item.lastUsedAt, item.keyId);
    if ((this.client as Cluster).isCluster) {
      await Promise.all(batch.map((item) => this.run(() => this.client.tillUsage(...args(item)))));
    } else {
      const tx = this.client.multi() as unknown as { tillUsage(...a: Array<string | number>): unknown; exec(): Promise<unknown> };
      for (const item of batch) tx.tillUsage(...args(item));
      await this.run(() => tx.exec());
    }
    // The latest use wins, whichever process saw it (GT), in one sorted set that audits read.
    if (last.length > 0) await this.run(() => this.client.zadd(this.usageKey, 'GT', ...last));
  }

  async readUsage(id: string, days: number): Promise<KeyUsage> {
    const today = Date.parse(`${dayOf(Date.now())}T00:00:00Z`);
    const wanted = Array.from({ length: days }, (_, i) => dayOf(today - i * 86_400_000));
    const [last, ...counts] = await Promise.all([
      this.run(() => this.client.zscore(this.usageKey, id)),
      ...wanted.map((day) => this.run(() => this.client.hgetall(`${this.ns}{${id}}:u:${day}`))),
    ]);
    return {
      lastUsedAt: last === null || last === undefined ? null : Number(last),
      days: wanted.map((day, i) => {
        const raw = (counts[i] ?? {}) as Record<string, string>;
        // Outcome counts only (the hash also says which batches it has, as `w:<writer>`).
        const parsed = Object.fromEntries(Object.entries(raw).filter(([code]) => OUTCOMES.has(code)).map(([code, n]) => [code, Number(n)])) as Partial<Record<OutcomeCode, number>>;
        return { day, counts: parsed, total: Object.values(parsed).reduce((a, b) => a + b, 0) };
      }),
    };
  }

  /**
   * With `replicas`: waits until that many replicas have this client's writes (WAIT, on every primary
   * of a Cluster at once: the one that took a change waits for its replicas, the others answer at
   * once), or rejects with NOT_REPLICATED (the changes stay made on the primary).
   */
  async confirmChanges(): Promise<void> {
    if (this.replicas === 0) return;
    const fewest = await this.waitReplicas();
    if (fewest < this.replicas) {
      throw tillError('NOT_REPLICATED', 'redis', `the change was made on the primary, but ${fewest} of ${this.replicas} replicas confirmed it within ${this.replicaTimeout} ms: a failover now could undo it`,
      );
    }
  }

  /**
   * How many replicas have every write this client made so far: WAIT on the primary (on every primary
   * of a Cluster at once, the fewest answer), 0 when it fails.
   */
  private waitReplicas(): Promise<number> {
    const nodes = (this.client as Cluster).isCluster ? (this.client as Cluster).nodes('master') : [this.client as Redis];
    return Promise.all(nodes.map((node) => node.wait(this.replicas, this.replicaTimeout))).then(
      (acked) => Math.min(...acked.map(Number)),
      () => 0,
    );
  }

  /**
   * One WAIT for the charges answered in this turn of the event loop: sent at the next
   * `setImmediate`, after every reply read in this turn, so one WAIT covers all their batches.
   */
  private confirmCharges(): Promise<number> {
    if (this.chargeWait === undefined) {
      this.chargeWait = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.chargeWait = undefined;
        return this.waitReplicas();
      });
    }
    return this.chargeWait;
  }

  /** The store's log of changes, written after the change (whose key's trail holds it already). */
  private async copyToLog(audit: AuditRecord): Promise<void> {
    await this.run(() => this.client.tillLog(this.logKey, this.securityLogKey, 1, this.logCap, encodeEntry(audit, true)));
  }

  /**
   * The live credit count a charge spends: its key's own, or in a rotation chain the first key's
   * (`credits.account`). Every key of a chain is drawn in its first key's slot (see KeyManager.rotate),
   * so one script still reads and charges them together, on Cluster too.
   */
  private creditsKey(request: ConsumeRequest): string {
    return `${this.ns}{${request.credits?.account ?? request.subject}}:cr`;
  }

  private eventsKey(id: string): string {
    return `${this.ns}{${id}}:events`;
  }

  private trailKey(id: string): string {
    return `${this.ns}{${id}}:audit`;
  }

  /**
   * Charges of one subject that arrive together (within one turn of the event loop: a busy key under
   * many connections) go to Redis in one script call, made at the next `setImmediate`; the script
   * answers each as if made one after the other, in arrival order. Each request still costs at most
   * one round trip, and a busy key costs Redis one call per turn instead of one per request.
   */
  consume(request: ConsumeRequest): Promise<ConsumeResult> {
    const subject = request.subject;
    if (typeof subject !== 'string' || subject.length === 0 || /[{}]/.test(subject)) {
      return Promise.reject(tillError('INVALID_ARGUMENT', 'redis', 'a limit subject must be a non-empty string without braces'));
    }
    const isKey = request.keyVersion !== undefined;
    const policy = isKey && request.credits ? creditPolicy(request.credits) : '';
    const id = `${subject}\n${isKey ? request.keyVersion : ''}\n${policy}\n${this.callerClock ? request.now : ''}\n${shapeOf(request.limits)}`;
    let batch = this.batches.get(id);
    if (batch === undefined) {
      const created: Batch = { request, policy, items: [] };
      batch = created;
      this.batches.set(id, created);
      setImmediate(() => {
        this.batches.delete(id);
        this.flush(created);
      });
    }
    const items = batch.items;
    return new Promise((resolve, reject) => {
      items.push({ request, resolve, reject });
    });
  }

  private flush(batch: Batch): void {
    const { request, policy, items } = batch;
    const tag = `${this.ns}{${request.subject}}:`;
    const isKey = request.keyVersion !== undefined;
    const keys = isKey ? (policy === '' ? [`${tag}k`] : [`${tag}k`, this.creditsKey(request)]) : [];
    const n = request.limits.length;
    const args: Array<string | number> = [this.callerClock ? request.now : '', isKey ? request.keyVersion! : '', n, policy];
    for (const charge of request.limits) {
      keys.push(`${tag}rl:${charge.bucket ?? charge.name}`);
      args.push(charge.limit, charge.window);
    }
    args.push(items.length);
    for (const item of items) {
      args.push(item.request.cost ?? 0);
      for (const charge of item.request.limits) args.push(charge.cost);
    }
    this.run(() => this.client.tillConsume(keys.length, ...keys, ...args)).then(
      (reply) => {
        if (reply[0] === 'CHANGED') {
          for (const item of items) this.changed(item.request).then(item.resolve, item.reject);
          return;
        }
        const stride = 3 + 2 * n;
        const results = items.map((item, j): ConsumeResult => {
          const at = j * stride;
          const limits: LimitState[] = [];
          for (let i = 0; i < n; i++) {
            const charge = item.request.limits[i]!;
            limits.push({ name: charge.name, limit: charge.limit, window: charge.window, remaining: Number(reply[at + 3 + 2 * i]), reset: Number(reply[at + 4 + 2 * i]) });
          }
          const credits = Number(reply[at + 1]);
          const retry = Number(reply[at + 2]);
          return { outcome: reply[at] as ChargeOutcome, limits, credits: credits < 0 ? null : credits, retryAfter: retry < 0 ? null : retry };
        });
        // Admitted charges that spent something wait for replicas (chargesWait): refused ones spent nothing.
        const spent = (item: Batch['items'][number], j: number) => results[j]!.outcome === 'OK' && ((item.request.cost ?? 0) > 0 || item.request.limits.some((c) => c.cost > 0));
        if (!this.chargesWait || !items.some(spent)) {
          items.forEach((item, j) => item.resolve(results[j]!));
          return;
        }
        this.confirmCharges().then((acked) => {
          if (acked >= this.replicas) {
            if (this.chargesUnconfirmed) {
              this.chargesUnconfirmed = false;
              this.logger.warn('[till] [redis] charges are confirmed by replicas again (chargesWait): requests are admitted again');
            }
            items.forEach((item, j) => item.resolve(results[j]!));
            return;
          }
          if (!this.chargesUnconfirmed) {
            this.chargesUnconfirmed = true;
            this.logger.warn(`[till] [redis] charges are not confirmed by ${this.replicas} replica(s) within ${this.replicaTimeout} ms (${acked} did): requests that spend credits or limits are refused with 503 until they are (chargesWait)`);
          }
          // Not confirmed: never admitted. Its charge is given back on the primary (where it was made;
          // a replica that lacks it lacks the refund too), and the request is refused as unavailable.
          // NOT_REPLICATED, not STORE_UNAVAILABLE: the limiter then refuses (503) rather than falling back to
          // per-process limits, which would admit the request after all.
          const error = tillError('NOT_REPLICATED', 'redis', `a charge was made on the primary, but ${acked} of ${this.replicas} replicas confirmed it within ${this.replicaTimeout} ms (chargesWait): refused and refunded`);
          items.forEach((item, j) => {
            if (!spent(item, j)) return item.resolve(results[j]!);
            this.refund(item.request).catch(() => {});
            item.reject(error);
          });
        });
      },
      (error: unknown) => {
        for (const item of items) item.reject(error);
      },
    );
  }

  async refund(request: ConsumeRequest): Promise<void> {
    const subject = request.subject;
    if (typeof subject !== 'string' || subject.length === 0 || /[{}]/.test(subject)) {
      throw tillError('INVALID_ARGUMENT', 'redis', 'a limit subject must be a non-empty string without braces');
    }
    const tag = `${this.ns}{${subject}}:`;
    const policy = request.keyVersion !== undefined && request.credits ? creditPolicy(request.credits) : '';
    const keys = policy === '' ? [] : [this.creditsKey(request)];
    const args: Array<string | number> = [this.callerClock ? request.now : '', request.limits.length, policy];
    for (const charge of request.limits) {
      keys.push(`${tag}rl:${charge.bucket ?? charge.name}`);
      args.push(charge.limit, charge.window);
    }
    args.push(request.cost ?? 0);
    for (const charge of request.limits) args.push(charge.cost);
    await this.run(() => this.client.tillRefund(keys.length, ...keys, ...args));
  }

  /**
   * A charge found the key's record missing or of another version: the record says which.
   */
  private async changed(request: ConsumeRequest): Promise<ConsumeResult> {
    const record = await this.get(request.subject);
    return record === null ? { outcome: 'NOT_FOUND' } : { outcome: 'CHANGED', record };
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

  onInvalidate(listener: InvalidationListener, onStatus?: SubscriptionListener): () => void {
    this.listeners.add(listener);
    if (onStatus !== undefined) this.statusListeners.add(onStatus);
    if (!this.subscribed) this.subscribe();
    return () => {
      this.listeners.delete(listener);
      if (onStatus !== undefined) this.statusListeners.delete(onStatus);
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.statusListeners.clear();
    this.subscribed = false;
    this.detach?.();
    this.detach = undefined;
    if (this.subscriber && this.ownsSubscriber) {
      const sub = this.subscriber;
      this.subscriber = undefined;
      sub.disconnect();
    }
    if (this.closeClient) await quit(this.client);
  }

  private subscribe(): void {
    this.subscribed = true;
    this.heard = false;
    const sub = (this.subscriber ??= this.client.duplicate() as RedisClient);
    const onMessage = (channel: string, id: string) => {
      if (channel === this.channel) this.emit(id);
    };
    sub.on('message', onMessage);
    // Subscribed on every (re)connection, and only once Redis confirms it are cached records
    // trusted (and dropped, as of that moment: anything cached before, at start or during an
    // outage, may have missed its message). A SUBSCRIBE that Redis refuses (an ACL without the
    // channel) is reported and tried again with a growing delay while the connection stays up.
    let retry: ReturnType<typeof setTimeout> | undefined;
    let delay = RESUBSCRIBE_MIN_MS;
    const confirm = () => {
      clearTimeout(retry);
      sub.subscribe(this.channel).then(
        () => {
          delay = RESUBSCRIBE_MIN_MS;
          this.heard = true;
          this.status(null);
          this.emit(null);
        },
        (error: unknown) => {
          if (!this.subscribed || sub.status !== 'ready') return; // tried again on the next connection
          this.status(error instanceof Error ? error : new Error(String(error)));
          retry = setTimeout(confirm, delay);
          retry.unref?.();
          delay = Math.min(delay * 2, RESUBSCRIBE_MAX_MS);
        },
      );
    };
    // From the moment the connection drops, messages can be missed: the verifier reads through to
    // the store (or, with Redis down, serves its stale window) until the subscription is confirmed.
    const onDown = () => {
      this.heard = false;
    };
    // Reconnection is ioredis's job; an unhandled 'error' event would crash the process.
    const onError = () => {};
    sub.on('ready', confirm);
    sub.on('close', onDown);
    sub.on('error', onError);
    if (sub.status === 'ready') confirm();
    // A client made with lazyConnect (and its duplicate) waits for a first command; a subscriber
    // that never connected would never hear a revocation.
    else if (sub.status === 'wait') sub.connect().catch(() => {});
    this.detach = () => {
      clearTimeout(retry);
      this.heard = false;
      sub.off('message', onMessage);
      sub.off('ready', confirm);
      sub.off('close', onDown);
      sub.off('error', onError);
      sub.unsubscribe(this.channel).catch(() => {});
    };
  }

  /**
   * Whether changes made elsewhere may be going unheard: the store was asked to listen, and its
   * subscription is not confirmed right now (not yet, refused, or its connection dropped).
   */
  invalidationsLost(): boolean {
    return this.subscribed && !this.heard;
  }

  private status(error: Error | null): void {
    for (const listener of this.statusListeners) {
      try {
        listener(error);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private emit(id: string | null): void {
    for (const listener of this.listeners) listener(id);
  }

  /**
   * Reads Redis's `maxmemory-policy` (INFO memory; CONFIG GET where INFO does not say) and warns, or
   * with `eviction: 'refuse'` sets the refusal, when it may evict keys that have no TTL. A Redis that
   * cannot be asked now (down) is asked again on a later command; one that refuses both commands (an
   * ACL) is reported once and trusted.
   */
  private async checkEviction(): Promise<void> {
    let policy: string | undefined;
    let maxmemory = '';
    // Through send(): under the command timeout; unavailable means "ask again later", a refusal (an
    // ACL, a renamed CONFIG) means "cannot be read here".
    const unread = (error: unknown) => {
      if (error instanceof TillError && error.code === 'STORE_UNAVAILABLE') throw error;
    };
    try {
      const info = await this.send(() => this.client.info('memory'));
      policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
      maxmemory = /^maxmemory:(\d+)/m.exec(info)?.[1] ?? '';
    } catch (error) {
      unread(error);
    }
    if (policy === undefined) {
      try {
        const reply = (await this.send(() => this.client.config('GET', 'maxmemory-policy'))) as unknown as string[];
        policy = reply[1];
      } catch (error) {
        unread(error);
      }
    }
    if (policy === undefined) {
      this.logger.warn('[till] [redis] could not read maxmemory-policy (neither INFO memory nor CONFIG GET answered it): make sure it is noeviction or volatile-*, or Redis may evict key records and credit counters');
      return;
    }
    if (SAFE_POLICIES.test(policy)) return;
    const why = `maxmemory-policy is ${policy}${maxmemory === '0' ? ' (maxmemory 0: no limit yet)' : ''}: under memory pressure Redis evicts any key, Till's key records (valid keys are then refused as unknown) and credit counters (they start again full) included. Set maxmemory-policy to noeviction (or a volatile-* policy: only rate-limit state and usage counts carry a TTL)`;
    if (this.eviction === 'refuse') {
      this.evictionRefusal = tillError('STORE_ERROR', 'redis', `refusing to run (eviction: 'refuse'): ${why}`);
      this.logger.error(this.evictionRefusal.message);
    } else {
      this.logger.warn(`[till] [redis] ${why}, or pass eviction: 'refuse' to RedisStore to refuse to run on it`);
    }
  }

  /** Starts the eviction check on the first command; with `refuse`, commands wait for its answer. */
  private evictionGate(): Promise<void> | undefined {
    if (this.evictionKnown) return undefined;
    if (this.evictionCheck === undefined) {
      const check = this.checkEviction().then(
        () => {
          this.evictionKnown = true;
        },
        () => {
          // Not answered (Redis down): asked again by a later command.
          if (this.evictionCheck === check) this.evictionCheck = undefined;
        },
      );
      this.evictionCheck = check;
    }
    return this.eviction === 'refuse' ? this.evictionCheck : undefined;
  }

  /** Runs a command with a deadline, and turns connection trouble into a STORE_UNAVAILABLE error. */
  private run<T>(command: () => Promise<T>): Promise<T> {
    if (this.evictionRefusal !== undefined) return Promise.reject(this.evictionRefusal);
    const gate = DOWN.has(this.client.status) ? undefined : this.evictionGate();
    if (gate !== undefined) {
      return gate.then(() => {
        if (this.evictionRefusal !== undefined) throw this.evictionRefusal;
        return this.send(command);
      });
    }
    return this.send(command);
  }

  private send<T>(command: () => Promise<T>): Promise<T> {
    if (DOWN.has(this.client.status)) return Promise.reject(storeUnavailable('redis', new Error(`client is ${this.client.status}`)));
    return new Promise<T>((resolve, reject) => {
      // A command sent is not taken back: if it was a change, it may still be made.
      const timer = setTimeout(() => reject(storeUnavailable('redis', new Error(`no answer within ${this.timeout} ms (a change sent may still be made)`))), this.timeout);
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
          else reject(tillError('STORE_ERROR', 'redis', `command failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
        },
      );
    });
  }
}
