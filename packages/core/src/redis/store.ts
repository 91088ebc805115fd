// RedisStore: a KeyStore on Redis or Redis Cluster through ioredis, put together from the parts beside it.
// One file because it is the façade: every method of the store contract is here, most in a few lines
// handing over to its part (identities, roles, expiries, usage, audit); only the key record's own
// insert, replace, remove and list are written out, as they tie the record to its indexes.
import { tillError, type TillError } from '../errors.js';
import { decodeRecord, encodeRecord, type KeyRecord } from '../store/record.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from '../store/cursor.js';
import type { ConsumeRequest, ConsumeResult, InvalidationListener, KeyPage, KeyStore, ListKeysQuery, SubscriptionListener } from '../store/types.js';
import type { KeyUsage, UsageBatchItem } from '../audit/usage.js';
import type { AuditPage, AuditQuery, AuditRecord } from '../audit/trail.js';
import { RedisAudit } from './audit.js';
import { trailEntry } from './audit-codec.js';
import { Charges } from './charges.js';
import { Commands, quit, type ScriptClient } from './commands.js';
import { Layout } from './layout.js';
import { parseOptions, type RedisStoreOptions } from './options.js';
import { Replicas } from './replicas.js';
import { Subscription } from './subscription.js';
import { RedisUsage } from './usage.js';
import { RedisExpiries } from './expiry.js';
import { indexedExpiry } from '../store/expiry.js';
import type { ExpiringPage, ExpiringQuery, ReindexResult } from '../store/types.js';
import { RedisRoles } from './roles.js';
import type { RoleRecord } from '../store/role.js';
import { RedisIdentities } from './identities.js';
import type { IdentityRecord } from '../identity/record.js';
import type { IdentityPage, ListIdentitiesQuery } from '../store/types.js';

export type { RedisClient, RedisStoreOptions } from './options.js';

/**
 * A KeyStore on Redis or Redis Cluster, with command timeouts and fail-fast when Redis is down.
 * Where each piece of data lives: see layout.ts. Everything about one key shares one hash tag, so
 * each change is one script, atomic on a single Redis and on Cluster alike.
 */
export class RedisStore implements KeyStore {
  readonly kind = 'redis';
  private readonly commands: Commands;
  private readonly client: ScriptClient;
  private readonly layout: Layout;
  private readonly trailCap: number;
  private readonly closeClient: boolean;
  private readonly subscription: Subscription;
  private readonly replicas: Replicas;
  private readonly charges: Charges;
  private readonly audit: RedisAudit;
  private readonly usage: RedisUsage;
  private readonly expiries: RedisExpiries;
  private readonly roles: RedisRoles;
  private readonly identities: RedisIdentities;

  constructor(options: RedisStoreOptions) {
    const config = parseOptions(options);
    this.commands = new Commands(config.client, config.commandTimeout, config.eviction, config.logger, config.batchReads);
    this.client = this.commands.client;
    this.layout = new Layout(config.namespace);
    this.trailCap = config.auditPerKeyMaxLength;
    this.closeClient = config.closeClient;
    this.subscription = new Subscription(config.client, config.subscriber, this.layout.channel);
    this.replicas = new Replicas(config.client, config.replicas, config.replicaTimeout, config.logger);
    // Through this store's own methods, so that whatever wraps them sees these calls too.
    const self = { get: (id: string) => this.get(id), refund: (request: ConsumeRequest) => this.refund(request) };
    this.charges = new Charges(this.commands, this.layout, config.callerClock, config.chargesWait ? this.replicas : null, self);
    this.audit = new RedisAudit(this.commands, this.layout, config.auditMaxLength, config.auditPerKeyMaxLength);
    this.usage = new RedisUsage(this.commands, this.layout);
    this.expiries = new RedisExpiries(this.commands, this.layout);
    this.roles = new RedisRoles(this.commands, this.layout, config.auditMaxLength, (what, why) => this.notAnnounced(what, why));
    this.identities = new RedisIdentities(this.commands, this.layout, this.audit, this.trailCap, self.get, (what, why) => this.notAnnounced(what, why));
  }

  /** The Redis key of a record. */
  recordKey(id: string): string {
    return this.layout.record(id);
  }

  async get(id: string): Promise<KeyRecord | null> {
    const json = await this.commands.read(this.layout.record(id));
    if (json === null) return null;
    try {
      return decodeRecord(json);
    } catch (cause) {
      throw tillError('STORE_ERROR', 'redis', `record of key ${id} is corrupt`, { cause });
    }
  }

  async insert(record: KeyRecord, audit?: AuditRecord): Promise<void> {
    const json = encodeRecord(record);
    const { layout } = this;
    // Each step under its own timeout: when one times out, the next is never sent (a key whose insert
    // was reported failed is then not written after all, except when the record's own step is the one
    // that timed out: what was sent may still be done).
    await this.commands.run(() => this.client.zadd(layout.index(null), record.createdAt, record.id));
    if (record.ownerId !== null) await this.commands.run(() => this.client.zadd(layout.index(record.ownerId!), record.createdAt, record.id));
    const expiry = indexedExpiry(record);
    if (expiry !== null) await this.expiries.register(record.id);
    const { shard, reminded } = this.expiries.of(record.id);
    await this.identities.indexKey(record);
    const [ok] = await this.commands.run(() =>
      this.client.tillInsert(
        layout.record(record.id),
        layout.trail(record.id),
        shard,
        reminded,
        json,
        trailEntry(audit),
        this.trailCap,
        expiry === null ? '' : String(expiry),
        record.id,
      ),
    );
    if (ok !== 1) throw tillError('KEY_EXISTS', 'redis', `key ${record.id} exists`);
    if (audit !== undefined) await this.audit.copyToLog(audit);
  }

  async replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const { layout } = this;
    const expiry = indexedExpiry(record);
    if (expiry !== null) await this.expiries.register(record.id);
    const { shard, reminded } = this.expiries.of(record.id);
    // A key moved to another identity: the identity indexes change beside the record (the new one
    // first), so the old identity's record is read first (versions only grow: one of this version is the one replaced).
    const identityId = record.identityId ?? null;
    const old = await this.get(record.id);
    if (old === null) throw tillError('KEY_NOT_FOUND', 'redis', `no key ${record.id}`);
    if (old.version !== expectedVersion) return false;
    const before = old.identityId ?? null;
    if (before !== identityId) await this.identities.indexKey(record);
    const [result, , announced, why] = await this.commands.run(() =>
      this.client.tillReplace(
        layout.record(record.id),
        layout.trail(record.id),
        shard,
        reminded,
        encodeRecord(record),
        expectedVersion,
        layout.channel,
        record.id,
        trailEntry(audit),
        this.trailCap,
        expiry === null ? '' : String(expiry),
      ),
    );
    if (result === -1) throw tillError('KEY_NOT_FOUND', 'redis', `no key ${record.id}`);
    if (result !== 1) return false;
    if (before !== identityId) await this.identities.unindexKey(record.id, before);
    if (audit !== undefined) await this.audit.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(record.id, why);
    return true;
  }

  async remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const { layout } = this;
    const { shard, reminded } = this.expiries.of(id);
    const old = await this.get(id);
    const [result, , owner, announced, why] = await this.commands.run(() =>
      this.client.tillRemove(
        layout.record(id),
        layout.credits(id),
        layout.trail(id),
        shard,
        reminded,
        expectedVersion,
        layout.channel,
        id,
        trailEntry(audit),
        this.trailCap,
      ),
    );
    if (result === -1) throw tillError('KEY_NOT_FOUND', 'redis', `no key ${id}`);
    if (result !== 1) return false;
    // The indexes live in other slots: removed after the record, so a crash between leaves an index
    // entry that listing skips (it finds no record), never a record that listing cannot find.
    await this.commands.run(() => this.client.zrem(layout.index(null), id)).catch(() => {});
    if (owner) await this.commands.run(() => this.client.zrem(layout.index(owner), id)).catch(() => {});
    await this.commands.run(() => this.client.zrem(layout.lastUsed, id)).catch(() => {});
    await this.identities.unindexKey(id, old?.identityId);
    if (audit !== undefined) await this.audit.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(id, why);
    return true;
  }

  /** A change that is saved but that the services were not told of: the caller must learn it. */
  private notAnnounced(id: string, why: string | undefined): TillError {
    const channel = this.layout.channel;
    return tillError(
      'NOT_ANNOUNCED',
      'redis',
      `the change to ${id.includes(' ') ? id : `key ${id}`} is saved, but it could not be announced to running services (PUBLISH refused: ${String(why ?? 'unknown error').slice(0, 200)}): they may keep serving the key as it was until their cache TTL (cache.ttl, 30 s by default) runs out. Give this Redis user the right to publish on ${channel} (ACL: +publish &${channel})`,
    );
  }

  async list(query: ListKeysQuery = {}): Promise<KeyPage> {
    const limit = pageSize(query.limit);
    const after = decodeCursor(query.cursor);
    const index = query.identityId !== undefined ? this.layout.identityKeys(query.identityId) : this.layout.index(query.ownerId ?? null);
    const keys: KeyRecord[] = [];
    let offset = 0;
    const batch = limit + 1;
    for (;;) {
      const rows = await this.commands.run(() =>
        this.client.zrangebyscore(index, after ? after.createdAt : '-inf', '+inf', 'WITHSCORES', 'LIMIT', offset, batch),
      );
      offset += rows.length / 2;
      const ids: string[] = [];
      for (let i = 0; i < rows.length; i += 2) {
        if (isAfter(Number(rows[i + 1]), rows[i]!, after)) ids.push(rows[i]!);
      }
      // One GET per record, not MGET: on Cluster the records live in different slots (sent together,
      // as one pipeline per node, unless `batchReads` is off).
      const records = await Promise.all(ids.map((id) => this.get(id)));
      for (const record of records) {
        if (record === null || (query.ownerId !== undefined && record.ownerId !== query.ownerId)) continue;
        if (query.identityId !== undefined && record.identityId !== query.identityId) continue;
        if (keys.length === limit) return { keys, cursor: encodeCursor(keys[keys.length - 1]!) };
        keys.push(record);
      }
      if (rows.length / 2 < batch) return { keys };
    }
  }

  appendAudit(entries: readonly AuditRecord[]): Promise<void> {
    return this.audit.append(entries);
  }

  readAudit(query?: AuditQuery): Promise<AuditPage> {
    return this.audit.read(query);
  }

  recordUsage(batch: readonly UsageBatchItem[], batchId?: string): Promise<void> {
    return this.usage.record(batch, batchId);
  }

  readUsage(id: string, days: number): Promise<KeyUsage> {
    return this.usage.read(id, days);
  }

  consume(request: ConsumeRequest): Promise<ConsumeResult> {
    return this.charges.consume(request);
  }

  refund(request: ConsumeRequest): Promise<void> {
    return this.charges.refund(request);
  }

  confirmChanges(): Promise<void> {
    return this.replicas.confirmChanges();
  }

  onInvalidate(listener: InvalidationListener, onStatus?: SubscriptionListener): () => void {
    return this.subscription.listen(listener, onStatus);
  }

  invalidationsLost(): boolean {
    return this.subscription.lost();
  }

  expiring(query: ExpiringQuery): Promise<ExpiringPage> {
    return this.expiries.range(query);
  }

  claimReminder(id: string, expiresAt: number): Promise<boolean> {
    return this.expiries.claim(id, expiresAt);
  }

  reindexExpiries(): Promise<ReindexResult> {
    return this.expiries.reindex();
  }

  getIdentity(id: string): Promise<IdentityRecord | null> {
    return this.identities.get(id);
  }

  insertIdentity(record: IdentityRecord, audit?: AuditRecord): Promise<void> {
    return this.identities.insert(record, audit);
  }

  replaceIdentity(record: IdentityRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.identities.replace(record, expectedVersion, audit);
  }

  removeIdentity(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.identities.remove(id, expectedVersion, audit);
  }

  listIdentities(query?: ListIdentitiesQuery): Promise<IdentityPage> {
    return this.identities.list(query);
  }

  async countIdentityKeys(id: string): Promise<number> {
    return (await this.identities.keyIds(id)).length;
  }

  async close(): Promise<void> {
    this.subscription.close();
    if (this.closeClient) await quit(this.client);
  }

  saveRole(role: RoleRecord, expectedVersion: number | null, audit?: AuditRecord): Promise<boolean> {
    return this.roles.save(role, expectedVersion, audit);
  }

  removeRole(name: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.roles.remove(name, expectedVersion, audit);
  }

  getRoles(names: readonly string[]): Promise<Array<RoleRecord | null>> {
    return this.roles.get(names);
  }

  listRoles(): Promise<RoleRecord[]> {
    return this.roles.list();
  }
}
