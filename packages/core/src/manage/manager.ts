// The key manager: creating and changing keys. Every change is a compare-and-set on the record's
// version (writer.ts); input checks are in checks.ts, rotation chains in chain.ts and rotate.ts.
import { systemClock } from '../util/clock.js';
import { isTillError, TillError, tillError } from '../errors.js';
import { createHasher, digestBytes } from '../key/hash.js';
import { assertValidPrefix, parseKey } from '../key/format.js';
import { keyStatus, toKeyInfo, type KeyInfo } from '../store/record.js';
import { normalizeCredits } from '../limits/rules.js';
import { auditReport, type Report, type ReportOptions } from '../audit/report.js';
import type { AuditPage, AuditQuery } from '../audit/trail.js';
import type { KeyStore, KeyUsage, ListKeysQuery } from '../store/types.js';
import { assertCurrent, checkCreate, checkId, checkIdentityRef, checkMetadata, checkPatch, checkText, checkWindow, fail } from './checks.js';
import { creditsAnew, revokeKeys, withChain } from './chain.js';
import { rotateKey } from './rotate.js';
import { assertRolesExist } from './role-checks.js';
import { KeyWriter, MAX_ATTEMPTS } from './writer.js';
import { claimReminder, expiringKeys, reindexExpiries, type ExpiringKeys, type ExpiringOptions } from './expiring.js';
import type { ReindexResult } from '../store/types.js';
import type { ChangeContext, CreatedKey, CreateKeyInput, KeyIdentity, KeyManagerOptions, KeyPatch, RotatedKey } from './types.js';

export { unconfirmedRotation } from './types.js';
export type { ExpiringKeys, ExpiringOptions } from './expiring.js';
export type { ChangeContext, CreatedKey, CreateKeyInput, KeyIdentity, KeyManagerOptions, KeyPatch, RotatedKey, UnconfirmedRotation } from './types.js';

export class KeyManager {
  private readonly store: KeyStore;
  private readonly writer: KeyWriter;
  private readonly prefix: string;

  constructor(options: KeyManagerOptions) {
    if (!options?.store) throw tillError('INVALID_OPTIONS', 'keys', 'a store is required');
    const prefix = options.prefix ?? 'till';
    assertValidPrefix(prefix, 'keys');
    this.store = options.store;
    this.prefix = prefix;
    const actor = options.actor === undefined ? null : checkText(options.actor, 'actor');
    this.writer = new KeyWriter(options.store, options.hasher ?? createHasher(), options.clock ?? systemClock, options.onChange, actor);
  }

  /** Creates a key. The full key is in the result and nowhere else: it is never stored. */
  async create(input: CreateKeyInput, context?: ChangeContext): Promise<CreatedKey> {
    const now = this.writer.clock();
    const settings = checkCreate(input, now, this.prefix);
    await assertRolesExist(this.store, settings.roles);
    if (typeof settings.identityId === 'string') await this.identityExists(settings.identityId);
    return this.writer.insertNew({ ...settings, createdAt: now, rotatedFrom: null }, context);
  }

  /**
   * Changes a key's name, scopes, metadata, expiry, start or enabled state. Fields left out stay;
   * `expiresAt: null` removes the expiry. A revoked key cannot change.
   */
  async update(id: string, patch: KeyPatch, context?: ChangeContext): Promise<KeyInfo> {
    checkId(id);
    const { changes, merging, set, unset } = checkPatch(patch, this.writer.clock());
    if (changes.roles !== undefined) await assertRolesExist(this.store, changes.roles);
    if (typeof changes.identityId === 'string') await this.identityExists(changes.identityId);
    return this.writer.confirmed(
      withChain(
        this.writer,
        this.writer.change(
          id,
          (record, t) => {
            assertCurrent(record);
            const next = { ...record, ...changes };
            if (patch.credits !== undefined) next.credits = patch.credits === null ? null : creditsAnew(record, normalizeCredits(patch.credits, 'keys', t, 0));
            if (merging) {
              // Merged inside the compare-and-set, so a concurrent metadata change is never lost.
              const metadata: Record<string, unknown> = { ...record.metadata, ...set };
              for (const name of unset) delete metadata[name];
              next.metadata = checkMetadata(metadata);
            }
            checkWindow(next.expiresAt, next.notBefore);
            return next;
          },
          'key.updated',
          context,
        ),
        id,
        'key.updated',
        context,
      ),
    );
  }

  /** Stops a key (and the keys it replaced, in their grace period) from working until `enable`; unlike revoking, this can be undone. */
  async disable(id: string, context?: ChangeContext): Promise<KeyInfo> {
    return this.writer.confirmed(
      withChain(
        this.writer,
        this.writer.change(
          id,
          (record) => {
            assertCurrent(record);
            return record.disabled ? null : { ...record, disabled: true };
          },
          'key.disabled',
          context,
        ),
        id,
        'key.disabled',
        context,
      ),
    );
  }

  async enable(id: string, context?: ChangeContext): Promise<KeyInfo> {
    return withChain(
      this.writer,
      this.writer.change(
        id,
        (record) => {
          assertCurrent(record);
          return record.disabled ? { ...record, disabled: false } : null;
        },
        'key.enabled',
        context,
      ),
      id,
      'key.enabled',
      context,
    );
  }

  /**
   * Issues a new key with the old one's name, owner, scopes, metadata and prefix (and, if the old
   * key expires, the same lifetime counted from now), and makes the old key expire after `grace`
   * (default 24h), never later than it would have. The two are linked by rotatedFrom/rotatedTo.
   * A revoked, disabled or already rotated key cannot be rotated.
   */
  async rotate(id: string, options: { grace?: string | number } & ChangeContext = {}): Promise<RotatedKey> {
    return rotateKey(this.writer, id, options);
  }

  /** Rejects with IDENTITY_NOT_FOUND unless the identity exists (a key is only given an identity that does). */
  private async identityExists(id: string): Promise<void> {
    if (typeof this.store.getIdentity !== 'function') throw tillError('INVALID_OPTIONS', 'keys', `the ${this.store.kind} store does not keep identities`);
    if (!(await this.store.getIdentity(id))) throw tillError('IDENTITY_NOT_FOUND', 'keys', `no identity ${id}: create it first (till.identities.create)`);
  }

  /** Credits left on a key now (refills included), or null when it has none. */
  async credits(id: string): Promise<number | null> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const record = await this.store.get(id);
      if (record === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      if (record.credits === null) return null;
      const live = await this.store.consume({
        subject: id,
        keyVersion: record.version,
        credits: record.credits,
        limits: [],
        cost: 0,
        now: this.writer.clock(),
      });
      if (live.outcome === 'NOT_FOUND') throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      if ('credits' in live) return live.credits;
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing; try again`);
  }

  /** The key's record without its hash, or null. */
  async get(id: string): Promise<KeyInfo | null> {
    return this.writer.info(checkId(id));
  }

  /**
   * Checks a full key against the store, for admin tools (`till scan`): whether its secret is the
   * one stored for its id, compared in constant time under the record's algorithm. Unlike
   * verification it charges no limit or credit, records no usage and emits no event. The digest
   * never leaves this method. A string that is not a well-formed key is an INVALID_ARGUMENT.
   */
  async identify(key: string): Promise<KeyIdentity> {
    const parsed = parseKey(key);
    // The message never repeats the input: it may be most of a key.
    if (!parsed.ok)
      fail(
        `identify needs a whole key (prefix_ and 44 characters with a valid check); got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
      );
    const { id, prefix } = parsed;
    const record = await this.store.get(id);
    if (record === null) return { id, prefix, match: 'unknown' };
    if (record.hashAlgorithm === 'hmac-sha256' && this.writer.hasher.algorithm !== 'hmac-sha256') return { id, prefix, match: 'unconfirmable' };
    const expected = digestBytes(record.hash);
    let same: boolean;
    try {
      same = expected !== null && this.writer.hasher.matches(key, record.hashAlgorithm, expected);
    } catch (error) {
      // A hasher without the pepper the record needs (a custom hasher may say so only here).
      if (error instanceof TillError && error.code === 'INVALID_OPTIONS') return { id, prefix, match: 'unconfirmable' };
      throw error;
    }
    return same ? { id, prefix, match: 'confirmed', status: keyStatus(record, this.writer.clock()) } : { id, prefix, match: 'mismatch' };
  }

  /** A page of keys in creation order. */
  async list(query: ListKeysQuery = {}): Promise<{ keys: KeyInfo[]; cursor?: string }> {
    if (query?.identityId !== undefined && checkIdentityRef(query.identityId) === null) fail('identityId must be an identity id');
    const page = await this.store.list(query);
    return page.cursor === undefined ? { keys: page.keys.map(toKeyInfo) } : { keys: page.keys.map(toKeyInfo), cursor: page.cursor };
  }

  /**
   * Revokes a key for good, and with it (unless `chain: false`) every other key of its rotation chain
   * that still works: the keys that replaced it, and those it replaced that are in their grace period.
   * A leaked secret is one key's, but whoever leaked it may hold the others too. Revoking a revoked
   * key keeps the first time and reason. Resolves with the named key's record.
   */
  async revoke(id: string, options: ChangeContext & { chain?: boolean } = {}): Promise<KeyInfo> {
    const [named] = await revokeKeys(this.writer, id, options, options?.chain !== false);
    if (named === undefined) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
    return named;
  }

  /** `revoke(id)` telling what it did: the named key's record first, then each key of its chain it revoked. */
  async revokeChain(id: string, context: ChangeContext = {}): Promise<{ revoked: KeyInfo[] }> {
    return { revoked: await revokeKeys(this.writer, id, context, true) };
  }

  /**
   * Deletes a key: its record, credits and limits go; its audit trail stays, with the deleted record
   * in the entry, so the key's history outlives it. A deleted key verifies as unknown.
   */
  async delete(id: string, context?: ChangeContext): Promise<KeyInfo> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(id);
      if (current === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      const entry = this.writer.entry('key.deleted', this.writer.clock(), current, current, null, context);
      let removed: boolean;
      try {
        removed = await this.writer.saved(id, this.store.remove(id, current.version, entry));
      } catch (error) {
        if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
        return this.writer.confirmed(Promise.reject(error));
      }
      if (removed) return this.writer.confirmed(Promise.resolve(toKeyInfo(current)));
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /**
   * When a key was last used and its requests by day and outcome, for the last `days` days (default
   * 7, at most 100). As of the last batch the verifying processes wrote (every 10 s by default).
   */
  async usage(id: string, options: { days?: number } = {}): Promise<KeyUsage> {
    checkId(id);
    const days = options.days ?? 7;
    if (!Number.isInteger(days) || days < 0 || days > 100) fail('days must be an integer from 0 to 100');
    return this.store.readUsage(id, days);
  }

  /**
   * The audit report: keys never used, unused for long, without an expiry, due for rotation, with
   * wildcard scopes or many recent failures, each with why and what to do.
   */
  async report(options: ReportOptions = {}): Promise<Report> {
    return auditReport(this, { now: this.writer.clock(), ...options });
  }

  /** The audit trail, oldest first: by time range, key, owner and type. */
  async audit(query?: AuditQuery): Promise<AuditPage> {
    return this.store.readAudit(query);
  }

  /**
   * Keys expiring within `within` (`14d`), soonest first, a page at a time: read from the store's expiry
   * index, never a scan of every key. Revoked keys and keys superseded by a rotation are left out.
   */
  async expiring(options: ExpiringOptions): Promise<ExpiringKeys> {
    return expiringKeys(this.store, options, this.writer.clock());
  }

  /**
   * Claims the reminder of key `id`'s expiry `expiresAt` for every process sharing the store: true the
   * first time, false after (and once the key's expiry changed, for the old one). The `key-expiring`
   * alert rule sends a reminder only when it claims it; a scheduler of one's own can do the same.
   */
  async claimReminder(id: string, expiresAt: number): Promise<boolean> {
    checkId(id);
    if (!Number.isSafeInteger(expiresAt)) fail('expiresAt must be integer epoch milliseconds');
    return claimReminder(this.store, id, expiresAt);
  }

  /**
   * Rebuilds the store's expiry index from the records: for a Redis store holding keys written before
   * it kept one (`till audit --reindex`). Idempotent; safe while the store is in use.
   */
  async reindexExpiries(): Promise<ReindexResult> {
    return reindexExpiries(this.store);
  }
}
