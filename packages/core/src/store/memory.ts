// The embedded default store: records in a Map, serialized so callers can never alias stored state.
import { tillError } from '../errors.js';
import { decodeRecord, encodeRecord, type KeyRecord } from './record.js';
import type { AuditPage, AuditQuery, AuditRecord } from '../audit/trail.js';
import type { Credits } from '../limits/rules.js';
import { MemoryAuditLog } from './audit-log.js';
import { dayOf, parseBatchId } from '../audit/usage.js';
import type { OutcomeCode } from '../verify/outcome.js';
import { LocalBuckets } from '../limits/buckets.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from './cursor.js';
import type { ConsumeRequest, ConsumeResult, InvalidationListener, KeyPage, KeyStore, KeyUsage, ListKeysQuery, UsageBatchItem } from './types.js';
import type { ExpiringPage, ExpiringQuery, ReindexResult } from './types.js';
import { checkExpiringQuery, indexedExpiry, MemoryExpiryIndex } from './expiry.js';
import { decodeRole, encodeRole, roleMessage, type RoleRecord } from './role.js';

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
    const entry = { createdAt: record.createdAt, id: record.id, ownerId: record.ownerId };
    let i = this.order.length;
    while (i > 0 && !isAfter(entry.createdAt, entry.id, this.order[i - 1]!)) i--;
    this.order.splice(i, 0, entry);
  }

  async replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const current = this.records.get(record.id);
    if (current === undefined) throw tillError('KEY_NOT_FOUND', 'memory', `no key ${record.id}`);
    if (decodeRecord(current).version !== expectedVersion) return false;
    if (audit !== undefined) this.audit.append(audit);
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
    const superseded = decodeRecord(this.records.get(id)!).rotatedTo !== null;
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
      if (keys.length === limit) {
        const last = keys[keys.length - 1]!;
        return { keys, cursor: encodeCursor(last) };
      }
      keys.push(decodeRecord(this.records.get(entry.id)!));
    }
    return { keys };
  }

  async consume(request: ConsumeRequest): Promise<ConsumeResult> {
    let credits: { policy: Credits; cost: number } | null = null;
    if (request.keyVersion !== undefined) {
      const version = this.versions.get(request.subject);
      if (version === undefined) return { outcome: 'NOT_FOUND' };
      if (version !== request.keyVersion) return { outcome: 'CHANGED', record: decodeRecord(this.records.get(request.subject)!) };
      // As on Redis: the caller's copy of the record of this version says what the credits are.
      if (request.credits) {
        if (this.buckets.creditsOutdated(request.subject, request.credits))
          return { outcome: 'CHANGED', record: decodeRecord(this.records.get(request.subject)!) };
        credits = { policy: request.credits, cost: request.cost ?? 0 };
      }
    }
    return this.buckets.consume(request.subject, request.limits, credits, request.now);
  }

  async refund(request: ConsumeRequest): Promise<void> {
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
}
