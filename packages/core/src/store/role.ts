// Roles: named bundles of scopes, stored beside keys. A key holds role names; the verifier resolves
// them into scopes. The stored shape, its checks and its encoding.
import { tillError } from '../errors.js';
import { MAX_SCOPES, normalizeGrants } from '../verify/scopes.js';

/** A role as stored. Times are epoch milliseconds. */
export interface RoleRecord {
  readonly name: string;
  /** Grants, like a key's (wildcards allowed), sorted and without duplicates. */
  readonly scopes: readonly string[];
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Bumped by every change; a store only accepts a write made against the current version. */
  readonly version: number;
}

/** A role name: a lowercase letter or digit, then up to 63 of a-z 0-9 _ . - (like `reporting`, `billing.read-only`). */
const ROLE_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** Most roles one key holds. */
export const MAX_ROLES = 32;

export function isValidRoleName(value: unknown): value is string {
  return typeof value === 'string' && ROLE_NAME.test(value);
}

/** A role name, checked: INVALID_ARGUMENT naming what is allowed. Never echoes more than a short slice. */
export function checkRoleName(value: unknown, where: string): string {
  if (!isValidRoleName(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 64)) : typeof value;
    throw tillError('INVALID_ARGUMENT', where, `invalid role name ${shown}: 1-64 characters of a-z 0-9 _ . -, starting with a letter or digit`);
  }
  return value;
}

/** A key's role list, checked, sorted and without duplicates. */
export function normalizeRoleNames(value: unknown, where: string): string[] {
  if (!Array.isArray(value)) throw tillError('INVALID_ARGUMENT', where, 'roles must be an array of role names');
  if (value.length > MAX_ROLES) throw tillError('INVALID_ARGUMENT', where, `a key holds at most ${MAX_ROLES} roles`);
  for (const name of value) checkRoleName(name, where);
  return [...new Set(value as string[])].sort();
}

/** A role's scopes, checked like a key's grants (at most MAX_SCOPES, wildcards allowed), sorted. */
export function normalizeRoleScopes(value: unknown, where: string): string[] {
  const scopes = normalizeGrants(value, where);
  if (scopes.length === 0) throw tillError('INVALID_ARGUMENT', where, `a role needs at least one scope (at most ${MAX_SCOPES})`);
  return scopes;
}

export function encodeRole(role: RoleRecord): string {
  return JSON.stringify({ version: role.version, name: role.name, scopes: role.scopes, createdAt: role.createdAt, updatedAt: role.updatedAt });
}

/** Parses a stored role, rejecting anything that is not one (the verifier must never grant from junk). */
export function decodeRole(json: string): RoleRecord {
  const v = JSON.parse(json) as Record<string, unknown>;
  if (!isValidRoleName(v.name)) throw new Error('stored role has no valid "name"');
  if (!Array.isArray(v.scopes) || !v.scopes.every((s) => typeof s === 'string')) throw new Error('stored role has no valid "scopes"');
  for (const field of ['createdAt', 'updatedAt', 'version'] as const) {
    if (!Number.isSafeInteger(v[field])) throw new Error(`stored role has no valid "${field}"`);
  }
  return Object.freeze({
    name: v.name,
    scopes: Object.freeze(normalizeGrants(v.scopes, 'roles')),
    createdAt: v.createdAt as number,
    updatedAt: v.updatedAt as number,
    version: v.version as number,
  });
}

/**
 * What a store publishes on its invalidation channel when a role changes: `role:<name>`, which no key
 * id can be (ids are 16 characters of base62), so listeners tell the two apart.
 */
export const ROLE_MESSAGE_PREFIX = 'role:';

export function roleMessage(name: string): string {
  return `${ROLE_MESSAGE_PREFIX}${name}`;
}

/** The role name of an invalidation message, or null when it names a key. */
export function roleOfMessage(message: string): string | null {
  return message.startsWith(ROLE_MESSAGE_PREFIX) ? message.slice(ROLE_MESSAGE_PREFIX.length) : null;
}
