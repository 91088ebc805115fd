// The identity manager: identities created, read, changed and deleted, each change a compare-and-set
// on the identity's version with its audit entry and an event, as the key manager does for keys.
import { isTillError, tillError } from '../errors.js';
import { randomBase62 } from '../key/base62.js';
import { auditText, type AuditRecord, type ChangeType } from '../audit/trail.js';
import type { TillEvents } from '../audit/events.js';
import type { CreditsInput, RateLimitInput } from '../limits/rules.js';
import type { IdentityPage, KeyStore, ListIdentitiesQuery } from '../store/types.js';
import { systemClock, type Clock } from '../util/clock.js';
import { checkText } from '../manage/checks.js';
import type { ChangeContext } from '../manage/types.js';
import { assertRolesExist } from '../manage/role-checks.js';
import {
  checkAllowedIps,
  checkCredits,
  checkIdentityId,
  checkLimits,
  checkMetadata,
  checkName,
  checkRoles,
  identitySubject,
  type IdentityRecord,
} from './record.js';

export interface CreateIdentityInput {
  /** The identity's id: your own customer, team or tenant id (see IDENTITY_ID), or drawn when absent. */
  id?: string;
  /** A label for people: "Acme Corp". */
  name: string;
  /** Free JSON data, at most 4 KiB as JSON. */
  metadata?: Record<string, unknown>;
  /** Rate limits shared by every key of the identity. */
  limits?: readonly RateLimitInput[];
  /** Credits shared by every key of the identity; absent or null: unlimited. */
  credits?: CreditsInput | null;
  /** Networks the identity's keys may be used from (CIDR). */
  allowedIps?: readonly string[];
  /** Roles every key of the identity holds. */
  roles?: readonly string[];
}

export interface IdentityPatch {
  name?: string;
  /** Replaces all metadata. */
  metadata?: Record<string, unknown>;
  /** Replaces the limits ([] removes them). */
  limits?: readonly RateLimitInput[];
  /** Sets the credits anew (the live count restarts from `remaining`); null removes them. */
  credits?: CreditsInput | null;
  allowedIps?: readonly string[];
  roles?: readonly string[];
}

/** What a deletion did: the identity as it was, and how many keys still named it (a forced deletion). */
export interface DeletedIdentity {
  readonly identity: IdentityRecord;
  readonly keys: number;
}

const CREATE_FIELDS = ['id', 'name', 'metadata', 'limits', 'credits', 'allowedIps', 'roles'];
const PATCH_FIELDS = ['name', 'metadata', 'limits', 'credits', 'allowedIps', 'roles'];
/** Reads and writes of one change before it gives up with CONFLICT. */
const MAX_ATTEMPTS = 16;

export interface IdentityManagerOptions {
  store: KeyStore;
  clock?: Clock;
  /** Who makes changes when a call does not say (audit trail). */
  actor?: string;
  /** Told each identity event. */
  events?: TillEvents;
  /** Called after each change saved, with the identity id (the Till instance drops its keys from its cache). */
  onChange?: (identityId: string) => void;
}

function fail(message: string): never {
  throw tillError('INVALID_ARGUMENT', 'identities', message);
}

function checkFields(input: unknown, fields: readonly string[], what: string): Record<string, unknown> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail(`${what} needs an object`);
  for (const field of Object.keys(input)) if (!fields.includes(field)) fail(`unknown field "${field.slice(0, 40)}"; fields: ${fields.join(', ')}`);
  return input as Record<string, unknown>;
}

/** The store's identity methods, or a clear error for a store without them (a custom store). */
type IdentityStore = Required<Pick<KeyStore, 'getIdentity' | 'insertIdentity' | 'replaceIdentity' | 'removeIdentity' | 'listIdentities' | 'countIdentityKeys'>>;

export class IdentityManager {
  private readonly clock: Clock;
  private readonly actor: string | null;

  constructor(private readonly options: IdentityManagerOptions) {
    if (!options?.store) throw tillError('INVALID_OPTIONS', 'identities', 'a store is required');
    this.clock = options.clock ?? systemClock;
    this.actor = options.actor === undefined ? null : checkText(options.actor, 'actor');
  }

  private get store(): IdentityStore {
    const store = this.options.store;
    if (typeof store.getIdentity !== 'function' || typeof store.insertIdentity !== 'function')
      throw tillError('INVALID_OPTIONS', 'identities', `the ${store.kind} store does not keep identities`);
    return store as unknown as IdentityStore;
  }

  /** Creates an identity; rejects with IDENTITY_EXISTS when its id is taken. */
  async create(input: CreateIdentityInput, context?: ChangeContext): Promise<IdentityRecord> {
    const fields = checkFields(input, CREATE_FIELDS, 'create');
    const now = this.clock();
    const id = fields.id === undefined ? `id_${randomBase62(16)}` : checkIdentityId(fields.id);
    const record: IdentityRecord = {
      id,
      name: checkName(fields.name),
      metadata: checkMetadata(fields.metadata),
      limits: fields.limits === undefined ? [] : checkLimits(fields.limits),
      credits: fields.credits === undefined || fields.credits === null ? null : checkCredits(fields.credits, now, 1),
      allowedIps: fields.allowedIps === undefined ? [] : checkAllowedIps(fields.allowedIps),
      roles: fields.roles === undefined ? [] : checkRoles(fields.roles),
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    const store = this.store;
    await assertRolesExist(this.options.store, record.roles, 'identities');
    await store.insertIdentity(record, this.entry('identity.created', now, id, null, record, context));
    this.options.onChange?.(id);
    this.emit('identity.created', id, context);
    return record;
  }

  /** The identity, or null. */
  async get(id: string): Promise<IdentityRecord | null> {
    return this.store.getIdentity(checkIdentityId(id));
  }

  /** A page of identities in creation order. */
  async list(query: ListIdentitiesQuery = {}): Promise<IdentityPage> {
    if (query === null || typeof query !== 'object') fail('list takes { cursor, limit }');
    return this.store.listIdentities(query);
  }

  /** The identity's credits left now (refills included), or null when it has none. */
  async credits(id: string): Promise<number | null> {
    checkIdentityId(id);
    const store = this.store;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const identity = await store.getIdentity(id);
      if (identity === null) throw tillError('IDENTITY_NOT_FOUND', 'identities', `no identity ${id}`);
      if (identity.credits === null) return null;
      // A charge of nothing reads the live count (the identity's version checked, as every charge does).
      const live = await this.options.store.consume({
        subject: identitySubject(id),
        keyVersion: identity.version,
        credits: identity.credits,
        limits: [],
        cost: 0,
        now: this.clock(),
      });
      if ('credits' in live) return live.credits;
    }
    throw tillError('CONFLICT', 'identities', `identity ${id} kept changing; try again`);
  }

  /** How many keys name the identity. */
  async keyCount(id: string): Promise<number> {
    return this.store.countIdentityKeys(checkIdentityId(id));
  }

  /**
   * Changes an identity's name, metadata, limits, credits, networks or roles. Fields left out stay.
   * Every process drops the identity's keys from its cache, as on a revocation.
   */
  async update(id: string, patch: IdentityPatch, context?: ChangeContext): Promise<IdentityRecord> {
    checkIdentityId(id);
    const fields = checkFields(patch, PATCH_FIELDS, 'update');
    if (Object.keys(fields).length === 0) fail('update names no field to change');
    const changes: { -readonly [K in keyof IdentityRecord]?: IdentityRecord[K] } = {};
    if (fields.name !== undefined) changes.name = checkName(fields.name);
    if (fields.metadata !== undefined) changes.metadata = checkMetadata(fields.metadata);
    if (fields.limits !== undefined) changes.limits = checkLimits(fields.limits);
    if (fields.allowedIps !== undefined) changes.allowedIps = checkAllowedIps(fields.allowedIps);
    if (fields.roles !== undefined) {
      changes.roles = checkRoles(fields.roles);
      await assertRolesExist(this.options.store, changes.roles, 'identities');
    }
    // Checked now; stamped inside the compare-and-set with the version that sets them.
    if (fields.credits !== undefined && fields.credits !== null) checkCredits(fields.credits, this.clock(), 0);
    const store = this.store;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await store.getIdentity(id);
      if (current === null) throw tillError('IDENTITY_NOT_FOUND', 'identities', `no identity ${id}`);
      const now = this.clock();
      const version = current.version + 1;
      const next: IdentityRecord = {
        ...current,
        ...changes,
        ...(fields.credits !== undefined && { credits: fields.credits === null ? null : checkCredits(fields.credits, now, version) }),
        updatedAt: now,
        version,
      };
      if (await this.saved(id, store.replaceIdentity(next, current.version, this.entry('identity.updated', now, id, current, next, context)))) {
        this.emit('identity.updated', id, context);
        return next;
      }
    }
    throw tillError('CONFLICT', 'identities', `identity ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /**
   * Deletes an identity. While keys still name it, refused with IDENTITY_IN_USE (saying how many)
   * unless `force`: its keys are then refused as disabled until they are given another identity (or
   * none) or deleted, so a deletion never lifts the shared limits off them.
   */
  async delete(id: string, options: ChangeContext & { force?: boolean } = {}): Promise<DeletedIdentity> {
    checkIdentityId(id);
    if (options === null || typeof options !== 'object') fail('delete takes { force, actor, reason }');
    if (options.force !== undefined && typeof options.force !== 'boolean') fail('force must be true or false');
    const store = this.store;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await store.getIdentity(id);
      if (current === null) throw tillError('IDENTITY_NOT_FOUND', 'identities', `no identity ${id}`);
      const keys = await store.countIdentityKeys(id);
      if (keys > 0 && options.force !== true) {
        throw tillError(
          'IDENTITY_IN_USE',
          'identities',
          `identity ${id} still has ${keys} key${keys === 1 ? '' : 's'}: move ${keys === 1 ? 'it' : 'them'} to another identity or delete ${keys === 1 ? 'it' : 'them'} first, or delete with force (the keys are then refused as disabled)`,
        );
      }
      const now = this.clock();
      const detail = keys > 0 ? `forced with ${keys} key${keys === 1 ? '' : 's'}` : undefined;
      if (await this.saved(id, store.removeIdentity(id, current.version, this.entry('identity.deleted', now, id, current, null, options, detail)))) {
        this.emit('identity.deleted', id, options, keys);
        return { identity: current, keys };
      }
    }
    throw tillError('CONFLICT', 'identities', `identity ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /** A write's outcome; this process's cache drops the identity's keys at once when it was saved. */
  private saved(id: string, write: Promise<boolean>): Promise<boolean> {
    return write.then(
      (ok) => {
        if (ok) this.options.onChange?.(id);
        return ok;
      },
      (error: unknown) => {
        if (isTillError(error, 'NOT_ANNOUNCED')) this.options.onChange?.(id);
        throw error;
      },
    );
  }

  private actorOf(context: ChangeContext | undefined): string | null {
    return context?.actor === undefined ? this.actor : checkText(context.actor, 'actor');
  }

  private entry(
    type: ChangeType,
    at: number,
    identityId: string,
    before: IdentityRecord | null,
    after: IdentityRecord | null,
    context: ChangeContext | undefined,
    detail?: string,
  ): AuditRecord {
    return {
      type,
      at,
      keyId: null,
      ownerId: null,
      actor: this.actorOf(context),
      reason: context?.reason === undefined ? null : auditText(checkText(context.reason, 'reason')),
      before: null,
      after: null,
      identityId,
      identityBefore: before,
      identityAfter: after,
      ...(detail !== undefined && { detail }),
    };
  }

  private emit(
    type: 'identity.created' | 'identity.updated' | 'identity.deleted',
    identityId: string,
    context: ChangeContext | undefined,
    keys?: number,
  ): void {
    this.options.events?.emit({ type, identityId, actor: this.actorOf(context), ...(keys !== undefined && keys > 0 && { keys }) });
  }
}
