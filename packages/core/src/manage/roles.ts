// Roles: named scope bundles (`till.roles.define('reporting', ['reports:read', 'exports:*'])`) that keys
// hold by name. Every change is a compare-and-set on the role's version, with its audit entry in the
// same step, and reaches every process's cache as a key change does.
import { isTillError, tillError } from '../errors.js';
import { auditText, type AuditRecord } from '../audit/trail.js';
import type { TillEvent } from '../observe/channels.js';
import { checkRoleName, normalizeRoleScopes, type RoleRecord } from '../store/role.js';
import type { KeyStore } from '../store/types.js';
import type { Clock } from '../util/clock.js';
import { checkText } from './checks.js';
import type { ChangeContext } from './types.js';
import { MAX_ATTEMPTS } from './writer.js';

export type { RoleRecord } from '../store/role.js';

export interface RoleManagerOptions {
  store: KeyStore;
  clock: Clock;
  /** Who makes changes when a call does not say (audit trail). */
  actor?: string | null;
  /** Called after each change saved, with the role's name (the Till drops the role from its cache). */
  onChange?: (name: string) => void;
  /** Where each change is told (`till.events`). */
  emit?: (event: TillEvent) => void;
}

/** What deleting a role did: the role as it was, and how many keys still named it (only with `force`). */
export interface DeletedRole {
  readonly role: RoleRecord;
  readonly keys: number;
}

/** The store's role methods, or an error saying the store keeps none. */
type RoleStore = Required<Pick<KeyStore, 'saveRole' | 'removeRole' | 'getRoles' | 'listRoles'>> & KeyStore;

export class RoleManager {
  private readonly actor: string | null;

  constructor(private readonly options: RoleManagerOptions) {
    this.actor = options.actor === undefined || options.actor === null ? null : checkText(options.actor, 'actor');
  }

  private store(): RoleStore {
    const store = this.options.store;
    if (
      typeof store.saveRole !== 'function' ||
      typeof store.getRoles !== 'function' ||
      typeof store.listRoles !== 'function' ||
      typeof store.removeRole !== 'function'
    ) {
      throw tillError('INVALID_OPTIONS', 'roles', `this store (${store.kind}) keeps no roles: it lacks saveRole, removeRole, getRoles and listRoles`);
    }
    return store as RoleStore;
  }

  /**
   * Defines a role, or replaces the scopes of the one of that name. Every key holding it gets the new
   * scopes at its next verification, in every process (as fast as a revocation).
   */
  async define(name: string, scopes: readonly string[], context?: ChangeContext): Promise<RoleRecord> {
    checkRoleName(name, 'roles');
    const granted = normalizeRoleScopes(scopes, 'roles');
    const store = this.store();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const [current] = await store.getRoles([name]);
      const now = this.options.clock();
      if (current && current.scopes.join('\n') === granted.join('\n')) return current;
      const role: RoleRecord = Object.freeze({
        name,
        scopes: Object.freeze(granted),
        createdAt: current ? current.createdAt : now,
        updatedAt: now,
        version: current ? current.version + 1 : 1,
      });
      const detail = `role ${name}: ${granted.join(' ')}${current ? ` (was: ${current.scopes.join(' ')})` : ''}`;
      if (await this.saved(name, store.saveRole(role, current ? current.version : null, this.entry('role.defined', now, detail, context)))) {
        this.options.emit?.({ type: 'role.defined', name, scopes: role.scopes, version: role.version });
        return role;
      }
    }
    throw tillError('CONFLICT', 'roles', `role ${name} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /** The role of this name, or null. */
  async get(name: string): Promise<RoleRecord | null> {
    checkRoleName(name, 'roles');
    const [role] = await this.store().getRoles([name]);
    return role ?? null;
  }

  /** Every role, by name. */
  async list(): Promise<RoleRecord[]> {
    return this.store().listRoles();
  }

  /**
   * How many keys that still work (not revoked) hold the role: a walk of every key, a page at a time.
   * An admin path (a deletion asks it): no index is kept, as on Cluster one could not be written in the
   * same atomic step as the key it counts.
   */
  async holders(name: string): Promise<number> {
    checkRoleName(name, 'roles');
    const store = this.options.store;
    let count = 0;
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 1000, ...(cursor !== undefined && { cursor }) });
      for (const key of page.keys) if (key.revokedAt === null && key.roles.includes(name)) count++;
      cursor = page.cursor;
    } while (cursor !== undefined);
    return count;
  }

  /** How many identities hold the role (their keys get its scopes): a walk of every identity. An admin path. */
  async identityHolders(name: string): Promise<number> {
    checkRoleName(name, 'roles');
    const store = this.options.store;
    if (typeof store.listIdentities !== 'function') return 0;
    let count = 0;
    let cursor: string | undefined;
    do {
      const page = await store.listIdentities({ limit: 1000, ...(cursor !== undefined && { cursor }) });
      for (const identity of page.identities) if (identity.roles.includes(name)) count++;
      cursor = page.cursor;
    } while (cursor !== undefined);
    return count;
  }

  /**
   * Deletes a role. Refused with ROLE_IN_USE while keys hold it, saying how many, unless `force`: those
   * keys then lose its scopes at once (a role that does not exist grants nothing), and keep its name
   * until they are updated. Rejects with ROLE_NOT_FOUND when there is no such role.
   */
  async delete(name: string, options: ChangeContext & { force?: boolean } = {}): Promise<DeletedRole> {
    checkRoleName(name, 'roles');
    if (options === null || typeof options !== 'object') throw tillError('INVALID_ARGUMENT', 'roles', 'delete options must be an object');
    if (options.force !== undefined && typeof options.force !== 'boolean') throw tillError('INVALID_ARGUMENT', 'roles', 'force must be true or false');
    const store = this.store();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const [current] = await store.getRoles([name]);
      if (!current) throw tillError('ROLE_NOT_FOUND', 'roles', `no role ${name}`);
      const keys = await this.holders(name);
      const identities = await this.identityHolders(name);
      if ((keys > 0 || identities > 0) && options.force !== true) {
        const held = [keys > 0 ? `${keys} key${keys === 1 ? '' : 's'}` : '', identities > 0 ? `${identities} identit${identities === 1 ? 'y' : 'ies'}` : '']
          .filter(Boolean)
          .join(' and ');
        throw tillError(
          'ROLE_IN_USE',
          'roles',
          `role ${name} is held by ${held}: take it from them first (keys.update(id, { roles }), identities.update(id, { roles })), or delete with { force: true } and they lose its scopes at once`,
        );
      }
      const now = this.options.clock();
      const detail = `role ${name}: ${current.scopes.join(' ')}${keys > 0 ? ` (forced: held by ${keys} key${keys === 1 ? '' : 's'})` : ''}`;
      if (await this.saved(name, store.removeRole(name, current.version, this.entry('role.deleted', now, detail, options)))) {
        this.options.emit?.({ type: 'role.deleted', name, keys });
        return { role: current, keys };
      }
    }
    throw tillError('CONFLICT', 'roles', `role ${name} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /** A change saved (or saved and not announced, which is passed on): this process forgets the role at once. */
  private saved(name: string, write: Promise<boolean>): Promise<boolean> {
    return write.then(
      (ok) => {
        if (ok) this.options.onChange?.(name);
        return ok;
      },
      (error: unknown) => {
        if (isTillError(error, 'NOT_ANNOUNCED')) this.options.onChange?.(name);
        throw error;
      },
    );
  }

  private entry(type: 'role.defined' | 'role.deleted', at: number, detail: string, context: ChangeContext | undefined): AuditRecord {
    const actor = context?.actor === undefined ? this.actor : checkText(context.actor, 'actor');
    return {
      type,
      at,
      keyId: null,
      ownerId: null,
      actor,
      reason: context?.reason === undefined ? null : auditText(checkText(context.reason, 'reason')),
      before: null,
      after: null,
      detail: auditText(detail, 2000) ?? '',
    };
  }
}
