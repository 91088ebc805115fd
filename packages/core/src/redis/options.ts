// The Redis store's options: the public RedisStoreOptions, and every check of them in one place.
import type { Cluster, Redis } from 'ioredis';
import { tillError } from '../errors.js';
import { consoleLogger, type Logger } from '../util/logger.js';

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
   * subscription and closed by `close()`; it also closes when `client` ends for good (`quit()`,
   * `disconnect()`), so a script that closes its client can exit, and connects again with it.
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
  /**
   * Whether the reads of records asked for in the same turn of the event loop (the cache misses of
   * concurrent verifications, a page of `list`) go to Redis together, as one MGET: on Redis Cluster,
   * one per slot, those of a node in one pipeline. Each read keeps its own deadline (`commandTimeout`)
   * and its own answer (a record key holding no string reads as none). A read waits at most until the
   * end of the turn it was asked in. Default true; false sends each read as a GET of its own.
   */
  batchReads?: boolean;
  /** Where the store's warnings go (the eviction check; charges going unconfirmed). Default: the console. */
  logger?: Logger;
}

/** The options checked, with every default filled in. */
export interface RedisConfig {
  readonly client: RedisClient;
  readonly closeClient: boolean;
  readonly namespace: string;
  readonly commandTimeout: number;
  readonly subscriber: RedisClient | undefined;
  /** `limitClock: 'caller'`: charges carry the caller's `now` rather than the server's time. */
  readonly callerClock: boolean;
  readonly auditMaxLength: number;
  readonly auditPerKeyMaxLength: number;
  readonly replicas: number;
  readonly replicaTimeout: number;
  readonly chargesWait: boolean;
  readonly eviction: 'warn' | 'refuse';
  readonly logger: Logger;
  readonly batchReads: boolean;
}

const invalid = (message: string) => tillError('INVALID_OPTIONS', 'redis', message);

/** Checks RedisStore's options once, when the store is made, and fills in the defaults. */
export function parseOptions(options: RedisStoreOptions): RedisConfig {
  if (!options || typeof options !== 'object' || !options.client || typeof (options.client as Redis).get !== 'function') {
    throw invalid('RedisStore needs { client }: an ioredis Redis or Cluster instance');
  }
  const { namespace = 'till:', commandTimeout = 1000, limitClock = 'redis' } = options;
  if (limitClock !== 'redis' && limitClock !== 'caller') throw invalid('limitClock must be "redis" or "caller"');
  const { auditMaxLength = 100_000, auditPerKeyMaxLength = 1000 } = options;
  for (const [name, value] of [
    ['auditMaxLength', auditMaxLength],
    ['auditPerKeyMaxLength', auditPerKeyMaxLength],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw invalid(`${name} must be a positive integer`);
  }
  const { replicas = 0, replicaTimeout = 500 } = options;
  if (!Number.isInteger(replicas) || replicas < 0) throw invalid('replicas must be a non-negative integer');
  if (!Number.isInteger(replicaTimeout) || replicaTimeout < 1) throw invalid('replicaTimeout must be a positive integer of milliseconds');
  if (options.chargesWait !== undefined && typeof options.chargesWait !== 'boolean') throw invalid('chargesWait must be true or false');
  if (options.chargesWait === true && replicas === 0) throw invalid('chargesWait needs replicas (1 or more): it waits for that many replicas');
  const { eviction = 'warn', logger = consoleLogger } = options;
  if (eviction !== 'warn' && eviction !== 'refuse') throw invalid('eviction must be "warn" or "refuse"');
  if (!logger || typeof logger.warn !== 'function') throw invalid('logger must have warn() and error()');
  if (typeof namespace !== 'string' || /[{}]/.test(namespace)) {
    throw invalid('namespace must be a string without braces (braces would change the hash slot)');
  }
  if (!Number.isFinite(commandTimeout) || commandTimeout <= 0) throw invalid('commandTimeout must be a positive number of milliseconds');
  for (const name of ['closeClient', 'batchReads'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') throw invalid(`${name} must be true or false`);
  }
  return {
    client: options.client,
    closeClient: options.closeClient === true,
    namespace,
    commandTimeout,
    subscriber: options.subscriber,
    callerClock: limitClock === 'caller',
    auditMaxLength,
    auditPerKeyMaxLength,
    replicas,
    replicaTimeout,
    chargesWait: options.chargesWait === true,
    eviction,
    logger,
    batchReads: options.batchReads !== false,
  };
}
