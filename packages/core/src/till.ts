// createTill(): one object holding the store, the verifier and the key manager, wired together.
import { systemClock, type Clock } from './util/clock.js';
import { tillError, tillMessage } from './errors.js';
import { installHint } from './util/install-hint.js';
import { UsageTracker, type UsageOptions } from './audit/usage.js';
import { AuditWriter, type AuditWriterOptions } from './audit/writer.js';
import { newTillName, TillEvents } from './audit/events.js';
import { observedStore } from './observe/store.js';
import { startTracing } from './observe/tracing.js';
import { createHasher } from './key/hash.js';
import { Limiter } from './limits/limiter.js';
import { consoleLogger, type Logger } from './util/logger.js';
import { KeyManager } from './manage/manager.js';
import { RoleManager } from './manage/roles.js';
import { roleMessage } from './store/role.js';
import { IdentityManager } from './identity/manager.js';
import { IDENTITY_INVALIDATION } from './identity/record.js';
import type { MaybePromise, VerifyResult } from './verify/outcome.js';
import { MemoryStore } from './store/memory.js';
import { lazyStore, type LoadedStore } from './store/lazy.js';
import type { KeyStore } from './store/types.js';
import { Verifier, type CacheOptions, type VerifyOptions } from './verify/verifier.js';

export interface TillOptions {
  /** Where keys live. Default: a new in-process MemoryStore. */
  store?: KeyStore;
  /**
   * Whether `close()` also closes `store`, the application's own: for a one-off script, with
   * `new RedisStore({ client, closeClient: true })` so that the store then closes its client, and the
   * process can exit. Default false: what the application made, it closes. A store Till made itself
   * (the default memory store, the one made from REDIS_URL) is always closed.
   */
  closeStore?: boolean;
  /** Server-side secret of at least 16 bytes: keys are then stored as HMAC-SHA-256, not SHA-256. */
  pepper?: string | Buffer;
  /** Prefix of new keys, like `sk_live`. Default `till`. */
  prefix?: string;
  /** Prefixes accepted when verifying. Default: any. */
  prefixes?: readonly string[];
  cache?: CacheOptions;
  clock?: Clock;
  logger?: Logger;
  /**
   * Security events (failed authentications, blocked clients, refused limits, revoked or expired
   * keys still tried) go to the audit trail in batches: `{ interval, maxPending }`, or `false` to
   * keep them out of it. Default on, written every second.
   */
  auditEvents?: AuditWriterOptions | false;
  /** Who makes changes through `till.keys` when a call does not say (the audit trail's `actor`). */
  actor?: string;
  /**
   * Usage tracking (last use, requests by day and outcome), counted in memory and written in
   * batches: `{ interval }` (default every 10 s), or `false` to turn it off.
   */
  usage?: UsageOptions | false;
  /**
   * Names this Till in every message it publishes on the diagnostics channels (`till:verify`, ...) and
   * in its spans, so that subscribers tell two Tills of one process apart: give each its own. Default
   * `till-1`, `till-2`, ... in order of creation.
   */
  name?: string;
  /**
   * OpenTelemetry spans for verifications and store calls, through the global tracer provider.
   * Needs `@opentelemetry/api` installed (an optional peer dependency, loaded only then). Default false.
   */
  tracing?: boolean;
}

export interface Till {
  /** The name its diagnostics messages and spans carry (see TillOptions.name). */
  readonly name: string;
  /** The application's store, as it was given. Till's own parts call it through a view that publishes each call on `till:store`. */
  readonly store: KeyStore;
  readonly verifier: Verifier;
  readonly keys: KeyManager;
  /** Roles: named scope bundles keys hold (`roles.define('reporting', ['reports:read'])`). */
  readonly roles: RoleManager;
  readonly logger: Logger;
  /** Events: `till.events.on((event) => ...)`. */
  readonly events: TillEvents;
  /** Charges rate limits that belong to no key (per client IP, per user) and keys' limits alike. */
  readonly limiter: Limiter;
  /** Writes security events to the audit trail in batches; null when turned off. */
  readonly auditWriter: AuditWriter | null;
  /** Counts usage and writes it in batches; null when turned off. */
  readonly usage: UsageTracker | null;
  /** Identities: owners whose limits and credits all of their keys share. */
  readonly identities: IdentityManager;
  /** Shorthand for `verifier.verify`. */
  verify(key: unknown, options?: VerifyOptions): MaybePromise<VerifyResult>;
  /**
   * Writes what is pending (usage counts, security events), stops listening for invalidations, and
   * closes what Till opened itself (and `store` with `closeStore: true`).
   */
  close(): Promise<void>;
}

const TILL = Symbol.for('till.instance');

export function isTill(value: unknown): value is Till {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TILL] === true;
}

export function createTill(options: TillOptions = {}): Till {
  if (options === null || typeof options !== 'object') throw tillError('INVALID_OPTIONS', 'createTill', 'createTill takes an options object');
  const store = options.store ?? new MemoryStore();
  if (options.name !== undefined && (typeof options.name !== 'string' || !/^[\x21-\x7e]{1,64}$/.test(options.name))) {
    throw tillError('INVALID_OPTIONS', 'createTill', 'name must be 1 to 64 printable ASCII characters without spaces');
  }
  if (options.tracing !== undefined && typeof options.tracing !== 'boolean') throw tillError('INVALID_OPTIONS', 'createTill', 'tracing must be true or false');
  const name = options.name ?? newTillName();
  // What the parts below call: the store, each call published on `till:store` while someone subscribes.
  const observed = observedStore(store, name);
  const hasher = createHasher(options.pepper);
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? consoleLogger;
  const events = new TillEvents(
    (error) => logger.error(tillMessage('events', `an event listener threw: ${error instanceof Error ? error.message : String(error)}`)),
    name,
  );
  const limiter = new Limiter(observed, clock, events, logger);
  if (options.usage !== undefined && options.usage !== false && (options.usage === null || typeof options.usage !== 'object')) {
    throw tillError('INVALID_OPTIONS', 'createTill', 'usage must be { interval } or false');
  }
  const usage = options.usage === false ? null : new UsageTracker(observed, clock, logger, options.usage);
  // Said once per failure, and when it is over: a refused subscription costs a store read per request.
  let subscriptionFailing = false;
  const onSubscription = (error: Error | null): void => {
    if (error === null) {
      if (!subscriptionFailing) return;
      subscriptionFailing = false;
      events.emit({ type: 'invalidations.restored', store: store.kind });
      return;
    }
    if (subscriptionFailing) return;
    subscriptionFailing = true;
    const reason = error.message.slice(0, 200);
    logger.warn(
      tillMessage(
        store.kind,
        `cannot subscribe to key changes (${reason}): cached keys are not trusted, so every verification reads the store until the subscription is made`,
      ),
    );
    events.emit({ type: 'invalidations.failed', store: store.kind, reason });
  };
  const verifier = new Verifier({
    onSubscription,
    ...(usage !== null && { usage }),
    store: observed,
    till: name,
    hasher,
    clock,
    limiter,
    ...(options.prefixes !== undefined && { prefixes: options.prefixes }),
    ...(options.cache !== undefined && { cache: options.cache }),
  });
  if (options.auditEvents !== undefined && options.auditEvents !== false && (options.auditEvents === null || typeof options.auditEvents !== 'object')) {
    throw tillError('INVALID_OPTIONS', 'createTill', 'auditEvents must be { interval, maxPending, perKey, perClient } or false');
  }
  const auditWriter = options.auditEvents === false ? null : new AuditWriter(observed, clock, logger, options.auditEvents);
  const keys = new KeyManager({
    store: observed,
    hasher,
    clock,
    ...(options.actor !== undefined && { actor: options.actor }),
    // This process sees its own changes at once, before the store's broadcast comes back.
    onChange: (id) => verifier.invalidate(id),
    ...(options.prefix !== undefined && { prefix: options.prefix }),
  });
  const roles = new RoleManager({
    store: observed,
    clock,
    ...(options.actor !== undefined && { actor: options.actor }),
    // As with keys: this process forgets a changed role at once, before the broadcast comes back.
    onChange: (role) => verifier.invalidate(roleMessage(role)),
    emit: (event) => events.emit(event),
  });
  const identities = new IdentityManager({
    store: observed,
    clock,
    events,
    ...(options.actor !== undefined && { actor: options.actor }),
    // As for keys: this process drops the identity's keys from its cache at once.
    onChange: (id) => verifier.invalidate(`${IDENTITY_INVALIDATION}${id}`),
  });
  if (options.closeStore !== undefined && typeof options.closeStore !== 'boolean')
    throw tillError('INVALID_OPTIONS', 'createTill', 'closeStore must be true or false');
  const ownsStore = options.store === undefined || options.closeStore === true;
  // Made last: a Till that fails its options leaves no subscriber behind.
  const stopTracing = options.tracing === true ? startTracing(name, logger) : null;
  const self: Till = {
    [TILL]: true,
    name,
    store,
    verifier,
    keys,
    roles,
    identities,
    logger,
    events,
    limiter,
    auditWriter,
    usage,
    verify: (key, verifyOptions) => verifier.verify(key, verifyOptions),
    async close() {
      stopTracing?.();
      verifier.close();
      await auditWriter?.close();
      await usage?.close();
      if (ownsStore) await store.close();
    },
  } as Till;
  return self;
}

let defaultInstance: Till | undefined;
let warnedMemory = false;

/**
 * The Till used when middleware is given none: Redis at `REDIS_URL` when set (ioredis must be
 * installed), otherwise the in-process memory store with a one-time warning. `TILL_PEPPER`,
 * `TILL_PREFIX` and `TILL_NAMESPACE` (the Redis store's key prefix, default `till:`) are read when set. One instance per process, so keys created through it are the
 * keys the middleware checks.
 */
export function defaultTill(env: NodeJS.ProcessEnv = process.env, logger: Logger = consoleLogger): Till {
  if (defaultInstance) return defaultInstance;
  const url = env.REDIS_URL;
  let store: KeyStore;
  if (url) {
    const namespace = env.TILL_NAMESPACE || undefined;
    store = lazyStore(
      'redis',
      () => loadRedisStore(url, namespace),
      (error) => logger.error(error instanceof Error ? error.message : String(error)),
    );
  } else {
    store = new MemoryStore();
    if (!warnedMemory) {
      warnedMemory = true;
      logger.warn(
        tillMessage(
          'defaultTill',
          "no REDIS_URL set: keys live in this process's memory only and vanish on restart. Set REDIS_URL or pass { till: createTill({ store }) } in production.",
        ),
      );
    }
  }
  defaultInstance = createTill({
    store,
    // Made here, so closed here.
    ...(url ? { closeStore: true } : {}),
    logger,
    ...(env.TILL_PEPPER ? { pepper: env.TILL_PEPPER } : {}),
    ...(env.TILL_PREFIX ? { prefix: env.TILL_PREFIX } : {}),
  });
  return defaultInstance;
}

/** Forgets the default instance (tests). */
export async function resetDefaultTill(): Promise<void> {
  const instance = defaultInstance;
  defaultInstance = undefined;
  await instance?.close();
}

/**
 * The Redis store at `url`, on a client of its own: the root entry loads ioredis and the Redis entry
 * only here, when REDIS_URL is set.
 */
async function loadRedisStore(url: string, namespace: string | undefined): Promise<LoadedStore> {
  let Redis: typeof import('ioredis').Redis;
  let RedisStore: typeof import('./redis/store.js').RedisStore;
  try {
    ({ Redis } = await import('ioredis'));
    // Through the package's own entry (a variable keeps bundlers from inlining it).
    const entry = '@till/core/redis';
    ({ RedisStore } = (await import(entry)) as typeof import('./redis/store.js'));
  } catch (cause) {
    throw tillError('MISSING_DEPENDENCY', 'redis', `REDIS_URL is set but ioredis could not be loaded: install it with \`${installHint('ioredis')}\``, {
      cause,
    });
  }
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {
    // Reconnection is automatic; the store reports unavailability per command.
  });
  const release = () => client.disconnect();
  try {
    return { store: new RedisStore({ client, ...(namespace !== undefined && { namespace }) }), release };
  } catch (error) {
    release();
    throw error;
  }
}
