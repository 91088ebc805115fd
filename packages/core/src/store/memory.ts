// The embedded default store: records in a Map, serialized so callers can never alias stored state.
// One file because keys, identities and their charges share one map of versions and one set of buckets,
// read and changed together in one turn: split, each part would reach into the others' state.
import { tillError } from '../errors.js';
import { decodeRecord, encodeRecord, type KeyRecord } from './record.js';
import type { AuditPage, AuditQuery, AuditRecord } from '../audit/trail.js';
import type { Credits } from '../limits/rules.js';
import { MemoryAuditLog } from './audit-log.js';
import { dayOf, parseBatchId } from '../audit/usage.js';
import type { OutcomeCode } from '../verify/outcome.js';
import { LocalBuckets } from '../limits/buckets.js';
import { leastOf } from '../limits/rules.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from './cursor.js';
import type { ExpiringPage, ExpiringQuery, ReindexResult } from './types.js';
import { checkExpiringQuery, indexedExpiry, MemoryExpiryIndex } from './expiry.js';
import { decodeRole, encodeRole, roleMessage, type RoleRecord } from './role.js';
import type {
  ConsumeRequest,
  ConsumeResult,
  IdentityPage,
  InvalidationListener,
  KeyPage,
  KeyStore,
  KeyUsage,
  ListIdentitiesQuery,
  ListKeysQuery,
  UsageBatchItem,
} from './types.js';
import { decodeIdentity, encodeIdentity, IDENTITY_INVALIDATION, IDENTITY_SUBJECT, identitySubject, type IdentityRecord } from '../identity/record.js';

/**
 * Keeps keys in this process only: for demos, tests and single-process apps. Records are kept as
 * JSON so a caller mutating what it got back cannot change what is stored. Verifiers sharing one
 * memory store hear each other's invalidations, as processes sharing one Redis do.
 */
export interface MemoryStoreOptions {
  /** Most audit entries kept of changes, and apart from them of security events (the oldest go first). Default 10,000. */
  auditMaxLength?: number;
}

export class MemoryStore implements KeyStore {
  readonly kind = 'memory';
  private readonly audit: MemoryAuditLog;
  private readonly usage = new Map<string, { last: number | null; days: Map<string, Partial<Record<OutcomeCode, number>>> }>();
  /** The newest usage batch applied, per writer. */
  private readonly appliedBatches = new Map<string, number>();

  constructor(options: MemoryStoreOptions = {}) {
    const max = options.auditMaxLength ?? 10_000;
    if (!Number.isInteger(max) || max < 1) throw tillError('INVALID_OPTIONS', 'memory', 'auditMaxLength must be a positive integer');
    this.audit = new MemoryAuditLog(max);
  }

  private readonly records = new Map<string, string>();
  /** Ids in creation order (createdAt, then id), for paging. */
  private order: Array<{ createdAt: number; id: string; ownerId: string | null }> = [];
  private readonly listeners = new Set<InvalidationListener>();
  /** Each record's version, kept beside the JSON so charging never parses it. */
  private readonly versions = new Map<string, number>();
  private readonly buckets = new LocalBuckets();
  /** Expiry times, changed with each record (the same synchronous step). */
  private readonly expiries = new MemoryExpiryIndex();
  /** Identities as JSON, in creation order for paging, and the keys that name each. */
  private readonly identities = new Map<string, string>();
  private identityOrder: Array<{ createdAt: number; id: string }> = [];
  private readonly identityKeys = new Map<string, Set<string>>();
  /** Each identity's version, beside its JSON, so charging never parses it. */
  private readonly identityVersions = new Map<string, number>();

  async get(id: string): Promise<KeyRecord | null> {
    const json = this.records.get(id);
    return json === undefined ? null : decodeRecord(json);
  }

  async insert(record: KeyRecord, audit?: AuditRecord): Promise<void> {
    if (this.records.has(record.id)) throw tillError('KEY_EXISTS', 'memory', `key ${record.id} exists`);
    if (audit !== undefined) this.audit.append(audit);
    this.records.set(record.id, encodeRecord(record));
    this.versions.set(record.id, record.version);
    this.expiries.set(record.id, indexedExpiry(record));
    this.indexIdentity(record.id, null, record.identityId ?? null);
    const entry = { createdAt: record.createdAt, id: record.id, ownerId: record.ownerId };
    let i = this.order.length;
    while (i > 0 && !isAfter(entry.createdAt, entry.id, this.order[i - 1]!)) i--;
    this.order.splice(i, 0, entry);
  }

  async replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const current = this.records.get(record.id);
    if (current === undefined) throw tillError('KEY_NOT_FOUND', 'memory', `no key ${record.id}`);
    const old = decodeRecord(current);
    if (old.version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    this.indexIdentity(record.id, old.identityId ?? null, record.identityId ?? null);
    this.records.set(record.id, encodeRecord(record));
    this.versions.set(record.id, record.version);
    this.expiries.set(record.id, indexedExpiry(record));
    this.emit(record.id);
    return true;
  }

  async remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const version = this.versions.get(id);
    if (version === undefined) throw tillError('KEY_NOT_FOUND', 'memory', `no key ${id}`);
    if (version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    const removed = decodeRecord(this.records.get(id)!);
    const superseded = removed.rotatedTo !== null;
    this.indexIdentity(id, removed.identityId ?? null, null);
    this.records.delete(id);
    this.versions.delete(id);
    this.expiries.set(id, null);
    this.order = this.order.filter((e) => e.id !== id);
    // A superseded key's credit count may be its chain's, still charged by the keys that replaced it.
    this.buckets.forget(id, superseded);
    this.emit(id);
    return true;
  }

  async appendAudit(entries: readonly AuditRecord[]): Promise<void> {
    for (const entry of entries) this.audit.append(entry);
  }

  async readAudit(query?: AuditQuery): Promise<AuditPage> {
    return this.audit.read(query);
  }

  async recordUsage(batch: readonly UsageBatchItem[], batchId?: string): Promise<void> {
    // A batch is applied whole here: one number per writer says which ones were.
    if (batchId !== undefined) {
      const [writer, seq] = parseBatchId(batchId);
      if ((this.appliedBatches.get(writer) ?? -1) >= seq) return;
      this.appliedBatches.set(writer, seq);
    }
    for (const item of batch) {
      let usage = this.usage.get(item.keyId);
      if (usage === undefined) this.usage.set(item.keyId, (usage = { last: null, days: new Map() }));
      const counts = usage.days.get(item.day) ?? {};
      for (const [code, n] of Object.entries(item.counts) as Array<[OutcomeCode, number]>) counts[code] = (counts[code] ?? 0) + n;
      usage.days.set(item.day, counts);
      if (item.lastUsedAt !== null && (usage.last === null || item.lastUsedAt > usage.last)) usage.last = item.lastUsedAt;
    }
  }

  async readUsage(id: string, days: number): Promise<KeyUsage> {
    const usage = this.usage.get(id);
    const out: Array<{ day: string; counts: Partial<Record<OutcomeCode, number>>; total: number }> = [];
    const today = Date.parse(`${dayOf(Date.now())}T00:00:00Z`);
    for (let i = 0; i < days; i++) {
      const day = dayOf(today - i * 86_400_000);
      const counts = { ...(usage?.days.get(day) ?? {}) };
      out.push({ day, counts, total: Object.values(counts).reduce((a, b) => a + b, 0) });
    }
    return { lastUsedAt: usage?.last ?? null, days: out };
  }

  async list(query: ListKeysQuery = {}): Promise<KeyPage> {
    const limit = pageSize(query.limit);
    const after = decodeCursor(query.cursor);
    const keys: KeyRecord[] = [];
    for (const entry of this.order) {
      if (!isAfter(entry.createdAt, entry.id, after)) continue;
      if (query.ownerId !== undefined && entry.ownerId !== query.ownerId) continue;
      if (query.identityId !== undefined && !this.identityKeys.get(query.identityId)?.has(entry.id)) continue;
      if (keys.length === limit) {
        const last = keys[keys.length - 1]!;
        return { keys, cursor: encodeCursor(last) };
      }
      keys.push(decodeRecord(this.records.get(entry.id)!));
    }
    return { keys };
  }

  async consume(request: ConsumeRequest): Promise<ConsumeResult> {
    if (request.identity !== undefined) return this.consumeWithIdentity(request);
    return this.consumeKey(request);
  }

  /**
   * A key's charge with its identity's, all or nothing: the identity's part is charged first, then
   * the key's; when the key refuses, the identity's is given back at the same instant (exactly what it
   * was). Both run in one turn of this process, so no other charge comes between.
   */
  private consumeWithIdentity(request: ConsumeRequest): ConsumeResult {
    const identity = request.identity!;
    const version = this.versions.get(request.subject);
    if (version === undefined) return { outcome: 'NOT_FOUND' };
    const reservation = this.identityReservation(request);
    if (
      this.identityVersions.get(identity.id) !== identity.version ||
      (identity.credits !== null && this.buckets.creditsOutdated(reservation.subject, identity.credits))
    )
      return { outcome: 'CHANGED', record: decodeRecord(this.records.get(request.subject)!) };
    const own = this.consumeKey(request);
    if (own.outcome !== 'OK') return own;
    const held = this.buckets.consume(reservation.subject, reservation.limits, reservation.credits, request.now);
    if (held.outcome !== 'OK') {
      this.refundKey(request);
      // The key's state as it is again (a charge of nothing reads it), for the refusal's report.
      const now = this.consumeKey({ ...request, cost: 0, limits: request.limits.map((c) => ({ ...c, cost: 0 })) });
      const limits = 'limits' in now ? now.limits : own.limits;
      return { ...held, limits: limits.concat(held.limits), credits: leastOf('credits' in now ? now.credits : own.credits, held.credits) };
    }
    return { ...own, limits: own.limits.concat(held.limits), credits: leastOf(own.credits, held.credits) };
  }

  private identityReservation(request: ConsumeRequest): {
    subject: string;
    limits: NonNullable<ConsumeRequest['identity']>['limits'];
    credits: { policy: Credits; cost: number } | null;
  } {
    const identity = request.identity!;
    return {
      subject: identitySubject(identity.id),
      limits: identity.limits,
      credits: identity.credits === null ? null : { policy: identity.credits, cost: request.cost ?? 0 },
    };
  }

  private consumeKey(request: ConsumeRequest): ConsumeResult {
    let credits: { policy: Credits; cost: number } | null = null;
    if (request.keyVersion !== undefined) {
      // An identity charged as a subject of its own (its live credits read): as on Redis, a change is NOT_FOUND to its caller.
      const identity = request.subject.startsWith(IDENTITY_SUBJECT) ? request.subject.slice(IDENTITY_SUBJECT.length) : null;
      const version = identity === null ? this.versions.get(request.subject) : this.identityVersions.get(identity);
      if (version === undefined) return { outcome: 'NOT_FOUND' };
      const changed = (): ConsumeResult =>
        identity === null ? { outcome: 'CHANGED', record: decodeRecord(this.records.get(request.subject)!) } : { outcome: 'NOT_FOUND' };
      if (version !== request.keyVersion) return changed();
      // As on Redis: the caller's copy of the record of this version says what the credits are.
      if (request.credits) {
        if (this.buckets.creditsOutdated(request.subject, request.credits)) return changed();
        credits = { policy: request.credits, cost: request.cost ?? 0 };
      }
    }
    return this.buckets.consume(request.subject, request.limits, credits, request.now);
  }

  async refund(request: ConsumeRequest): Promise<void> {
    if (request.identity !== undefined) {
      const reservation = this.identityReservation(request);
      this.buckets.refund(reservation.subject, reservation.limits, reservation.credits, request.now);
    }
    this.refundKey(request);
  }

  private refundKey(request: ConsumeRequest): void {
    const credits = request.keyVersion !== undefined && request.credits ? { policy: request.credits, cost: request.cost ?? 0 } : null;
    this.buckets.refund(request.subject, request.limits, credits, request.now);
  }

  onInvalidate(listener: InvalidationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  async expiring(query: ExpiringQuery): Promise<ExpiringPage> {
    return this.expiries.range(checkExpiringQuery(query, 'memory'));
  }

  async claimReminder(id: string, expiresAt: number): Promise<boolean> {
    return this.expiries.claim(id, expiresAt);
  }

  /** This store has kept the index since it was made: rebuilding it finds it as it is. */
  async reindexExpiries(): Promise<ReindexResult> {
    let indexed = 0;
    for (const [id, json] of this.records) {
      const expiresAt = indexedExpiry(decodeRecord(json));
      this.expiries.set(id, expiresAt);
      if (expiresAt !== null) indexed++;
    }
    return { checked: this.records.size, indexed };
  }

  private emit(id: string): void {
    for (const listener of this.listeners) listener(id);
  }

  /** Roles by name, as JSON. */
  private readonly roles = new Map<string, string>();

  async saveRole(role: RoleRecord, expectedVersion: number | null, audit?: AuditRecord): Promise<boolean> {
    const current = this.roles.get(role.name);
    if ((current === undefined ? null : decodeRole(current).version) !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    this.roles.set(role.name, encodeRole(role));
    this.emit(roleMessage(role.name));
    return true;
  }

  async removeRole(name: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const current = this.roles.get(name);
    if (current === undefined || decodeRole(current).version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    this.roles.delete(name);
    this.emit(roleMessage(name));
    return true;
  }

  async getRoles(names: readonly string[]): Promise<Array<RoleRecord | null>> {
    return names.map((name) => {
      const json = this.roles.get(name);
      return json === undefined ? null : decodeRole(json);
    });
  }

  async listRoles(): Promise<RoleRecord[]> {
    return [...this.roles.keys()].sort().map((name) => decodeRole(this.roles.get(name)!));
  }

  /** Moves a key from one identity's set of keys to another's. */
  private indexIdentity(keyId: string, from: string | null, to: string | null): void {
    if (from === to) return;
    if (from !== null) this.identityKeys.get(from)?.delete(keyId);
    if (to !== null) {
      let keys = this.identityKeys.get(to);
      if (keys === undefined) this.identityKeys.set(to, (keys = new Set()));
      keys.add(keyId);
    }
  }

  async getIdentity(id: string): Promise<IdentityRecord | null> {
    const json = this.identities.get(id);
    return json === undefined ? null : decodeIdentity(json);
  }

  async insertIdentity(record: IdentityRecord, audit?: AuditRecord): Promise<void> {
    if (this.identities.has(record.id)) throw tillError('IDENTITY_EXISTS', 'memory', `identity ${record.id} exists`);
    if (audit !== undefined) this.audit.append(audit);
    this.identities.set(record.id, encodeIdentity(record));
    this.identityVersions.set(record.id, record.version);
    const entry = { createdAt: record.createdAt, id: record.id };
    let i = this.identityOrder.length;
    while (i > 0 && !isAfter(entry.createdAt, entry.id, this.identityOrder[i - 1]!)) i--;
    this.identityOrder.splice(i, 0, entry);
    // Keys that named an identity of this id before (deleted with force) are cached as disabled.
    this.emit(`${IDENTITY_INVALIDATION}${record.id}`);
  }

  async replaceIdentity(record: IdentityRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const current = this.identities.get(record.id);
    if (current === undefined) throw tillError('IDENTITY_NOT_FOUND', 'memory', `no identity ${record.id}`);
    if (decodeIdentity(current).version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    this.identities.set(record.id, encodeIdentity(record));
    this.identityVersions.set(record.id, record.version);
    this.emit(`${IDENTITY_INVALIDATION}${record.id}`);
    return true;
  }

  async removeIdentity(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const current = this.identities.get(id);
    if (current === undefined) throw tillError('IDENTITY_NOT_FOUND', 'memory', `no identity ${id}`);
    if (decodeIdentity(current).version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
    this.identities.delete(id);
    this.identityVersions.delete(id);
    this.identityOrder = this.identityOrder.filter((e) => e.id !== id);
    this.buckets.forget(identitySubject(id));
    this.emit(`${IDENTITY_INVALIDATION}${id}`);
    return true;
  }

  async listIdentities(query: ListIdentitiesQuery = {}): Promise<IdentityPage> {
    const limit = pageSize(query.limit);
    const after = decodeCursor(query.cursor);
    const identities: IdentityRecord[] = [];
    for (const entry of this.identityOrder) {
      if (!isAfter(entry.createdAt, entry.id, after)) continue;
      if (identities.length === limit) return { identities, cursor: encodeCursor(identities[identities.length - 1]!) };
      identities.push(decodeIdentity(this.identities.get(entry.id)!));
    }
    return { identities };
  }

  async countIdentityKeys(id: string): Promise<number> {
    return this.identityKeys.get(id)?.size ?? 0;
  }
}
