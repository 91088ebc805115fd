// The store contract every backend implements and the conformance suite checks.
// One file because it is one contract: the KeyStore interface and the shapes its methods take and give,
// which a store's author reads together.
import type { ChargeOutcome, Credits, LimitCharge, LimitState } from '../limits/rules.js';
import type { AuditPage, AuditQuery, AuditRecord } from '../audit/trail.js';
import type { KeyRecord } from './record.js';
import type { RoleRecord } from './role.js';
import type { OutcomeCode } from '../verify/outcome.js';
import type { IdentityRecord } from '../identity/record.js';

/** One key's counts for one day (UTC, `YYYY-MM-DD`), by outcome: what usage tracking writes to a store. */
export interface UsageBatchItem {
  readonly keyId: string;
  readonly day: string;
  readonly counts: Readonly<Partial<Record<OutcomeCode, number>>>;
  /** When the key last verified (VALID) in this batch, epoch ms; null when it did not. */
  readonly lastUsedAt: number | null;
}

/** What a store says of a key's use. */
export interface KeyUsage {
  /** When the key last verified, as far as the flushed batches tell; null: never (or not yet flushed). */
  readonly lastUsedAt: number | null;
  /** Requests by day (newest first) and outcome, for the days asked. */
  readonly days: ReadonlyArray<{ readonly day: string; readonly counts: Readonly<Partial<Record<OutcomeCode, number>>>; readonly total: number }>;
}

export interface ListKeysQuery {
  /** Only keys of this owner. */
  ownerId?: string;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Page size, 1-1000; default 100. */
  limit?: number;
  /** Only keys of this identity. */
  identityId?: string;
}

export interface KeyPage {
  readonly keys: KeyRecord[];
  /** Present when there may be more: pass it back as `cursor`. */
  readonly cursor?: string;
}

/** Called with a key id whose record changed, or `null` when every cached record may be stale. */
export type InvalidationListener = (id: string | null) => void;

/**
 * Told how the invalidation subscription stands: an error when the store could not subscribe (a
 * refused SUBSCRIBE: changes made elsewhere go unheard until it can), null once it is confirmed.
 */
export type SubscriptionListener = (error: Error | null) => void;

/** One request's charge against rate limits (and, for an API key, its credits). */
export interface ConsumeRequest {
  /**
   * Whose limits these are: an API key id, or another subject (like `ip:203.0.113.7`) for limits
   * that belong to no key. Limits of one subject live together (one hash tag on Redis).
   */
  readonly subject: string;
  /**
   * For an API key: the version of the record the caller verified. The store then reads the record
   * in the same atomic step: `NOT_FOUND` when it is gone, `CHANGED` (with the record) when its
   * version differs, and otherwise charges the record's credits by `cost`.
   */
  readonly keyVersion?: number;
  /**
   * With `keyVersion`: the key's credit policy as the record of that version holds it (null: none).
   * The store reads only the version per request, so the caller's copy of the rest must come along.
   */
  readonly credits?: Credits | null;
  /** Limits to charge, all or nothing. `bucket` (default `name`) names each limit's state. */
  readonly limits: ReadonlyArray<LimitCharge & { readonly bucket?: string }>;
  /** Credits to spend (with `keyVersion`). Default 0. */
  readonly cost?: number;
  /** The caller's time, epoch ms. The Redis store uses the server's clock unless told otherwise. */
  readonly now: number;
  /**
   * For a key of an identity: the identity's charge, made all or nothing with the key's (see
   * IdentityCharge). `CHANGED` then also answers an identity that is gone or of another version.
   */
  readonly identity?: IdentityCharge;
}

/**
 * The identity's part of a key's charge: its limits (each request costs 1 of each) and its credits
 * (the request's `cost`, spent from the identity's credits as well as from the key's own when both
 * have some), as the caller's copy of the identity of `version` holds them.
 */
export interface IdentityCharge {
  readonly id: string;
  readonly version: number;
  readonly credits: Credits | null;
  readonly limits: ReadonlyArray<LimitCharge & { readonly bucket?: string }>;
}

export interface ListIdentitiesQuery {
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Page size, 1-1000; default 100. */
  limit?: number;
}

export interface IdentityPage {
  readonly identities: IdentityRecord[];
  /** Present when there may be more: pass it back as `cursor`. */
  readonly cursor?: string;
}

export type ConsumeResult =
  | {
      readonly outcome: ChargeOutcome;
      readonly limits: readonly LimitState[];
      /** Credits left; null when the key has none (or the subject is not a key). */
      readonly credits: number | null;
      /** Milliseconds until the same request may be admitted (0 when admitted; null: never). */
      readonly retryAfter: number | null;
    }
  | { readonly outcome: 'NOT_FOUND' }
  | { readonly outcome: 'CHANGED'; readonly record: KeyRecord };

export interface KeyStore {
  /** A short name for messages and events: `memory`, `redis`. */
  readonly kind: string;
  /** The record of `id`, or null. Rejects with a TillError when the store cannot answer. */
  get(id: string): Promise<KeyRecord | null>;
  /**
   * Saves a new record, and `audit` in the key's trail in the same atomic step (never one without the
   * other); rejects with TillError `KEY_EXISTS` if the id is taken.
   */
  insert(record: KeyRecord, audit?: AuditRecord): Promise<void>;
  /**
   * Replaces a record only if its stored version is still `expectedVersion` (compare-and-set), and
   * tells every process sharing the store to drop the id from its cache. Resolves false on a lost
   * race; rejects with `KEY_NOT_FOUND` when there is no such record, and with `NOT_ANNOUNCED` when the
   * record was replaced but the other processes could not be told (they serve the old one until their
   * cache TTL): never half done in silence.
   */
  replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean>;
  /**
   * Deletes a record (and its version, credits and rate-limit state) if its version is still
   * `expectedVersion`, with `audit` in the trail in the same step, and tells every process. Resolves
   * false on a lost race; rejects with `KEY_NOT_FOUND` when there is no such record, and with
   * `NOT_ANNOUNCED` when it was deleted but the other processes could not be told.
   */
  remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean>;
  /** Adds entries that record no change (security events). Best effort: they may be lost in a crash. */
  appendAudit(entries: readonly AuditRecord[]): Promise<void>;
  /** Reads the trail, oldest first. An admin path: never called per request. */
  readAudit(query?: AuditQuery): Promise<AuditPage>;
  /**
   * Adds a batch of usage counts (from every process: counts add up) and last-used times (the latest
   * wins). With `batchId` (`<writer>.<seq in base 36>`, seq increasing per writer), at most once: a
   * key's counts from a batch of a writer are skipped when that key has counts of this batch or a
   * later one of the same writer (a writer resends a batch whose write failed, and sends nothing
   * newer until it is settled).
   */
  recordUsage(batch: readonly UsageBatchItem[], batchId?: string): Promise<void>;
  /** A key's last use and its counts for the last `days` days (UTC, today included). Admin path. */
  readUsage(id: string, days: number): Promise<KeyUsage>;
  /** Keys in creation order, a page at a time. An admin path: never called per request. */
  list(query?: ListKeysQuery): Promise<KeyPage>;
  /**
   * Charges a request against rate limits and credits in one atomic step (one round trip on Redis):
   * when any limit or the credits refuse, nothing is charged.
   */
  consume(request: ConsumeRequest): Promise<ConsumeResult>;
  /**
   * Optional: gives back a charge that `consume` admitted (the same request, at a later `now`), because
   * a later guard refused the request: each limit's state becomes what it would be had the charge
   * never been made, and the credits get its cost back unless they were set anew since. A store
   * without it keeps the charge.
   */
  refund?(request: ConsumeRequest): Promise<void>;
  /**
   * Optional: resolves once the store's changes so far are safe from the loss of one server (replicated
   * as configured), or rejects with TillError `NOT_REPLICATED`. The key manager calls it after changes
   * that take access away or may (revoke, disable, delete, update) and after a rotation (the old key's
   * new expiry); the CLI also after a creation or an enabling when asked to (`--replicas`).
   */
  confirmChanges?(): Promise<void>;
  /**
   * Subscribes to invalidations from every process sharing the store; returns the unsubscribe.
   * `onStatus` hears whether the subscription could be made (stores that cannot fail ignore it).
   */
  onInvalidate(listener: InvalidationListener, onStatus?: SubscriptionListener): () => void;
  /**
   * Optional: true while changes made elsewhere may go unheard: the store was asked to listen and its
   * subscription is not confirmed right now (not yet, refused, or its connection dropped). The
   * verifier then reads keys from the store rather than trusting its cache, until the subscription is
   * confirmed (which drops the whole cache). Stores whose invalidations cannot be lost leave it out.
   */
  invalidationsLost?(): boolean;
  /** Releases what the store opened itself (never a client the application passed in). */
  close(): Promise<void>;
  /**
   * Optional: the keys whose expiry falls within a range, soonest first (then by id), read from the
   * expiry index the store keeps in the same atomic step as insert, replace and remove (never a scan
   * of every key). The index holds the keys that have an expiry and are neither revoked nor superseded
   * by a rotation (see `indexedExpiry`). An admin path: never called per request.
   */
  expiring?(query: ExpiringQuery): Promise<ExpiringPage>;
  /**
   * Optional: claims the reminder of key `id` for its expiry `expiresAt`, for every process sharing the
   * store: true once (the caller then sends it), false after, and false when the index no longer holds
   * that expiry for the key (changed, revoked, deleted). A changed expiry can be claimed anew.
   */
  claimReminder?(id: string, expiresAt: number): Promise<boolean>;
  /**
   * Optional: rebuilds the expiry index from the records themselves, for keys written before the store
   * kept one (stores that always kept it have nothing to do). Idempotent, safe beside live changes.
   */
  reindexExpiries?(): Promise<ReindexResult>;
  /**
   * Optional (roles): saves a role if its stored version is still `expectedVersion` (null: only if there
   * is no role of that name), with `audit` in the change log in the same step, and tells every process
   * (`role:<name>` on the invalidation channel). Resolves false on a lost race; rejects with
   * `NOT_ANNOUNCED` when saved but not announced. A store without the role methods has no roles.
   */
  saveRole?(role: RoleRecord, expectedVersion: number | null, audit?: AuditRecord): Promise<boolean>;
  /** Optional (roles): deletes a role if its version is still `expectedVersion`, with `audit`, and tells every process. False on a lost race or no role. */
  removeRole?(name: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean>;
  /** Optional (roles): the roles of these names, in order, null for each that does not exist. One round trip. */
  getRoles?(names: readonly string[]): Promise<Array<RoleRecord | null>>;
  /** Optional (roles): every role, by name. An admin path. */
  listRoles?(): Promise<RoleRecord[]>;
  /** Optional (identities): the identity `id`, or null. */
  getIdentity?(id: string): Promise<IdentityRecord | null>;
  /** Optional (identities): saves a new identity with `audit`, in one atomic step; rejects with IDENTITY_EXISTS if the id is taken. */
  insertIdentity?(record: IdentityRecord, audit?: AuditRecord): Promise<void>;
  /**
   * Optional (identities): compare-and-set of an identity, with `audit`, telling every process to drop
   * the identity's keys from its cache (`identity:<id>` on the invalidation listeners). False on a lost
   * race; IDENTITY_NOT_FOUND when there is none; NOT_ANNOUNCED as for `replace`.
   */
  replaceIdentity?(record: IdentityRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean>;
  /** Optional (identities): deletes an identity (and its credits) if its version is still `expectedVersion`; as `replaceIdentity` otherwise. */
  removeIdentity?(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean>;
  /** Optional (identities): identities in creation order, a page at a time. Admin path. */
  listIdentities?(query?: ListIdentitiesQuery): Promise<IdentityPage>;
  /** Optional (identities): how many keys name the identity. Admin path. */
  countIdentityKeys?(id: string): Promise<number>;
}

/** Entries of the expiry index within `[from, to]` (epoch ms, both included), at most `limit` (1-10,000). */
export interface ExpiringQuery {
  readonly from: number;
  readonly to: number;
  readonly limit: number;
}

/** One entry of the expiry index. */
export interface ExpiringEntry {
  readonly id: string;
  readonly expiresAt: number;
}

export interface ExpiringPage {
  /** Soonest first, then by id. */
  readonly entries: ExpiringEntry[];
  /** True when the range holds more entries than `limit`. */
  readonly more: boolean;
  /**
   * False when the store holds keys written before it kept the index that are not indexed yet (too
   * many to index on first use): run `reindexExpiries()` (`till audit --reindex`).
   */
  readonly complete: boolean;
}

export interface ReindexResult {
  /** Records read. */
  readonly checked: number;
  /** Of them, those now in the index. */
  readonly indexed: number;
}

/** Most entries one expiry-index read returns. */
export const MAX_EXPIRING_PAGE = 10_000;

/** The members of the contract that the store answers with a promise; the others (kind, onInvalidate, invalidationsLost, close) a wrapper answers itself. */
export const ASYNC_METHODS = [
  'get',
  'insert',
  'replace',
  'remove',
  'list',
  'consume',
  'refund',
  'confirmChanges',
  'appendAudit',
  'readAudit',
  'recordUsage',
  'readUsage',
  'expiring',
  'claimReminder',
  'reindexExpiries',
  'saveRole',
  'removeRole',
  'getRoles',
  'listRoles',
  'getIdentity',
  'insertIdentity',
  'replaceIdentity',
  'removeIdentity',
  'listIdentities',
  'countIdentityKeys',
] as const satisfies ReadonlyArray<keyof KeyStore>;

/** A store method answered with a promise (see ASYNC_METHODS). */
export type AsyncMethod = (typeof ASYNC_METHODS)[number];

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
