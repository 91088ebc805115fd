// The verifier: parse and check, then an LRU cache (key-cache.ts) with single-flight in front of the store. The V8
// and memory tuning of its cached path is in tuning.ts, its cache entry in entry.ts, its options in options.ts.
// One file because the cached path, the single-flight miss and the stale window read and write one cache
// under one clock: split, each part would reach into the others' state.
import { coarseClock, systemClock, type Clock } from '../util/clock.js';
import { createHasher, type KeyHasher } from '../key/hash.js';
import { ID_LENGTH, parseKey } from '../key/format.js';
import { newTillName, TillEvents } from '../audit/events.js';
import { verifyChannel } from '../observe/channels.js';
import { publishVerification } from '../observe/publish.js';
import { Limiter, UNAVAILABLE } from '../limits/limiter.js';
import { countOutcome, type UsageTracker } from '../audit/usage.js';
import {
  failure,
  WRONG_SECRET,
  type MaybePromise,
  type OutcomeCode,
  type Usage,
  type VerifyFailure,
  type VerifyResult,
  type VerifySuccess,
} from './outcome.js';
import type { KeyRecord } from '../store/record.js';
import type { ConsumeRequest, ConsumeResult, KeyStore, SubscriptionListener } from '../store/types.js';
import {
  chargedAlways,
  chargesOf,
  confirms,
  creditsOf,
  holdsRole,
  identityChargeOfEntry,
  identityVersionOf,
  ipPolicyOf,
  knownEntry,
  refusalAt,
  sameDigest,
  scopesOf,
  unknownEntry,
  versionOf,
  type Entry,
  type KnownEntry,
} from './entry.js';
import { verifierConfig, type ClientAddressOf, type VerifierOptions, type VerifyOptions } from './options.js';
import { KeyCache } from './key-cache.js';
import { CacheClock, hasIdAt, idOffset, noteUse, ownCopy } from './tuning.js';
import { RoleCache, withRoleScopes } from './roles.js';
import { roleOfMessage } from '../store/role.js';
import { IDENTITY_INVALIDATION, type IdentityRecord } from '../identity/record.js';

export type { CacheOptions, ClientAddressOf, VerifierOptions, VerifyOptions } from './options.js';

export interface VerifierStats {
  hits: number;
  misses: number;
  staleHits: number;
  storeErrors: number;
}

export class Verifier {
  readonly store: KeyStore;
  readonly stats: VerifierStats = { hits: 0, misses: 0, staleHits: 0, storeErrors: 0 };
  readonly clock: Clock;
  /** The clock of the cached path: the system clock read at most once per few ms (see coarseClock); an injected clock as it is. */
  private readonly cachedClock: Clock;
  /** The name its diagnostics messages carry. */
  readonly till: string;
  private readonly hasher: KeyHasher;
  private readonly prefixes: ReadonlySet<string> | null;
  /** Known keys. */
  private readonly cache: KeyCache<KnownEntry>;
  /** Unknown ids, apart from the keys: see CacheOptions.negativeMax. */
  private readonly unknown: KeyCache<Entry>;
  private readonly inflight = new Map<string, Promise<Entry>>();
  private readonly times: CacheClock;
  private readonly ttl: number;
  private readonly negativeTtl: number;
  private readonly staleWindow: number;
  /** Whether the store can lose its invalidation subscription (it has `invalidationsLost`): one field read on the cached path, not a method lookup. */
  private readonly canLoseChanges: boolean;
  /** Whether a confirmed key is kept to confirm its later presentations (see CacheOptions.hashEveryRequest). */
  private readonly keepsKeys: boolean;
  private readonly unavailable: VerifyFailure;
  private readonly limiter: Limiter;
  private readonly usage: UsageTracker | undefined;
  private readonly onSubscription: SubscriptionListener | undefined;
  private unsubscribe: (() => void) | null = null;
  /** True while `verify` runs inside its own publishing (a verification never calls another). */
  private publishing = false;
  /** How each charged success was charged, so that a guard that refuses the request later can undo it. */
  private readonly receipts = new WeakMap<VerifyResult, { request: Omit<ConsumeRequest, 'now'>; result: ConsumeResult }>();
  /** The roles keys hold, read once per cache TTL and dropped when they change. */
  private readonly roles: RoleCache;

  constructor(options: VerifierOptions) {
    const { cache, unavailableRetryAfter } = verifierConfig(options);
    this.store = options.store;
    this.canLoseChanges = typeof options.store.invalidationsLost === 'function';
    this.clock = options.clock ?? systemClock;
    this.cachedClock = this.clock === systemClock ? coarseClock() : this.clock;
    this.times = new CacheClock(this.clock);
    this.hasher = options.hasher ?? createHasher();
    this.prefixes = options.prefixes ? new Set(options.prefixes) : null;
    // Keyed by the key view's own id (see load), which the cache's last lookup keeps.
    this.cache = new KeyCache<KnownEntry>(cache.max, (entry) => entry.fresh.key.id);
    this.unknown = new KeyCache<Entry>(cache.negativeMax);
    this.ttl = cache.ttl;
    this.negativeTtl = cache.negativeTtl;
    this.staleWindow = cache.staleWindow;
    this.keepsKeys = !cache.hashEveryRequest;
    this.till = options.till ?? newTillName();
    this.limiter = options.limiter ?? new Limiter(this.store, this.clock, new TillEvents(undefined, this.till));
    this.usage = options.usage;
    this.onSubscription = options.onSubscription;
    this.unavailable = failure('STORE_UNAVAILABLE', { retryAfter: unavailableRetryAfter });
    this.roles = new RoleCache(this.store, this.ttl);
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
   * `ipOf(context)` reads the client's address (an adapter's `req.ip`), called only for a key with an
   * IP allowlist and only when `options.ip` is absent: no closure is made per request.
   */
  verify<C = never>(key: unknown, options?: VerifyOptions, ipOf?: ClientAddressOf<C>, context?: C): MaybePromise<VerifyResult> {
    return this.verifyIn(key, key, 0, options, ipOf, context);
  }

  /**
   * `verify()` of a key that lies in `text` from `offset` (a string key in itself from 0). The adapters pass
   * the header value the key was cut from: the constant-time comparison then reads a flat string, not
   * the slice (see KeyExtractor.origin). `text` is read only as far as the key's length.
   * @internal
   */
  verifyIn<C = never>(
    key: unknown,
    text: unknown,
    offset: number,
    options?: VerifyOptions,
    ipOf?: ClientAddressOf<C>,
    context?: C,
  ): MaybePromise<VerifyResult> {
    // Published only while someone subscribes to `till:verify`: otherwise one boolean read.
    if (verifyChannel.hasSubscribers && !this.publishing) return this.published(key, options, ipOf, context);
    if (this.unsubscribe === null) this.subscribe();
    // Fast path, a fresh cached key, matched before it is parsed (see idOffset) by a comparison with the
    // key the entry confirmed (a hash only on its first presentation). Only memory is read before the
    // parse, never the store. A key that does not match goes the slow way, which says why it failed.
    const idAt = idOffset(key);
    if (idAt >= 0) {
      // The key of the last lookup, known by its id read in place; any other, looked up by its id.
      let entry = this.cache.recent();
      let cachedId: string;
      if (entry !== undefined && hasIdAt(entry.fresh.key.id, text as string, offset + idAt)) cachedId = entry.fresh.key.id;
      else {
        cachedId = (key as string).slice(idAt, idAt + ID_LENGTH);
        entry = this.cache.peek(cachedId);
      }
      if (entry !== undefined && !this.missingChanges()) {
        const now = this.cachedClock();
        const at = this.times.at(now);
        if (at - entry.fetched < this.ttl && confirms(entry, key as string, this.hasher, this.keepsKeys, text as string, offset)) {
          if (this.prefixes !== null && !this.prefixes.has(entry.fresh.key.prefix)) return failure('MALFORMED');
          noteUse(this.cache, cachedId, entry, at);
          this.stats.hits++;
          return this.judge(entry, now, options, false, ipOf, context);
        }
      }
    }
    const parsed = parseKey(key);
    if (!parsed.ok) return failure(parsed.reason === 'EMPTY' ? 'MISSING' : 'MALFORMED');
    if (this.prefixes !== null && !this.prefixes.has(parsed.prefix)) return failure('MALFORMED');
    const id = parsed.id;
    const now = this.clock();
    const entry = this.cache.get(id) ?? this.unknown.get(id);
    if (entry !== undefined && this.times.at(now) - entry.fetched < (entry.fresh !== null ? this.ttl : this.negativeTtl) && !this.missingChanges()) {
      this.stats.hits++;
      return this.decide(entry, key as string, now, options, false, ipOf, context);
    }
    this.stats.misses++;
    return this.load(id).then(
      (fetched) => this.decide(fetched, key as string, this.clock(), options, false, ipOf, context),
      () => {
        this.stats.storeErrors++;
        const t = this.clock();
        // Read the cache again: a change heard while the store read was under way removed the
        // entry, and a key this process knows has changed must not be served stale.
        const known = this.cache.peek(id);
        if (known !== undefined && this.staleWindow > 0 && this.times.at(t) - known.fetched < this.ttl + this.staleWindow) {
          this.stats.staleHits++;
          return this.decide(known, key as string, t, options, true, ipOf, context);
        }
        return this.unavailable;
      },
    );
  }

  /** Runs a verification (this very method, once more) and publishes its answer on `till:verify`. */
  private published<C>(
    key: unknown,
    options: VerifyOptions | undefined,
    ipOf: ClientAddressOf<C> | undefined,
    context: C | undefined,
  ): MaybePromise<VerifyResult> {
    this.publishing = true;
    try {
      return publishVerification(this.till, this.stats, () => this.verify(key, options, ipOf, context));
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
    return this.canLoseChanges && this.store.invalidationsLost!() === true;
  }

  /** The owner of a key this process has cached (null: none; undefined: not cached). Memory only. */
  ownerOf(id: string): string | null | undefined {
    return this.cache.peek(id)?.fresh.key.ownerId;
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

  /**
   * Drops a key from this process's cache (all keys when `id` is null). Called on every change. A role's
   * change (`role:<name>`) drops the role and every cached key holding it, itself or by its identity (a
   * walk of the cache: roles change rarely), and the reads under way, which may have read the role
   * before the change. An identity's change (`identity:<id>`) drops every key of the identity the same way.
   */
  invalidate(id: string | null): void {
    if (id?.startsWith(IDENTITY_INVALIDATION)) {
      const identityId = id.slice(IDENTITY_INVALIDATION.length);
      this.cache.deleteWhere((entry) => entry.fresh.key.identityId === identityId);
      // A read under way may bring the identity as it was: none of them is cached.
      this.inflight.clear();
      return;
    }
    const role = id === null ? null : roleOfMessage(id);
    if (id === null) {
      this.cache.clear();
      this.unknown.clear();
      this.inflight.clear();
      this.roles.drop(null);
    } else if (role !== null) {
      this.roles.drop(role);
      this.inflight.clear();
      this.cache.deleteWhere((entry) => holdsRole(entry, role));
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

  private decide<C>(
    entry: Entry,
    key: string,
    now: number,
    options: VerifyOptions | undefined,
    stale: boolean,
    ipOf: ClientAddressOf<C> | undefined,
    context: C | undefined,
  ): MaybePromise<VerifyResult> {
    if (entry.fresh === null) return failure('NOT_FOUND');
    // The hash (and the confirmed key) cover the prefix too, so a key with another prefix and the same id fails here.
    if (!this.confirms(entry, key)) {
      // A wrong secret for a real id: probing of that id, not a use of the key (ids are public), so
      // it is not counted on the key; the authenticator records it as such.
      return WRONG_SECRET;
    }
    return this.judge(entry, now, options, stale, ipOf, context);
  }

  /** Whether `key` is the key of a cached entry (see confirms in entry.ts). */
  private confirms(entry: KnownEntry, key: string): boolean {
    return confirms(entry, key, this.hasher, this.keepsKeys);
  }

  /**
   * Status, client address and scopes of a key whose digest matched, then its charges. The address is
   * checked against the cached allowlists before anything is charged: a refused address spends nothing.
   */
  private judge<C>(
    entry: KnownEntry,
    now: number,
    options: VerifyOptions | undefined,
    stale: boolean,
    ipOf: ClientAddressOf<C> | undefined,
    context: C | undefined,
  ): MaybePromise<VerifyResult> {
    const id = entry.fresh.key.id;
    const refusal = refusalAt(entry, now);
    if (refusal !== null) {
      this.count(entry, refusal, now);
      return failure(refusal, { keyId: id });
    }
    const ips = ipPolicyOf(entry);
    if (ips !== null) {
      const address = options?.ip !== undefined ? options.ip : ipOf !== undefined ? ipOf(context as C) : undefined;
      if (!ips.allows(address)) {
        this.count(entry, 'IP_NOT_ALLOWED', now);
        return failure('IP_NOT_ALLOWED', { keyId: id });
      }
    }
    if (options?.scopes !== undefined && options.scopes.length > 0) {
      // Anything but 'any' means all: a misspelt mode must not weaken the check.
      const mode = options.scopeMode === 'any' ? 'any' : 'all';
      const ok = Array.isArray(options.scopes) && (mode === 'all' ? scopesOf(entry).hasAll(options.scopes) : scopesOf(entry).hasAny(options.scopes));
      if (!ok) {
        this.count(entry, 'INSUFFICIENT_SCOPE', now);
        return failure('INSUFFICIENT_SCOPE', { keyId: id, requiredScopes: options.scopes, scopeMode: mode });
      }
    }
    if (chargedAlways(entry) || (options?.limits !== undefined && options.limits.length > 0)) return this.charge(entry, options, stale, false, ipOf, context);
    // Usage: an increment (the cached path's only bookkeeping). The counter is looked up, not held by
    // the cache entry: a cache of 100,000 keys would otherwise keep a counter for each.
    this.usage?.countValid(id, now);
    if (!stale) return entry.fresh;
    return Object.freeze({ valid: true, code: 'VALID', key: entry.fresh.key, stale: true });
  }

  /**
   * Charges the key's limits, the middleware's and the credits in one store call, which also
   * checks that the record is still the one verified: a key changed meanwhile (revoked, new
   * limits) is judged again on its new record, never charged on the old one.
   */
  private charge<C>(
    entry: KnownEntry,
    options: VerifyOptions | undefined,
    stale: boolean,
    retried: boolean,
    ipOf: ClientAddressOf<C> | undefined,
    context: C | undefined,
  ): Promise<VerifyResult> {
    const id = entry.fresh.key.id;
    const limits = chargesOf(entry, options?.limits);
    const cost = options?.cost ?? 1;
    const credits = creditsOf(entry);
    const identity = identityChargeOfEntry(entry);
    const request =
      identity === undefined
        ? { subject: id, keyVersion: versionOf(entry), credits, limits, cost }
        : { subject: id, keyVersion: versionOf(entry), credits, limits, cost, identity };
    const spends = cost > 0 && (credits !== null || (identity !== undefined && identity.credits !== null));
    return this.limiter.consume(request, spends).then((result): MaybePromise<VerifyResult> => {
      if (result === UNAVAILABLE) return this.unavailable;
      if (result.outcome === 'NOT_FOUND') {
        this.invalidate(id);
        return failure('NOT_FOUND');
      }
      if (result.outcome === 'CHANGED') {
        return this.complete(result.record).then((read) => this.changed(entry, read.record, read.identity, options, stale, retried, ipOf, context));
      }
      const usage: Usage = { limits: result.limits, credits: result.credits };
      const at = this.clock();
      if (result.outcome === 'OK') {
        this.count(entry, 'VALID', at);
        const success: VerifySuccess = { valid: true, code: 'VALID', key: entry.fresh.key, stale, usage };
        this.receipts.set(success, { request, result });
        return success;
      }
      this.count(entry, result.outcome, at);
      return result.retryAfter === null
        ? failure(result.outcome, { keyId: id, usage })
        : failure(result.outcome, { keyId: id, usage, retryAfter: Math.max(1, Math.ceil(result.retryAfter / 1000)) });
    });
  }

  /**
   * A record as the verifier judges it: with its identity (null: none, or gone) and the scopes of its
   * roles and of its identity's roles joined to its own. On a miss only: one more read for an identity,
   * one for roles not cached.
   */
  private complete(record: KeyRecord): Promise<{ readonly record: KeyRecord; readonly identity: IdentityRecord | null }> {
    return this.withIdentity(record).then((identity) => {
      const identityRoles = identity === null || identity.id !== record.identityId ? [] : identity.roles;
      if (record.roles.length === 0 && identityRoles.length === 0) return { record, identity };
      const names = identityRoles.length === 0 ? record.roles : [...new Set([...record.roles, ...identityRoles])];
      return this.roles
        .resolve(names, this.times.at(this.clock()), !this.missingChanges(), () => this.times.at(this.clock()))
        .then((roles) => ({ record: withRoleScopes(record, roles, identityRoles), identity }));
    });
  }

  /** The identity a record names, read from the store (null: none, or gone). */
  private withIdentity(record: KeyRecord): Promise<IdentityRecord | null> {
    const identityId = record.identityId ?? null;
    if (identityId === null || typeof this.store.getIdentity !== 'function') return Promise.resolve(null);
    try {
      return this.store.getIdentity(identityId);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A charge that found the key (or its identity) changed (`record`, roles joined): judged again on the new record, charged at most once more. */
  private changed<C>(
    entry: KnownEntry,
    record: KeyRecord,
    identity: IdentityRecord | null,
    options: VerifyOptions | undefined,
    stale: boolean,
    retried: boolean,
    ipOf: ClientAddressOf<C> | undefined,
    context: C | undefined,
  ): MaybePromise<VerifyResult> {
    const id = entry.fresh.key.id;
    const next = knownEntry(record, this.times.at(this.clock()), identity);
    // An id's hash never changes; a record that says otherwise is not the key that was presented.
    // The same version answered CHANGED: the credits it charges were set anew by a newer key of its
    // rotation chain, and this record is not yet in step with it (a moment): refused, never looped.
    const sameHash = sameDigest(entry, next, this.hasher, this.keepsKeys);
    if (!sameHash || retried || (versionOf(next) === versionOf(entry) && identityVersionOf(next) === identityVersionOf(entry))) {
      this.invalidate(id);
      return sameHash ? this.unavailable : failure('NOT_FOUND');
    }
    const cached = this.cache.peek(id);
    if (cached === undefined || versionOf(cached) < versionOf(next) || identityVersionOf(cached) !== identityVersionOf(next)) this.cache.set(id, next);
    const verdict = this.judge(next, this.clock(), options, stale, ipOf, context);
    return verdict instanceof Promise || !verdict.valid || !chargedAlways(next) ? verdict : this.charge(next, options, stale, true, ipOf, context);
  }

  /** Counts an outcome of a known key for usage tracking. */
  private count(entry: KnownEntry, code: OutcomeCode, now: number): void {
    if (this.usage === undefined) return;
    if (code === 'VALID') this.usage.countValid(entry.fresh.key.id, now);
    else countOutcome(this.usage.counter(entry.fresh.key.id), code);
  }

  /** The entry of a record read by load() for `pending`, cached unless a change arrived while the read was under way. */
  private loaded(id: string, pending: Promise<Entry>, record: KeyRecord | null, identity: IdentityRecord | null): Entry {
    const fetched = this.times.at(this.clock());
    const entry = record === null ? unknownEntry(fetched) : knownEntry(record, fetched, identity);
    // A change that arrived while this read was under way invalidated it: do not cache it.
    if (this.inflight.get(id) === pending) {
      this.inflight.delete(id);
      if (entry.fresh !== null) {
        // Keyed by the key view's own id string: one string per entry, not two.
        this.cache.set(entry.fresh.key.id === id ? entry.fresh.key.id : id, entry);
        this.unknown.delete(id);
      } else {
        this.unknown.set(id, entry);
        this.cache.delete(id);
      }
    }
    return entry;
  }

  /** One store read per id however many requests miss at once (single-flight). */
  private load(id: string): Promise<Entry> {
    let pending = this.inflight.get(id);
    if (pending === undefined) {
      // The id is a slice of the request's key (see ownCopy).
      id = ownCopy(id);
      let read: Promise<KeyRecord | null>;
      try {
        read = this.store.get(id);
      } catch (error) {
        read = Promise.reject(error);
      }
      const loaded = (record: KeyRecord | null, identity: IdentityRecord | null): Entry => this.loaded(id, pending!, record, identity);
      // A key of an identity, or holding roles: its identity and roles read too (on a miss only). Any
      // other (most keys): its entry made in this very callback, without a promise more per miss.
      pending = read.then((stored) =>
        stored === null || ((stored.identityId ?? null) === null && stored.roles.length === 0)
          ? loaded(stored, null)
          : this.complete(stored).then(({ record, identity }) => loaded(record, identity)),
      );
      const settle = pending;
      settle.catch(() => {
        if (this.inflight.get(id) === settle) this.inflight.delete(id);
      });
      this.inflight.set(id, pending);
    }
    return pending;
  }
}
