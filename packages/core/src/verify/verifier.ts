// The verifier: parse and check, then an LRU cache with single-flight in front of the store.
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../util/clock.js';
import { tillError } from '../errors.js';
import { createHasher, type KeyHasher } from '../key/hash.js';
import { digestBytes } from '../key/sha256.js';
import { BODY_LENGTH, ID_LENGTH, isValidPrefix, MAX_KEY_LENGTH, parseKey } from '../key/format.js';
import { newTillName, TillEvents } from '../audit/events.js';
import { verifyChannel } from '../observe/channels.js';
import { publishVerification } from '../observe/publish.js';
import { Limiter, UNAVAILABLE } from '../limits/limiter.js';
import { countOutcome, OUTCOME_INDEX, type UsageTracker } from '../audit/usage.js';
import type { LimitCharge } from '../limits/rules.js';
import { failure, WRONG_SECRET, type FailureCode, type MaybePromise, type Usage, type VerifyFailure, type VerifyResult, type VerifySuccess } from './outcome.js';
import { keyStatus, toVerifiedKey, withoutHash, type KeyRecord } from '../store/record.js';
import { scopeSetOf, type ScopeSet } from './scopes.js';
import type { ConsumeRequest, ConsumeResult, KeyStore, SubscriptionListener } from '../store/types.js';

export interface CacheOptions {
  /** Most keys kept in the cache. Default 10,000. */
  max?: number;
  /** Milliseconds a cached key is trusted without asking the store. Default 30,000. */
  ttl?: number;
  /** Milliseconds an unknown id is remembered as unknown. Default 5,000. */
  negativeTtl?: number;
  /**
   * Most unknown ids remembered. They have a cache of their own, so a flood of made-up keys can
   * never push real keys out (and with them the stale window). Default 10,000.
   */
  negativeMax?: number;
  /**
   * Milliseconds past `ttl` during which a key that verified recently keeps working while the
   * store is unreachable. Default 300,000 (5 minutes); 0 turns it off.
   */
  staleWindow?: number;
}

export interface VerifierOptions {
  store: KeyStore;
  /** Hasher for stored digests; made from `pepper` when absent. */
  hasher?: KeyHasher;
  /** Key prefixes this verifier accepts; any valid prefix when absent. */
  prefixes?: readonly string[];
  cache?: CacheOptions;
  /** Seconds a client is told to wait when the store is unreachable. Default 2. */
  unavailableRetryAfter?: number;
  clock?: Clock;
  /** Charges rate limits and credits; one of its own (events unheard) when absent. */
  limiter?: Limiter;
  /** Counts each key's outcomes for usage tracking; none when absent. */
  usage?: UsageTracker;
  /** Told whether the store's invalidation subscription could be made (see SubscriptionListener). */
  onSubscription?: SubscriptionListener;
  /** The name its messages on the `till:verify` channel carry (a Till's, in a Till). Default: a name of its own. */
  till?: string;
}

export interface VerifyOptions {
  /** Scopes the key must hold. */
  scopes?: readonly string[];
  /** `all` (default) needs every scope; `any` needs one. */
  scopeMode?: 'all' | 'any';
  /**
   * Rate limits charged per key beside the key's own, in the same atomic step (and the same round
   * trip). `bucket` names the state: limits of the same bucket share it.
   */
  limits?: ReadonlyArray<LimitCharge & { readonly bucket: string }>;
  /** Credits this request spends when the key has credits. Default 1. */
  cost?: number;
}

/** What the cache holds about one id: the record and what is derived from it once, not per request. */
interface Entry {
  readonly record: KeyRecord | null;
  /** The stored digest's bytes (latin1); null for an unknown id or a digest that is not 32 bytes. */
  readonly digest: string | null;
  readonly scopes: ScopeSet | null;
  readonly fresh: VerifySuccess | null;
  /** The key's own limits as charges; empty when it has none. */
  readonly charges: ReadonlyArray<LimitCharge & { readonly bucket: string }>;
  /** Whether a request with this key is charged even without middleware limits (own limits or credits). */
  readonly charged: boolean;
  /** The key's charges joined with a middleware's, for the last middleware limits seen (they rarely vary). */
  joined?: { readonly extra: Charges; readonly all: Charges };
  /**
   * When it was read from the store, and when the cache last heard it was used (see RECENCY_STEP):
   * milliseconds since the verifier's epoch, small integers that V8 keeps in the object (epoch
   * milliseconds would be a 16-byte heap number each, 3 MB per 100,000 keys).
   */
  readonly fetched: number;
  touched: number;
}

/**
 * The fast path reads the cache with `peek` and tells it of a use at most this often (ms):
 * eviction order is kept to a second, and most requests skip the LRU's bookkeeping.
 */
const RECENCY_STEP = 1000;

export interface VerifierStats {
  hits: number;
  misses: number;
  staleHits: number;
  storeErrors: number;
}

const DEFAULT_CACHE = { max: 10_000, ttl: 30_000, negativeTtl: 5_000, negativeMax: 10_000, staleWindow: 300_000 };

function checkMillis(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw tillError('INVALID_OPTIONS', 'verifier', `${name} must be a number >= ${min}`);
  }
  return value;
}

export class Verifier {
  readonly store: KeyStore;
  readonly stats: VerifierStats = { hits: 0, misses: 0, staleHits: 0, storeErrors: 0 };
  private readonly hasher: KeyHasher;
  private readonly prefixes: ReadonlySet<string> | null;
  private readonly cache: LRUCache<string, Entry>;
  /** Unknown ids, apart from the keys: see CacheOptions.negativeMax. */
  private readonly unknown: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<Entry>>();
  private readonly ttl: number;
  /** The clock reading cache times count from. */
  private readonly epoch: number;
  private readonly negativeTtl: number;
  private readonly staleWindow: number;
  private readonly unavailable: VerifyFailure;
  readonly clock: Clock;
  /** The name its diagnostics messages carry. */
  readonly till: string;
  private readonly limiter: Limiter;
  private readonly usage: UsageTracker | undefined;
  private readonly onSubscription: SubscriptionListener | undefined;
  private unsubscribe: (() => void) | null = null;
  /** True while `verify` runs inside its own publishing (a verification never calls another). */
  private publishing = false;
  /** How each charged success was charged, so that a guard that refuses the request later can undo it. */
  private readonly receipts = new WeakMap<VerifyResult, { request: Omit<ConsumeRequest, 'now'>; result: ConsumeResult }>();

  constructor(options: VerifierOptions) {
    if (!options || typeof options !== 'object' || !options.store || typeof options.store.get !== 'function') {
      throw tillError('INVALID_OPTIONS', 'verifier', 'a store is required');
    }
    const cache = { ...DEFAULT_CACHE, ...options.cache };
    const max = checkMillis(cache.max, 'cache.max', 1);
    if (!Number.isInteger(max)) throw tillError('INVALID_OPTIONS', 'verifier', 'cache.max must be an integer');
    this.ttl = checkMillis(cache.ttl, 'cache.ttl', 0);
    this.negativeTtl = checkMillis(cache.negativeTtl, 'cache.negativeTtl', 0);
    this.staleWindow = checkMillis(cache.staleWindow, 'cache.staleWindow', 0);
    if (options.prefixes !== undefined) {
      if (!Array.isArray(options.prefixes) || !options.prefixes.every(isValidPrefix)) {
        throw tillError('INVALID_OPTIONS', 'verifier', 'prefixes must be an array of valid key prefixes');
      }
    }
    const retryAfter = checkMillis(options.unavailableRetryAfter ?? 2, 'unavailableRetryAfter', 1);
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw tillError('INVALID_OPTIONS', 'verifier', 'clock must be a function returning epoch milliseconds');
    }
    this.store = options.store;
    this.epoch = (options.clock ?? systemClock)();
    this.hasher = options.hasher ?? createHasher();
    this.prefixes = options.prefixes ? new Set(options.prefixes) : null;
    this.cache = new LRUCache<string, Entry>({ max });
    const negativeMax = checkMillis(cache.negativeMax, 'cache.negativeMax', 1);
    if (!Number.isInteger(negativeMax)) throw tillError('INVALID_OPTIONS', 'verifier', 'cache.negativeMax must be an integer');
    this.unknown = new LRUCache<string, Entry>({ max: negativeMax });
    this.clock = options.clock ?? systemClock;
    this.till = options.till ?? newTillName();
    this.limiter = options.limiter ?? new Limiter(this.store, this.clock, new TillEvents(undefined, this.till));
    this.usage = options.usage;
    this.onSubscription = options.onSubscription;
    this.unavailable = Object.freeze({ valid: false, code: 'STORE_UNAVAILABLE', retryAfter: Math.ceil(retryAfter) });
  }

  /**
   * Listens for changes from other processes; done on the first verification, so that a process
   * that only manages keys (the CLI) never opens a subscription.
   */
  private subscribe(): void {
    this.unsubscribe ??= this.store.onInvalidate((id) => this.invalidate(id), this.onSubscription);
  }

  /**
   * Verifies a presented key. Answers synchronously when the key's record is cached and fresh,
   * with a promise otherwise. Never throws and never rejects for a bad key or a down store.
   */
  verify(key: unknown, options?: VerifyOptions): MaybePromise<VerifyResult> {
    // Published only while someone subscribes to `till:verify`: otherwise one boolean read.
    if (verifyChannel.hasSubscribers && !this.publishing) return this.published(key, options);
    if (this.unsubscribe === null) this.subscribe();
    // Fast path, a fresh cached key: a key whose digest matches an issued key's is well-formed
    // and carries the right check, so parsing can wait for the keys that are not. Only memory
    // is read before the parse, never the store.
    if (typeof key === 'string' && key.length <= MAX_KEY_LENGTH && key.length > BODY_LENGTH + 1) {
      const start = key.length - BODY_LENGTH;
      const id = key.slice(start, start + ID_LENGTH);
      const entry = this.cache.peek(id);
      if (entry !== undefined && entry.record !== null && entry.digest !== null && entry.record.prefix.length === start - 1 && !this.missingChanges()) {
        const now = this.clock();
        if (now - this.epoch - entry.fetched < this.ttl && this.hasher.matches(key, entry.record.hashAlgorithm, entry.digest)) {
          if (this.prefixes !== null && !this.prefixes.has(entry.record.prefix)) return failure('MALFORMED');
          if (now - this.epoch - entry.touched >= RECENCY_STEP) {
            entry.touched = now - this.epoch;
            this.cache.get(id);
          }
          this.stats.hits++;
          return this.judge(entry, now, options, false);
        }
      }
    }
    const parsed = parseKey(key);
    if (!parsed.ok) return failure(parsed.reason === 'EMPTY' ? 'MISSING' : 'MALFORMED');
    if (this.prefixes !== null && !this.prefixes.has(parsed.prefix)) return failure('MALFORMED');
    const id = parsed.id;
    const now = this.clock();
    const entry = this.cache.get(id) ?? this.unknown.get(id);
    if (entry !== undefined && now - this.epoch - entry.fetched < (entry.record ? this.ttl : this.negativeTtl) && !this.missingChanges()) {
      this.stats.hits++;
      return this.decide(entry, key as string, now, options, false);
    }
    this.stats.misses++;
    return this.load(id).then(
      (fetched) => this.decide(fetched, key as string, this.clock(), options, false),
      () => {
        this.stats.storeErrors++;
        const t = this.clock();
        // Read the cache again: a change heard while the store read was under way removed the
        // entry, and a key this process knows has changed must not be served stale.
        const entry = this.cache.peek(id);
        if (entry?.record && this.staleWindow > 0 && t - this.epoch - entry.fetched < this.ttl + this.staleWindow) {
          this.stats.staleHits++;
          return this.decide(entry, key as string, t, options, true);
        }
        return this.unavailable;
      },
    );
  }

  /** Runs a verification (this very method, once more) and publishes its answer on `till:verify`. */
  private published(key: unknown, options?: VerifyOptions): MaybePromise<VerifyResult> {
    this.publishing = true;
    try {
      return publishVerification(this.till, this.stats, () => this.verify(key, options));
    } finally {
      this.publishing = false;
    }
  }

  /**
   * Whether changes made elsewhere may be going unheard (the store's invalidation subscription is
   * lost): the cache is then not trusted, and each key is read from the store (or, with the store
   * down, served within the stale window) until the subscription is back and the cache dropped.
   */
  private missingChanges(): boolean {
    return this.store.invalidationsLost?.() === true;
  }

  /** The owner of a key this process has cached (null: none; undefined: not cached). Memory only. */
  ownerOf(id: string): string | null | undefined {
    return this.cache.peek(id)?.record?.ownerId;
  }

  /**
   * Gives back what a successful verification was charged (limits, credits): a route guard after
   * `apiKeyAuth()` refused the request, and a refused request spends nothing. Resolves at once for a
   * result that was not charged.
   */
  refund(result: VerifyResult): Promise<void> {
    const receipt = this.receipts.get(result);
    if (receipt === undefined) return Promise.resolve();
    this.receipts.delete(result);
    return this.limiter.refund(receipt.request, receipt.result);
  }

  /** Drops a key from this process's cache (all keys when `id` is null). Called on every change. */
  invalidate(id: string | null): void {
    if (id === null) {
      this.cache.clear();
      this.unknown.clear();
      this.inflight.clear();
    } else {
      this.cache.delete(id);
      this.unknown.delete(id);
      this.inflight.delete(id);
    }
  }

  /** Stops listening for invalidations. The store stays open. */
  close(): void {
    this.unsubscribe?.();
    // Closed for good: a later verification does not subscribe again.
    this.unsubscribe = () => {};
  }

  private decide(entry: Entry, key: string, now: number, options: VerifyOptions | undefined, stale: boolean): MaybePromise<VerifyResult> {
    const record = entry.record;
    if (record === null) return failure('NOT_FOUND');
    // The hash covers the prefix too, so a key with another prefix and the same id fails here.
    if (entry.digest === null || !this.hasher.matches(key, record.hashAlgorithm, entry.digest)) {
      // A wrong secret for a real id: probing of that id, not a use of the key (ids are public), so
      // it is not counted on the key; the authenticator records it as such.
      return WRONG_SECRET;
    }
    return this.judge(entry, now, options, stale);
  }

  /** Status and scopes of a key whose digest matched. */
  private judge(entry: Entry, now: number, options: VerifyOptions | undefined, stale: boolean): MaybePromise<VerifyResult> {
    const record = entry.record!;
    const status = keyStatus(record, now);
    if (status !== 'active') {
      this.count(entry, STATUS_CODES[status], now);
      return this.fail(STATUS_CODES[status], record.id);
    }
    if (options?.scopes !== undefined && options.scopes.length > 0) {
      // Anything but 'any' means all: a misspelt mode must not weaken the check.
      const mode = options.scopeMode === 'any' ? 'any' : 'all';
      const ok = Array.isArray(options.scopes) && (mode === 'all' ? entry.scopes!.hasAll(options.scopes) : entry.scopes!.hasAny(options.scopes));
      if (!ok) {
        this.count(entry, 'INSUFFICIENT_SCOPE', now);
        return Object.freeze({ valid: false, code: 'INSUFFICIENT_SCOPE', keyId: record.id, requiredScopes: options.scopes, scopeMode: mode });
      }
    }
    if (entry.charged || (options?.limits !== undefined && options.limits.length > 0)) return this.charge(entry, options, stale, false);
    // Usage: an increment (the cached path's only bookkeeping). The counter is looked up, not held by
    // the cache entry: a cache of 100,000 keys would otherwise keep a counter for each.
    this.usage?.countValid(record.id, now);
    if (!stale) return entry.fresh!;
    return Object.freeze({ valid: true, code: 'VALID', key: entry.fresh!.key, stale: true });
  }

  /**
   * Charges the key's limits, the middleware's and the credits in one store call, which also
   * checks that the record is still the one verified: a key changed meanwhile (revoked, new
   * limits) is judged again on its new record, never charged on the old one.
   */
  private charge(entry: Entry, options: VerifyOptions | undefined, stale: boolean, retried: boolean): Promise<VerifyResult> {
    const record = entry.record!;
    const limits = chargesOf(entry, options?.limits);
    const cost = options?.cost ?? 1;
    const request = { subject: record.id, keyVersion: record.version, credits: record.credits, limits, cost };
    return this.limiter.consume(request, record.credits !== null && cost > 0).then((result): MaybePromise<VerifyResult> => {
      if (result === UNAVAILABLE) return this.unavailable;
      if (result.outcome === 'NOT_FOUND') {
        this.invalidate(record.id);
        return failure('NOT_FOUND');
      }
      if (result.outcome === 'CHANGED') {
        const next = this.entryOf(result.record);
        // An id's hash never changes; a record that says otherwise is not the key that was presented.
        // The same version answered CHANGED: the credits it charges were set anew by a newer key of its
        // rotation chain, and this record is not yet in step with it (a moment): refused, never looped.
        if (next.digest !== entry.digest || retried || result.record.version === record.version) {
          this.invalidate(record.id);
          return next.digest !== entry.digest ? failure('NOT_FOUND') : this.unavailable;
        }
        const cached = this.cache.peek(record.id);
        if (cached === undefined || cached.record === null || cached.record.version < next.record!.version) this.cache.set(record.id, next);
        const verdict = this.judge(next, this.clock(), options, stale);
        return verdict instanceof Promise || !verdict.valid || !next.charged ? verdict : this.charge(next, options, stale, true);
      }
      const usage: Usage = { limits: result.limits, credits: result.credits };
      const at = this.clock();
      if (result.outcome === 'OK') {
        this.count(entry, 'VALID', at);
        const success: VerifySuccess = { valid: true, code: 'VALID', key: entry.fresh!.key, stale, usage };
        this.receipts.set(success, { request, result });
        return success;
      }
      this.count(entry, result.outcome, at);
      const refused: VerifyFailure = { valid: false, code: result.outcome, keyId: record.id, usage };
      return result.retryAfter === null ? refused : { ...refused, retryAfter: Math.max(1, Math.ceil(result.retryAfter / 1000)) };
    });
  }

  private fail(code: FailureCode, keyId: string): VerifyFailure {
    return Object.freeze({ valid: false, code, keyId });
  }

  private entryOf(record: KeyRecord | null): Entry {
    return makeEntry(record, this.clock() - this.epoch);
  }

  /** Counts an outcome of a known key for usage tracking. */
  private count(entry: Entry, code: keyof typeof OUTCOME_INDEX, now: number): void {
    if (this.usage === undefined || entry.record === null) return;
    if (code === 'VALID') this.usage.countValid(entry.record.id, now);
    else countOutcome(this.usage.counter(entry.record.id), code);
  }

  /** One store read per id however many requests miss at once (single-flight). */
  private load(id: string): Promise<Entry> {
    let pending = this.inflight.get(id);
    if (pending === undefined) {
      // The id is a slice of the request's key: a copy of its own, so the cache and the maps below do
      // not keep the whole key (secret included) alive with it.
      id = copyOf(id);
      let read: Promise<KeyRecord | null>;
      try {
        read = this.store.get(id);
      } catch (error) {
        read = Promise.reject(error);
      }
      pending = read.then((record) => {
        const entry = this.entryOf(record);
        // A change that arrived while this read was under way invalidated it: do not cache it.
        if (this.inflight.get(id) === pending) {
          this.inflight.delete(id);
          if (entry.record !== null) {
            // Keyed by the record's own id string: one string per entry, not two.
            this.cache.set(entry.record.id === id ? entry.record.id : id, entry);
            this.unknown.delete(id);
          } else {
            this.unknown.set(id, entry);
            this.cache.delete(id);
          }
        }
        return entry;
      });
      const settle = pending;
      settle.catch(() => {
        if (this.inflight.get(id) === settle) this.inflight.delete(id);
      });
      this.inflight.set(id, pending);
    }
    return pending;
  }
}

const STATUS_CODES = {
  revoked: 'REVOKED',
  disabled: 'DISABLED',
  expired: 'EXPIRED',
  not_yet_valid: 'NOT_YET_VALID',
} as const;

type Charges = ReadonlyArray<LimitCharge & { readonly bucket: string }>;
const NO_CHARGES: Charges = Object.freeze([]);

/** Every limit a request with this key is charged: the key's own, then the middleware's. */
function chargesOf(entry: Entry, extra: Charges | undefined): Charges {
  if (extra === undefined || extra.length === 0) return entry.charges;
  if (entry.charges.length === 0) return extra;
  if (entry.joined?.extra !== extra) entry.joined = { extra, all: entry.charges.concat(extra) };
  return entry.joined.all;
}

/** A string with storage of its own (V8 makes a slice of 13 or more characters a view of its parent). */
function copyOf(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}

function makeEntry(record: KeyRecord | null, fetched: number): Entry {
  if (record === null) return { record: null, digest: null, scopes: null, fresh: null, charges: NO_CHARGES, charged: false, fetched, touched: fetched };
  const charges = record.limits.length === 0 ? NO_CHARGES : record.limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window, cost: 1, bucket: `k.${l.name}` }));
  return {
    // The digest is kept as bytes (digest); the record's base64url copy of it would be a second.
    record: withoutHash(record),
    digest: digestBytes(record.hash),
    scopes: scopeSetOf(record.scopes),
    fresh: Object.freeze({ valid: true, code: 'VALID', key: toVerifiedKey(record), stale: false }),
    charges,
    charged: charges.length > 0 || record.credits !== null,
    fetched,
    touched: fetched,
  };
}
