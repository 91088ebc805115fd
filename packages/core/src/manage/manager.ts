// The key manager: creating and changing keys. Every change is a compare-and-set on the record's version.
import { systemClock, type Clock } from '../util/clock.js';
import { isTillError, TillError, tillError } from '../errors.js';
import { createHasher, type KeyHasher } from '../key/hash.js';
import { assertValidPrefix, generateKey, isValidKeyId, keySlot, parseKey } from '../key/format.js';
import { keyStatus, toKeyInfo, type KeyInfo, type KeyRecord, type KeyStatus } from '../store/record.js';
import { digestBytes } from '../key/sha256.js';
import { isSafeText } from '../util/text.js';
import { normalizeGrants } from '../verify/scopes.js';
import { parseDuration } from '../util/duration.js';
import { normalizeCredits, normalizeRateLimits, type Credits, type CreditsInput, type RateLimitInput } from '../limits/rules.js';
import { auditReport, type Report, type ReportOptions } from '../audit/report.js';
import { auditText, type AuditPage, type AuditQuery, type AuditRecord, type ChangeType } from '../audit/trail.js';
import type { KeyStore, KeyUsage, ListKeysQuery } from '../store/types.js';

export interface CreateKeyInput {
  /** A label for people: "billing service, production". */
  name: string;
  /** Scopes the key holds; give it the fewest it needs. */
  scopes: readonly string[];
  /** Who the key belongs to (a user, team or service id). */
  ownerId?: string | null;
  /** Free JSON data returned with the verified key; at most 4 KiB as JSON. */
  metadata?: Record<string, unknown>;
  /** When the key stops working. Keys without an expiry are flagged by audits. */
  expiresAt?: Date | number | null;
  /** The same as a duration from now: `90d`, `12h`, or milliseconds. Not with `expiresAt`. */
  expiresIn?: string | number;
  /** When the key starts working. */
  notBefore?: Date | number | null;
  /** Prefix for this key; the manager's default when absent. */
  prefix?: string;
  /** Rate limits every request with this key is charged against, like `{ name: 'per-second', limit: 10, window: '1s' }`. */
  limits?: readonly RateLimitInput[];
  /** Usage credits: a number of uses, optionally refilled. Absent or null: unlimited. */
  credits?: CreditsInput | null;
}

/** Who made a change and why: written with the change into the audit trail. */
export interface ChangeContext {
  /** Who or what makes the change: a user, a service, `cli:alice`. Default: the manager's `actor`. */
  actor?: string;
  /** Why, in a few words. */
  reason?: string;
}

export interface CreatedKey {
  /** The full key. Show it once to its holder: it is not stored and cannot be shown again. */
  readonly key: string;
  readonly record: KeyInfo;
}

export interface KeyManagerOptions {
  store: KeyStore;
  hasher?: KeyHasher;
  /** Prefix of new keys. Default `till`. */
  prefix?: string;
  clock?: Clock;
  /** Called after each change this manager makes, with the key id (the Till instance evicts its cache). */
  onChange?: (id: string) => void;
  /** Who makes changes through this manager when a call does not say (audit trail). Default none. */
  actor?: string;
}

export interface KeyPatch {
  name?: string;
  scopes?: readonly string[];
  /** Replaces all metadata. */
  metadata?: Record<string, unknown>;
  /** Sets these metadata entries and keeps the others (merged with the key's current metadata). */
  setMetadata?: Record<string, unknown>;
  /** Removes these metadata entries. */
  unsetMetadata?: readonly string[];
  /** A new expiry; null removes it. */
  expiresAt?: Date | number | null;
  /** A new expiry as a duration from now. Not with `expiresAt`. */
  expiresIn?: string | number;
  notBefore?: Date | number | null;
  disabled?: boolean;
  /** Replaces the key's rate limits ([] removes them). */
  limits?: readonly RateLimitInput[];
  /** Sets the credits anew (the live count restarts from `remaining`); null removes them. */
  credits?: CreditsInput | null;
}

/**
 * What the store says about a full key presented to `identify`: whether its secret is the one
 * stored for its id. Ids are public, so only `confirmed` says the key is real.
 */
export interface KeyIdentity {
  /** The key's public id (from the key itself, whatever the store says). */
  readonly id: string;
  readonly prefix: string;
  /**
   * `confirmed`: the secret matches the stored digest. `mismatch`: a key with this id exists, but
   * not with this secret (a forged key, or this manager's pepper is not the one the key was made
   * with). `unknown`: no key has this id here. `unconfirmable`: the key was stored with HMAC and
   * this manager has no pepper to check it with.
   */
  readonly match: 'confirmed' | 'mismatch' | 'unknown' | 'unconfirmable';
  /** The key's status now; only when `confirmed` (a forged key learns nothing from it). */
  readonly status?: KeyStatus;
}

export interface RotatedKey extends CreatedKey {
  /** The old key after the rotation: its new expiry and its link to the new key. */
  readonly previous: KeyInfo;
  /**
   * False when the old key's new expiry is saved but could not be announced to running services
   * (see TillError NOT_ANNOUNCED): they keep its old expiry until their cache TTL runs out.
   */
  readonly announced: boolean;
}

/**
 * What a rotation rejected with NOT_REPLICATED carries in its `rotation` property: the rotation as made
 * on the primary (`previous` is null when the old key could not be read back).
 */
export interface UnconfirmedRotation extends CreatedKey {
  readonly previous: KeyInfo | null;
}

/** The rotation a NOT_REPLICATED error of `rotate()` carries, if it is one. */
export function unconfirmedRotation(error: unknown): UnconfirmedRotation | null {
  if (!isTillError(error, 'NOT_REPLICATED')) return null;
  const rotation = (error as TillError & { rotation?: UnconfirmedRotation }).rotation;
  return rotation === undefined ? null : rotation;
}

const PATCH_FIELDS = ['name', 'scopes', 'metadata', 'setMetadata', 'unsetMetadata', 'expiresAt', 'expiresIn', 'notBefore', 'disabled', 'limits', 'credits'];
const DEFAULT_GRACE = '24h';
const MAX_TEXT = 200;
const MAX_METADATA_BYTES = 4096;
const MAX_ATTEMPTS = 16;
/** Most keys followed along one rotation chain (a key rotated daily for almost three years). */
const MAX_CHAIN = 1000;
/**
 * What every live key of a rotation chain shares with its newest key: a change of these on the newest
 * key reaches the keys still in their grace period. Their expiry and start stay their own.
 */
const CHAIN_FIELDS = ['name', 'scopes', 'metadata', 'limits', 'credits', 'disabled'] as const;

function fail(message: string): never {
  throw tillError('INVALID_ARGUMENT', 'keys', `${message}`);
}

function checkText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_TEXT || !isSafeText(value)) {
    fail(`${field} must be a non-empty string of at most ${MAX_TEXT} characters without control characters`);
  }
  return value;
}

function toMillis(value: Date | number | null | undefined, field: string): number | null {
  if (value === undefined || value === null) return null;
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) fail(`${field} must be a valid Date or epoch milliseconds`);
  return ms;
}

/** The expiry asked for by `expiresAt` or `expiresIn` (one of them), which must lie ahead. */
function expiryOf(input: { expiresAt?: Date | number | null; expiresIn?: string | number }, now: number): number | null {
  if (input.expiresAt !== undefined && input.expiresIn !== undefined) fail('give expiresAt or expiresIn, not both');
  const expiresAt = input.expiresIn !== undefined ? now + parseDuration(input.expiresIn, 'expiresIn') : toMillis(input.expiresAt, 'expiresAt');
  if (expiresAt !== null && expiresAt <= now) fail('the expiry must be in the future');
  return expiresAt;
}

function checkWindow(expiresAt: number | null, notBefore: number | null): void {
  if (expiresAt !== null && notBefore !== null && notBefore >= expiresAt) fail('notBefore must be before the expiry');
}

function assertNotRevoked(record: KeyRecord): void {
  if (record.revokedAt !== null) throw tillError('KEY_REVOKED', 'keys', `key ${record.id} is revoked; a revoked key cannot change`);
}

/**
 * A superseded key (rotated, in its grace period or past it) follows its newest key: it cannot be
 * changed on its own, or a change meant for the key in use (a narrowing) would miss it, and one made
 * to the old key (no expiry) would undo its grace. Revoking and deleting it are the exceptions.
 */
function assertCurrent(record: KeyRecord): void {
  assertNotRevoked(record);
  if (record.rotatedTo !== null) {
    throw tillError('KEY_ROTATED', 'keys', `key ${record.id} was rotated to ${record.rotatedTo}: change that key instead (a change of the newest key reaches the keys still in their grace period); to end this key's grace early, revoke it alone (revoke with { chain: false }, or till keys revoke --key-only)`,
    );
  }
}

/** Fields of a chain's newest key that a predecessor does not hold alike (none: in step). */
function chainDiffers(record: KeyRecord, head: KeyRecord): boolean {
  return CHAIN_FIELDS.some((f) => JSON.stringify(record[f]) !== JSON.stringify(head[f]));
}

function assertRotatable(record: KeyRecord): void {
  assertNotRevoked(record);
  if (record.rotatedTo !== null) throw tillError('KEY_ROTATED', 'keys', `key ${record.id} was already rotated to ${record.rotatedTo}; rotate that key instead`);
  if (record.disabled) throw tillError('KEY_DISABLED', 'keys', `key ${record.id} is disabled; enable it before rotating`);
}

/**
 * Credits set anew on `record`: counted where its credits were (a rotation chain's one count, or its
 * own), under a generation above both its version and the generation they had, so the store restarts
 * the count and never takes an older policy for the newer one.
 */
function creditsAnew(record: KeyRecord, credits: Credits): Credits {
  const generation = Math.max(record.version + 1, (record.credits?.generation ?? 0) + 1);
  // A key of a chain counts where the chain does, even from a first policy (its predecessors follow it).
  const account = record.credits?.account ?? (record.rotatedFrom !== null ? record.id : undefined);
  return Object.freeze({ ...credits, generation, ...(account !== undefined && { account }) });
}

function checkMetadata(value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('metadata must be a plain object');
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch {
    fail('metadata must be JSON-serializable');
  }
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) fail(`metadata must be at most ${MAX_METADATA_BYTES} bytes as JSON`);
  return JSON.parse(json) as Record<string, unknown>;
}

function checkId(id: unknown): string {
  if (!isValidKeyId(id)) fail('key id must be the 16-character id printed with the key');
  return id;
}

export class KeyManager {
  private readonly store: KeyStore;
  private readonly hasher: KeyHasher;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly onChange: ((id: string) => void) | undefined;
  private readonly actor: string | null;

  constructor(options: KeyManagerOptions) {
    if (!options || !options.store) throw tillError('INVALID_OPTIONS', 'keys', 'a store is required');
    const prefix = options.prefix ?? 'till';
    assertValidPrefix(prefix, 'keys');
    this.store = options.store;
    this.hasher = options.hasher ?? createHasher();
    this.prefix = prefix;
    this.clock = options.clock ?? systemClock;
    this.onChange = options.onChange;
    this.actor = options.actor === undefined ? null : checkText(options.actor, 'actor');
  }

  /**
   * A change that takes access away (or may), made safe from a failover where the store can say so
   * (`confirmChanges`): rejects with NOT_REPLICATED when it is made but not yet replicated.
   */
  private async confirmed<T>(change: Promise<T>): Promise<T> {
    let info: T | undefined;
    let unannounced: unknown;
    try {
      info = await change;
    } catch (error) {
      // Saved but not announced: still made safe from a failover, then reported.
      if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
      unannounced = error;
    }
    await this.store.confirmChanges?.();
    if (unannounced !== undefined) throw unannounced;
    return info!;
  }

  /** The audit entry of a change: who, why, and the key before and after (never its hash). */
  private entry(type: ChangeType, at: number, before: KeyRecord | null, after: KeyRecord | null, context: ChangeContext | undefined, detail?: string): AuditRecord {
    const key = (after ?? before)!;
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

  /** Creates a key. The full key is in the result and nowhere else: it is never stored. */
  async create(input: CreateKeyInput, context?: ChangeContext): Promise<CreatedKey> {
    if (!input || typeof input !== 'object') fail('create needs { name, scopes }');
    const name = checkText(input.name, 'name');
    const scopes = normalizeGrants(input.scopes, 'keys');
    const ownerId = input.ownerId === undefined || input.ownerId === null ? null : checkText(input.ownerId, 'ownerId');
    const metadata = checkMetadata(input.metadata);
    const now = this.clock();
    const expiresAt = expiryOf(input, now);
    const notBefore = toMillis(input.notBefore, 'notBefore');
    checkWindow(expiresAt, notBefore);
    const prefix = input.prefix ?? this.prefix;
    assertValidPrefix(prefix, 'keys');
    const limits = input.limits === undefined ? [] : normalizeRateLimits(input.limits, 'keys');
    const credits = input.credits === undefined || input.credits === null ? null : normalizeCredits(input.credits, 'keys', now, 1);

    return this.insertNew({ prefix, name, ownerId, scopes, metadata, createdAt: now, expiresAt, notBefore, rotatedFrom: null, limits, credits }, context);
  }

  /** Draws a key and stores its record; the full key is returned and never kept. */
  private async insertNew(
    settings: Pick<KeyRecord, 'prefix' | 'name' | 'ownerId' | 'scopes' | 'metadata' | 'createdAt' | 'expiresAt' | 'notBefore' | 'rotatedFrom' | 'limits' | 'credits'>,
    context: ChangeContext | undefined,
  ): Promise<CreatedKey> {
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
        await this.store.insert(record, this.entry('key.created', record.createdAt, null, record, context, detail));
        return { key: generated.key, record: toKeyInfo(record) };
      } catch (error) {
        // An id collision (about 95 random bits) is astronomically rare; draw a new key.
        if (!(error instanceof TillError && error.code === 'KEY_EXISTS') || attempt >= 2) throw error;
      }
    }
  }

  /**
   * Changes a key's name, scopes, metadata, expiry, start or enabled state. Fields left out stay;
   * `expiresAt: null` removes the expiry. A revoked key cannot change.
   */
  async update(id: string, patch: KeyPatch, context?: ChangeContext): Promise<KeyInfo> {
    checkId(id);
    if (!patch || typeof patch !== 'object') fail('update needs an object of fields to change');
    for (const field of Object.keys(patch)) {
      if (!PATCH_FIELDS.includes(field)) fail(`cannot update "${field}"; fields: ${PATCH_FIELDS.join(', ')}`);
    }
    if (Object.keys(patch).length === 0) fail('update names no field to change');
    const changes: { -readonly [K in keyof KeyRecord]?: KeyRecord[K] } = {};
    if (patch.name !== undefined) changes.name = checkText(patch.name, 'name');
    if (patch.scopes !== undefined) changes.scopes = normalizeGrants(patch.scopes, 'keys');
    if (patch.metadata !== undefined) changes.metadata = checkMetadata(patch.metadata);
    const merging = patch.setMetadata !== undefined || patch.unsetMetadata !== undefined;
    if (merging && patch.metadata !== undefined) fail('give metadata (a replacement) or setMetadata/unsetMetadata (a merge), not both');
    const set = patch.setMetadata === undefined ? {} : checkMetadata(patch.setMetadata);
    const unset = patch.unsetMetadata ?? [];
    if (!Array.isArray(unset) || !unset.every((k) => typeof k === 'string')) fail('unsetMetadata must be an array of entry names');
    if (patch.disabled !== undefined) {
      if (typeof patch.disabled !== 'boolean') fail('disabled must be true or false');
      changes.disabled = patch.disabled;
    }
    const now = this.clock();
    if ('expiresAt' in patch || 'expiresIn' in patch) changes.expiresAt = expiryOf(patch, now);
    if ('notBefore' in patch) changes.notBefore = toMillis(patch.notBefore, 'notBefore');
    if (patch.limits !== undefined) changes.limits = normalizeRateLimits(patch.limits, 'keys');
    // Checked now; stamped inside the compare-and-set with the version that sets them.
    if (patch.credits !== undefined && patch.credits !== null) normalizeCredits(patch.credits, 'keys', now, 0);
    return this.confirmed(this.withChain(this.change(id, (record, t) => {
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
    }, 'key.updated', context), id, 'key.updated', context));
  }

  /** Stops a key (and the keys it replaced, in their grace period) from working until `enable`; unlike revoking, this can be undone. */
  async disable(id: string, context?: ChangeContext): Promise<KeyInfo> {
    return this.confirmed(this.withChain(this.change(id, (record) => {
      assertCurrent(record);
      return record.disabled ? null : { ...record, disabled: true };
    }, 'key.disabled', context), id, 'key.disabled', context));
  }

  async enable(id: string, context?: ChangeContext): Promise<KeyInfo> {
    return this.withChain(this.change(id, (record) => {
      assertCurrent(record);
      return record.disabled ? { ...record, disabled: false } : null;
    }, 'key.enabled', context), id, 'key.enabled', context);
  }

  /**
   * A change of a chain's newest key, then the same on the keys it replaced that still work (their
   * grace period): a narrowing, a disabling or new credits reach every key the holder may present.
   * A change saved but not announced (NOT_ANNOUNCED) still reaches them, and is reported after.
   */
  private async withChain(change: Promise<KeyInfo>, id: string, type: ChangeType, context: ChangeContext | undefined): Promise<KeyInfo> {
    let unannounced: unknown;
    const note = (error: unknown) => {
      if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
      unannounced ??= error;
    };
    const info = await change.catch((error: unknown) => {
      note(error);
      return null;
    });
    if (info === null || info.rotatedFrom !== null) await this.syncPredecessors(id, type, context, note);
    if (unannounced !== undefined) throw unannounced;
    return info!;
  }

  /**
   * Brings the live predecessors of `id` in step with it (CHAIN_FIELDS), then reads `id` again: if it
   * changed meanwhile, once more. Whichever change is the last to write a predecessor, its writer then
   * sees the newest key unchanged since it read it, so the predecessors end as the newest key is.
   */
  private async syncPredecessors(id: string, type: ChangeType, context: ChangeContext | undefined, note: (error: unknown) => void): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const head = await this.store.get(id);
      if (head === null || head.rotatedFrom === null) return;
      for (const predecessor of await this.livePredecessors(head)) {
        await this.change(predecessor.id, (record) => {
          if (record.revokedAt !== null || !chainDiffers(record, head)) return null;
          const next: { -readonly [K in keyof KeyRecord]: KeyRecord[K] } = { ...record };
          for (const f of CHAIN_FIELDS) (next as Record<string, unknown>)[f] = head[f];
          return next;
        }, type, context, `follows ${head.id}, which replaced it`).catch(note);
      }
      const after = await this.store.get(id);
      if (after === null || after.version === head.version) return;
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing while the keys it replaced were brought in step; try again`);
  }

  /**
   * The keys `record` replaced that still work (not revoked, not expired), newest first. The walk goes
   * through the others: graces differ, so an older key may outlive a newer one.
   */
  private async livePredecessors(record: KeyRecord): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    const now = this.clock();
    let from = record.rotatedFrom;
    for (let n = 0; from !== null && n < MAX_CHAIN; n++) {
      const previous = await this.store.get(from);
      if (previous === null) break;
      const status = keyStatus(previous, now);
      if (status !== 'revoked' && status !== 'expired') out.push(previous);
      from = previous.rotatedFrom;
    }
    return out;
  }

  /**
   * Issues a new key with the old one's name, owner, scopes, metadata and prefix (and, if the old
   * key expires, the same lifetime counted from now), and makes the old key expire after `grace`
   * (default 24h), never later than it would have. The two are linked by rotatedFrom/rotatedTo.
   * A revoked, disabled or already rotated key cannot be rotated.
   */
  async rotate(id: string, options: { grace?: string | number } & ChangeContext = {}): Promise<RotatedKey> {
    checkId(id);
    if (options === null || typeof options !== 'object') fail('rotate options must be an object like { grace: "24h" }');
    const grace = parseDuration(options.grace ?? DEFAULT_GRACE, 'grace');
    const old = await this.store.get(id);
    if (old === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
    assertRotatable(old);
    const now = this.clock();
    const lifetime = old.expiresAt === null ? null : old.expiresAt - old.createdAt;
    const created = await this.insertNew({
      prefix: old.prefix,
      name: old.name,
      ownerId: old.ownerId,
      scopes: old.scopes,
      metadata: old.metadata,
      createdAt: now,
      expiresAt: lifetime === null ? null : now + lifetime,
      notBefore: null,
      rotatedFrom: old.id,
      limits: old.limits,
      // The chain shares one balance, the first key's count: rotating never copies it (see decisions).
      credits: old.credits === null ? null : { ...old.credits, account: old.credits.account ?? old.id },
    }, options);
    try {
      const previous = await this.confirmed(this.change(id, (record, t) => {
        assertRotatable(record);
        // The new key copied the record as read above: if the key changed since (narrower scopes,
        // another owner), the copy is wrong, so the rotation is abandoned and the new key revoked.
        if (record.version !== old.version) {
          throw tillError('CONFLICT', 'keys', `key ${id} changed during the rotation; rotate it again`);
        }
        const graceEnd = t + grace;
        return { ...record, rotatedTo: created.record.id, expiresAt: record.expiresAt === null ? graceEnd : Math.min(record.expiresAt, graceEnd) };
      }, 'key.rotated', options, `rotated to ${created.record.id}`));
      return { ...created, previous, announced: true };
    } catch (error) {
      if (isTillError(error, 'NOT_ANNOUNCED')) {
        // The rotation is made; only the old key's new expiry was not announced (services keep its
        // old one until their cache TTL). The new key must reach the caller all the same.
        const previous = await this.get(id);
        if (previous !== null) return { ...created, previous, announced: false };
      }
      if (isTillError(error, 'NOT_REPLICATED')) throw await this.rotationNotReplicated(error, id, created);
      // The old key changed under us (revoked, rotated elsewhere): the new key must not outlive that.
      await this.change(created.record.id, (record, t) => ({ ...record, revokedAt: t, revokedReason: 'rotation aborted' }), 'key.revoked', { ...(options.actor !== undefined && { actor: options.actor }), reason: 'rotation aborted' }).catch(() => {});
      throw error;
    }
  }

  /**
   * A rotation made on the primary that replicas did not confirm: a failover now could bring the old
   * key back without its new expiry (and lose the new key). The rotation stands (undoing it would need
   * confirming too); the error carries it, new key included, in `rotation` (not enumerable: logging or
   * serializing the error does not print the key), so that the caller can hand the key over.
   */
  private async rotationNotReplicated(error: TillError, id: string, created: CreatedKey): Promise<TillError> {
    const previous = await this.get(id).catch(() => null);
    const out = tillError('NOT_REPLICATED', 'keys', `key ${id} was rotated to ${created.record.id} on the primary, but not confirmed by replicas: a failover now could bring the old key back without its new expiry. The new key is in error.rotation; check with keys.get(${JSON.stringify(id)}) later (${error.message.replace(/^(?:\[[^\]]*\]\s*)+/, '')})`,
      { cause: error },
    );
    Object.defineProperty(out, 'rotation', { value: { ...created, previous } satisfies UnconfirmedRotation, enumerable: false });
    return out;
  }

  /** Credits left on a key now (refills included), or null when it has none. */
  async credits(id: string): Promise<number | null> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const record = await this.store.get(id);
      if (record === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      if (record.credits === null) return null;
      const live = await this.store.consume({ subject: id, keyVersion: record.version, credits: record.credits, limits: [], cost: 0, now: this.clock() });
      if (live.outcome === 'NOT_FOUND') throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      if ('credits' in live) return live.credits;
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing; try again`);
  }

  /** The key's record without its hash, or null. */
  async get(id: string): Promise<KeyInfo | null> {
    const record = await this.store.get(checkId(id));
    return record === null ? null : toKeyInfo(record);
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
    if (!parsed.ok) fail(`identify needs a whole key (prefix_ and 44 characters with a valid check); got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`);
    const { id, prefix } = parsed;
    const record = await this.store.get(id);
    if (record === null) return { id, prefix, match: 'unknown' };
    if (record.hashAlgorithm === 'hmac-sha256' && this.hasher.algorithm !== 'hmac-sha256') return { id, prefix, match: 'unconfirmable' };
    const expected = digestBytes(record.hash);
    let same: boolean;
    try {
      same = expected !== null && this.hasher.matches(key, record.hashAlgorithm, expected);
    } catch (error) {
      // A hasher without the pepper the record needs (a custom hasher may say so only here).
      if (error instanceof TillError && error.code === 'INVALID_OPTIONS') return { id, prefix, match: 'unconfirmable' };
      throw error;
    }
    return same ? { id, prefix, match: 'confirmed', status: keyStatus(record, this.clock()) } : { id, prefix, match: 'mismatch' };
  }

  /** A page of keys in creation order. */
  async list(query: ListKeysQuery = {}): Promise<{ keys: KeyInfo[]; cursor?: string }> {
    const page = await this.store.list(query);
    return page.cursor === undefined ? { keys: page.keys.map(toKeyInfo) } : { keys: page.keys.map(toKeyInfo), cursor: page.cursor };
  }

  /** Revokes a key for good. Revoking a revoked key keeps the first time and reason. */
  /**
   * Revokes a key for good, and with it (unless `chain: false`) every other key of its rotation chain
   * that still works: the keys that replaced it, and those it replaced that are in their grace period.
   * A leaked secret is one key's, but whoever leaked it may hold the others too. Revoking a revoked
   * key keeps the first time and reason. Resolves with the named key's record.
   */
  async revoke(id: string, options: ChangeContext & { chain?: boolean } = {}): Promise<KeyInfo> {
    return (await this.revokeKeys(id, options, options.chain !== false))[0]!;
  }

  /** `revoke(id)` telling what it did: the named key's record first, then each key of its chain it revoked. */
  async revokeChain(id: string, context: ChangeContext = {}): Promise<{ revoked: KeyInfo[] }> {
    return { revoked: await this.revokeKeys(id, context, true) };
  }

  private async revokeKeys(id: string, options: ChangeContext & { chain?: boolean }, chain: boolean): Promise<KeyInfo[]> {
    if (options === null || typeof options !== 'object') fail('revoke options must be an object like { reason: "leaked" }');
    if (options.chain !== undefined && typeof options.chain !== 'boolean') fail('chain must be true or false');
    const reason = options.reason === undefined ? 'revoked' : checkText(options.reason, 'reason');
    const context = { ...(options.actor !== undefined && { actor: options.actor }), reason };
    let unannounced: unknown;
    // One key: true once revoked by this call, false when it already was. Saved but not announced
    // (NOT_ANNOUNCED) counts as revoked, and the error is reported once the whole chain is done.
    const revokeOne = async (keyId: string, detail?: string): Promise<{ info: KeyInfo; made: boolean } | null> => {
      let made = false;
      try {
        const info = await this.change(keyId, (record, now) => {
          made = record.revokedAt === null;
          return made ? { ...record, revokedAt: now, revokedReason: reason } : null;
        }, 'key.revoked', context, detail);
        return { info, made };
      } catch (error) {
        if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
        unannounced ??= error;
        const info = await this.get(keyId);
        return info === null ? null : { info, made: true };
      }
    };
    return this.confirmed((async () => {
      const named = await revokeOne(checkId(id));
      if (named === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      const out = [named.info];
      if (chain) {
        const detail = `with its rotation chain (revoked: ${id})`;
        let failure: unknown;
        // Keys that replaced it: once a key is revoked it can no longer be rotated, so its rotatedTo is
        // final and the walk misses no rotation that lands meanwhile.
        let next = named.info.rotatedTo;
        for (let n = 0; next !== null && n < MAX_CHAIN; n++) {
          const done = await revokeOne(next, detail).catch((error: unknown) => {
            failure ??= error;
            return null;
          });
          if (done === null) break;
          if (done.made) out.push(done.info);
          next = done.info.rotatedTo;
        }
        // Keys it replaced that still work (a leak of the new key reaches the old one in its grace).
        const record = await this.store.get(id);
        for (const previous of record === null ? [] : await this.livePredecessors(record)) {
          const done = await revokeOne(previous.id, detail).catch((error: unknown) => {
            failure ??= error;
            return null;
          });
          if (done !== null && done.made) out.push(done.info);
        }
        if (failure !== undefined) throw failure;
      }
      if (unannounced !== undefined) throw unannounced;
      return out;
    })());
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
      const entry = this.entry('key.deleted', this.clock(), current, null, context);
      let removed: boolean;
      try {
        removed = await this.saved(id, this.store.remove(id, current.version, entry));
      } catch (error) {
        if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
        return this.confirmed(Promise.reject(error));
      }
      if (removed) return this.confirmed(Promise.resolve(toKeyInfo(current)));
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
    return auditReport(this, { now: this.clock(), ...options });
  }

  /** The audit trail, oldest first: by time range, key, owner and type. */
  async audit(query?: AuditQuery): Promise<AuditPage> {
    return this.store.readAudit(query);
  }

  /**
   * A store write's outcome: true once saved (this process's cache then drops the id at once), false
   * on a lost race. A write saved but not announced to other processes counts as saved, and its
   * NOT_ANNOUNCED error is passed on to the caller.
   */
  private saved(id: string, write: Promise<boolean>): Promise<boolean> {
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
  protected async change(
    id: string,
    edit: (record: KeyRecord, now: number) => KeyRecord | null,
    type: ChangeType,
    context: ChangeContext | undefined,
    detail?: string,
  ): Promise<KeyInfo> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(id);
      if (current === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      const now = this.clock();
      const edited = edit(current, now);
      if (edited === null) return toKeyInfo(current);
      const next: KeyRecord = { ...edited, id: current.id, updatedAt: now, version: current.version + 1 };
      if (await this.saved(id, this.store.replace(next, current.version, this.entry(type, now, current, next, context, detail)))) return toKeyInfo(next);
    }
    throw tillError('CONFLICT', 'keys', `key ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }
}
