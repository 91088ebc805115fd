// How the key manager writes: new keys drawn and inserted, and every change a compare-and-set on the
// record's version with its audit entry, retried on a lost race, made safe from a failover when asked.
import { isTillError, TillError, tillError } from '../errors.js';
import { generateKey, keySlot } from '../key/format.js';
import type { KeyHasher } from '../key/hash.js';
import { auditText, type AuditRecord, type ChangeType } from '../audit/trail.js';
import { toKeyInfo, type KeyInfo, type KeyRecord } from '../store/record.js';
import type { KeyStore } from '../store/types.js';
import type { Clock } from '../util/clock.js';
import { checkId, checkText } from './checks.js';
import type { ChangeContext, CreatedKey } from './types.js';

/** Reads and writes of one change before it gives up with CONFLICT (the key kept changing under it). */
export const MAX_ATTEMPTS = 16;

/** The settings a new key is inserted with (the rest is drawn or starts fresh). */
export type NewKeySettings = Pick<
  KeyRecord,
  | 'prefix'
  | 'name'
  | 'ownerId'
  | 'scopes'
  | 'metadata'
  | 'createdAt'
  | 'expiresAt'
  | 'notBefore'
  | 'rotatedFrom'
  | 'limits'
  | 'credits'
  | 'allowedIps'
  | 'roles'
  | 'identityId'
>;

export class KeyWriter {
  constructor(
    readonly store: KeyStore,
    readonly hasher: KeyHasher,
    readonly clock: Clock,
    /** Called after each change saved, with the key id (the Till instance evicts its cache). */
    private readonly onChange: ((id: string) => void) | undefined,
    /** Who makes changes when a call does not say. */
    private readonly actor: string | null,
  ) {}

  /** The key's record without its hash, or null. */
  async info(id: string): Promise<KeyInfo | null> {
    const record = await this.store.get(id);
    return record === null ? null : toKeyInfo(record);
  }

  /** The key's record, or KEY_NOT_FOUND. */
  async existing(id: string): Promise<KeyRecord> {
    const record = await this.store.get(id);
    if (record === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
    return record;
  }

  /**
   * A change that takes access away (or may), made safe from a failover where the store can say so
   * (`confirmChanges`): rejects with NOT_REPLICATED when it is made but not yet replicated.
   */
  async confirmed<T>(change: Promise<T>): Promise<T> {
    let outcome: { readonly value: T } | { readonly unannounced: unknown };
    try {
      outcome = { value: await change };
    } catch (error) {
      // Saved but not announced: still made safe from a failover, then reported.
      if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
      outcome = { unannounced: error };
    }
    await this.store.confirmChanges?.();
    if ('unannounced' in outcome) throw outcome.unannounced;
    return outcome.value;
  }

  /** The audit entry of a change: who, why, and the key before and after (never its hash). */
  entry(
    type: ChangeType,
    at: number,
    key: KeyRecord,
    before: KeyRecord | null,
    after: KeyRecord | null,
    context: ChangeContext | undefined,
    detail?: string,
  ): AuditRecord {
    const actor = context?.actor === undefined ? this.actor : checkText(context.actor, 'actor');
    return {
      type,
      at,
      keyId: key.id,
      ownerId: key.ownerId,
      actor,
      reason: context?.reason === undefined ? null : auditText(checkText(context.reason, 'reason')),
      before: before === null ? null : toKeyInfo(before),
      after: after === null ? null : toKeyInfo(after),
      ...(detail !== undefined && { detail }),
    };
  }

  /** Draws a key and stores its record; the full key is returned and never kept. */
  async insertNew(settings: NewKeySettings, context: ChangeContext | undefined): Promise<CreatedKey> {
    // A rotated key is drawn in its predecessor's Cluster slot (so the whole chain is in its first
    // key's): its charges spend the chain's one credit count in the same script as its own limits.
    const slot = settings.rotatedFrom === null ? undefined : keySlot(settings.rotatedFrom);
    for (let attempt = 0; ; attempt++) {
      const generated = generateKey(settings.prefix, slot);
      const record: KeyRecord = {
        id: generated.id,
        hash: this.hasher.digest(generated.key),
        hashAlgorithm: this.hasher.algorithm,
        ...settings,
        updatedAt: settings.createdAt,
        revokedAt: null,
        revokedReason: null,
        disabled: false,
        rotatedTo: null,
        version: 1,
      };
      try {
        const detail = record.rotatedFrom === null ? undefined : `rotated from ${record.rotatedFrom}`;
        await this.store.insert(record, this.entry('key.created', record.createdAt, record, null, record, context, detail));
        return { key: generated.key, record: toKeyInfo(record) };
      } catch (error) {
        // An id collision (about 95 random bits) is astronomically rare; draw a new key.
        if (!(error instanceof TillError && error.code === 'KEY_EXISTS') || attempt >= 2) throw error;
      }
    }
  }

  /**
   * A store write's outcome: true once saved (this process's cache then drops the id at once), false
   * on a lost race. A write saved but not announced to other processes counts as saved, and its
   * NOT_ANNOUNCED error is passed on to the caller.
   */
  saved(id: string, write: Promise<boolean>): Promise<boolean> {
    return write.then(
      (ok) => {
        if (ok) this.onChange?.(id);
        return ok;
      },
      (error: unknown) => {
        if (isTillError(error, 'NOT_ANNOUNCED')) this.onChange?.(id);
        throw error;
      },
    );
  }

  /**
   * Applies `edit` to the current record and saves it if nobody changed the key meanwhile,
   * retrying on a lost race: concurrent changes never overwrite each other. `edit` returns null
   * when there is nothing to change.
   */
  async change(
    id: string,
    edit: (record: KeyRecord, now: number) => KeyRecord | null,
    type: ChangeType,
    context: ChangeContext | undefined,
    detail?: string,
  ): Promise<KeyInfo> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.existing(id);
      const now = this.clock();
      const edited = edit(current, now);
      if (edited === null) return toKeyInfo(current);
      const next: KeyRecord = { ...edited, id: current.id, updatedAt: now, version: current.version + 1 };
      if (await this.saved(id, this.store.replace(next, current.version, this.entry(type, now, next, current, next, context, detail)))) return toKeyInfo(next);
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }
}
