// Identities on Redis: each an `identity:<id>` subject (its record, credits, limits and trail under one
// hash tag), written by the key records' own scripts, and the indexes of identities and of their keys.
import { tillError, type TillError } from '../errors.js';
import { decodeIdentity, encodeIdentity, IDENTITY_INVALIDATION, identitySubject, type IdentityRecord } from '../identity/record.js';
import { decodeCursor, encodeCursor, isAfter, pageSize } from '../store/cursor.js';
import type { KeyRecord } from '../store/record.js';
import type { IdentityPage, ListIdentitiesQuery } from '../store/types.js';
import type { AuditRecord } from '../audit/trail.js';
import type { RedisAudit } from './audit.js';
import { trailEntry } from './audit-codec.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';
import { expiryKeysOf } from './expiry.js';

export class RedisIdentities {
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
    private readonly audit: RedisAudit,
    private readonly trailCap: number,
    /** Reads a key record (the store's own `get`). */
    private readonly getKey: (id: string) => Promise<KeyRecord | null>,
    private readonly notAnnounced: (what: string, why: string | undefined) => TillError,
  ) {}

  private get client() {
    return this.commands.client;
  }

  /**
   * The expiry index's keys in the slot of an identity's record: the record scripts it shares with keys
   * take them, and an identity has no expiry, so they are only told '' (nothing indexed).
   */
  private noExpiry(subject: string): [string, string] {
    const { shard, reminded } = expiryKeysOf(this.layout, subject);
    return [shard, reminded];
  }

  async get(id: string): Promise<IdentityRecord | null> {
    const json = await this.commands.read(this.layout.record(identitySubject(id)));
    if (json === null) return null;
    try {
      return decodeIdentity(json);
    } catch (cause) {
      throw tillError('STORE_ERROR', 'redis', `record of identity ${id} is corrupt`, { cause });
    }
  }

  async insert(record: IdentityRecord, audit?: AuditRecord): Promise<void> {
    const subject = identitySubject(record.id);
    const { layout } = this;
    // The index first: a crash between leaves an entry that listing skips, never an identity it cannot find.
    // NX: a create refused as IDENTITY_EXISTS must not move the existing identity in the order.
    await this.commands.run(() => this.client.zadd(layout.identities, 'NX', record.createdAt, record.id));
    const [ok] = await this.commands.run(() =>
      this.client.tillInsert(
        layout.record(subject),
        layout.trail(subject),
        ...this.noExpiry(subject),
        encodeIdentity(record),
        trailEntry(audit),
        this.trailCap,
        '',
        subject,
      ),
    );
    if (ok !== 1) throw tillError('IDENTITY_EXISTS', 'redis', `identity ${record.id} exists`);
    if (audit !== undefined) await this.audit.copyToLog(audit);
    // Keys that named an identity of this id before (deleted with force) are cached as disabled: told
    // to read it again. Best effort: they would otherwise wait for their cache TTL.
    await this.commands.run(() => this.client.publish(layout.channel, `${IDENTITY_INVALIDATION}${record.id}`)).catch(() => {});
  }

  async replace(record: IdentityRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const subject = identitySubject(record.id);
    const { layout } = this;
    const [result, , announced, why] = await this.commands.run(() =>
      this.client.tillReplace(
        layout.record(subject),
        layout.trail(subject),
        ...this.noExpiry(subject),
        encodeIdentity(record),
        expectedVersion,
        layout.channel,
        `${IDENTITY_INVALIDATION}${record.id}`,
        trailEntry(audit),
        this.trailCap,
        '',
      ),
    );
    if (result === -1) throw tillError('IDENTITY_NOT_FOUND', 'redis', `no identity ${record.id}`);
    if (result !== 1) return false;
    if (audit !== undefined) await this.audit.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(`identity ${record.id}`, why);
    return true;
  }

  async remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    const subject = identitySubject(id);
    const { layout } = this;
    const [result, , , announced, why] = await this.commands.run(() =>
      this.client.tillRemove(
        layout.record(subject),
        layout.credits(subject),
        layout.trail(subject),
        ...this.noExpiry(subject),
        expectedVersion,
        layout.channel,
        `${IDENTITY_INVALIDATION}${id}`,
        trailEntry(audit),
        this.trailCap,
      ),
    );
    if (result === -1) throw tillError('IDENTITY_NOT_FOUND', 'redis', `no identity ${id}`);
    if (result !== 1) return false;
    await this.commands.run(() => this.client.zrem(layout.identities, id)).catch(() => {});
    if (audit !== undefined) await this.audit.copyToLog(audit);
    if (announced === 0) throw this.notAnnounced(`identity ${id}`, why);
    return true;
  }

  async list(query: ListIdentitiesQuery = {}): Promise<IdentityPage> {
    const limit = pageSize(query.limit);
    const after = decodeCursor(query.cursor);
    const identities: IdentityRecord[] = [];
    let offset = 0;
    const batch = limit + 1;
    for (;;) {
      const rows = await this.commands.run(() =>
        this.client.zrangebyscore(this.layout.identities, after ? after.createdAt : '-inf', '+inf', 'WITHSCORES', 'LIMIT', offset, batch),
      );
      offset += rows.length / 2;
      const ids: string[] = [];
      for (let i = 0; i < rows.length; i += 2) if (isAfter(Number(rows[i + 1]), rows[i]!, after)) ids.push(rows[i]!);
      const records = await Promise.all(ids.map((id) => this.get(id)));
      for (const record of records) {
        if (record === null) continue;
        if (identities.length === limit) return { identities, cursor: encodeCursor(identities[identities.length - 1]!) };
        identities.push(record);
      }
      if (rows.length / 2 < batch) return { identities };
    }
  }

  /**
   * The ids of the keys that name the identity, read from its index and checked against their records
   * (an entry left by a crash, or by a key moved elsewhere, is dropped from the index as it is found).
   */
  async keyIds(id: string): Promise<string[]> {
    const index = this.layout.identityKeys(id);
    const ids = await this.commands.run(() => this.client.zrange(index, 0, -1));
    const records = await Promise.all(ids.map((keyId) => this.getKey(keyId)));
    const found: string[] = [];
    const stale: string[] = [];
    for (const [i, record] of records.entries()) {
      if (record !== null && record.identityId === id) found.push(ids[i]!);
      else stale.push(ids[i]!);
    }
    if (stale.length > 0) await this.commands.run(() => this.client.zrem(index, ...stale)).catch(() => {});
    return found;
  }

  /** Adds a key to its identity's index (before its record is written). */
  async indexKey(record: KeyRecord): Promise<void> {
    const identityId = record.identityId ?? null;
    if (identityId !== null) await this.commands.run(() => this.client.zadd(this.layout.identityKeys(identityId), record.createdAt, record.id));
  }

  /** Takes a key out of an identity's index (after its record no longer names it): best effort, `keyIds` drops leftovers. */
  async unindexKey(keyId: string, identityId: string | null | undefined): Promise<void> {
    if (identityId === null || identityId === undefined) return;
    await this.commands.run(() => this.client.zrem(this.layout.identityKeys(identityId), keyId)).catch(() => {});
  }
}
