// Every check of the key manager's input, and of whether a key's state allows a change: each failure
// is a TillError (INVALID_ARGUMENT for bad input) whose message says what is expected.
import { tillError } from '../errors.js';
import { assertValidPrefix, isValidKeyId } from '../key/format.js';
import { normalizeCredits, normalizeRateLimits, type RateLimit } from '../limits/rules.js';
import type { KeyRecord } from '../store/record.js';
import { parseDuration } from '../util/duration.js';
import { isSafeText } from '../util/text.js';
import { normalizeGrants } from '../verify/scopes.js';
import { normalizeAllowlist } from '../verify/allowlist.js';
import { normalizeRoleNames } from '../store/role.js';
import type { CreateKeyInput, KeyPatch } from './types.js';
import { isValidIdentityId } from '../identity/record.js';

/** An identity id given to a key (null: none). */
export function checkIdentityRef(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (!isValidIdentityId(value)) fail('identityId must be an identity id: 1-64 letters, digits, "_", ".", "-", "@" or ":"');
  return value;
}

const PATCH_FIELDS = [
  'name',
  'scopes',
  'metadata',
  'setMetadata',
  'unsetMetadata',
  'expiresAt',
  'expiresIn',
  'notBefore',
  'disabled',
  'limits',
  'credits',
  'allowedIps',
  'roles',
  'identityId',
];
const MAX_TEXT = 200;
const MAX_METADATA_BYTES = 4096;

export function fail(message: string): never {
  throw tillError('INVALID_ARGUMENT', 'keys', message);
}

export function checkText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_TEXT || !isSafeText(value)) {
    fail(`${field} must be a non-empty string of at most ${MAX_TEXT} characters without control characters`);
  }
  return value;
}

export function toMillis(value: Date | number | null | undefined, field: string): number | null {
  if (value === undefined || value === null) return null;
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) fail(`${field} must be a valid Date or epoch milliseconds`);
  return ms;
}

/** The expiry asked for by `expiresAt` or `expiresIn` (one of them), which must lie ahead. */
export function expiryOf(input: { expiresAt?: Date | number | null; expiresIn?: string | number }, now: number): number | null {
  if (input.expiresAt !== undefined && input.expiresIn !== undefined) fail('give expiresAt or expiresIn, not both');
  const expiresAt = input.expiresIn !== undefined ? now + parseDuration(input.expiresIn, 'expiresIn') : toMillis(input.expiresAt, 'expiresAt');
  if (expiresAt !== null && expiresAt <= now) fail('the expiry must be in the future');
  return expiresAt;
}

export function checkWindow(expiresAt: number | null, notBefore: number | null): void {
  if (expiresAt !== null && notBefore !== null && notBefore >= expiresAt) fail('notBefore must be before the expiry');
}

export function checkMetadata(value: unknown): Record<string, unknown> {
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

export function checkId(id: unknown): string {
  if (!isValidKeyId(id)) fail('key id must be the 16-character id printed with the key');
  return id;
}

/** The settings of a new key from `create()`'s input, checked; `prefix` is the manager's default. */
export function checkCreate(
  input: CreateKeyInput,
  now: number,
  prefix: string,
): Pick<
  KeyRecord,
  'prefix' | 'name' | 'ownerId' | 'scopes' | 'metadata' | 'expiresAt' | 'notBefore' | 'limits' | 'credits' | 'allowedIps' | 'roles' | 'identityId'
> {
  if (!input || typeof input !== 'object') fail('create needs { name, scopes }');
  const name = checkText(input.name, 'name');
  // Left out, scopes are no default but a choice to make: a key that may do everything is the one a leak hurts most.
  if (input.scopes === undefined) {
    fail(
      'create needs scopes: the narrowest list of what this key may do, like ["orders:read"]. A key that may do everything ("*") turns any leak into a full breach; [] gives a key only what its roles or identity grant',
    );
  }
  const scopes = normalizeGrants(input.scopes, 'keys');
  const ownerId = input.ownerId === undefined || input.ownerId === null ? null : checkText(input.ownerId, 'ownerId');
  const metadata = checkMetadata(input.metadata);
  const expiresAt = expiryOf(input, now);
  const notBefore = toMillis(input.notBefore, 'notBefore');
  checkWindow(expiresAt, notBefore);
  const chosen = input.prefix ?? prefix;
  assertValidPrefix(chosen, 'keys');
  const limits: readonly RateLimit[] = input.limits === undefined ? [] : normalizeRateLimits(input.limits, 'keys');
  const credits = input.credits === undefined || input.credits === null ? null : normalizeCredits(input.credits, 'keys', now, 1);
  const allowedIps = input.allowedIps === undefined || input.allowedIps === null ? [] : normalizeAllowlist(input.allowedIps, 'keys');
  const roles = input.roles === undefined || input.roles === null ? [] : normalizeRoleNames(input.roles, 'keys');
  const identityId = checkIdentityRef(input.identityId);
  return { prefix: chosen, name, ownerId, scopes, metadata, expiresAt, notBefore, limits, credits, allowedIps, roles, identityId };
}

/** An `update()` patch, checked: the fields it sets outright, and the metadata entries it merges. */
export interface CheckedPatch {
  readonly changes: { -readonly [K in keyof KeyRecord]?: KeyRecord[K] };
  /** Whether metadata is merged (setMetadata/unsetMetadata) rather than replaced. */
  readonly merging: boolean;
  readonly set: Record<string, unknown>;
  readonly unset: readonly string[];
}

export function checkPatch(patch: KeyPatch, now: number): CheckedPatch {
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
  if ('expiresAt' in patch || 'expiresIn' in patch) changes.expiresAt = expiryOf(patch, now);
  if ('notBefore' in patch) changes.notBefore = toMillis(patch.notBefore, 'notBefore');
  if (patch.limits !== undefined) changes.limits = normalizeRateLimits(patch.limits, 'keys');
  if (patch.roles !== undefined) changes.roles = patch.roles === null ? [] : normalizeRoleNames(patch.roles, 'keys');
  if (patch.allowedIps !== undefined) changes.allowedIps = patch.allowedIps === null ? [] : normalizeAllowlist(patch.allowedIps, 'keys');
  if ('identityId' in patch) changes.identityId = checkIdentityRef(patch.identityId);
  // Checked now; stamped inside the compare-and-set with the version that sets them.
  if (patch.credits !== undefined && patch.credits !== null) normalizeCredits(patch.credits, 'keys', now, 0);
  return { changes, merging, set, unset };
}

export function assertNotRevoked(record: KeyRecord): void {
  if (record.revokedAt !== null) throw tillError('KEY_REVOKED', 'keys', `key ${record.id} is revoked; a revoked key cannot change`);
}

/**
 * A superseded key (rotated, in its grace period or past it) follows its newest key: it cannot be
 * changed on its own, or a change meant for the key in use (a narrowing) would miss it, and one made
 * to the old key (no expiry) would undo its grace. Revoking and deleting it are the exceptions.
 */
export function assertCurrent(record: KeyRecord): void {
  assertNotRevoked(record);
  if (record.rotatedTo !== null) {
    throw tillError(
      'KEY_ROTATED',
      'keys',
      `key ${record.id} was rotated to ${record.rotatedTo}: change that key instead (a change of the newest key reaches the keys still in their grace period); to end this key's grace early, revoke it alone (revoke with { chain: false }, or till keys revoke --key-only)`,
    );
  }
}

export function assertRotatable(record: KeyRecord): void {
  assertNotRevoked(record);
  if (record.rotatedTo !== null) throw tillError('KEY_ROTATED', 'keys', `key ${record.id} was already rotated to ${record.rotatedTo}; rotate that key instead`);
  if (record.disabled) throw tillError('KEY_DISABLED', 'keys', `key ${record.id} is disabled; enable it before rotating`);
}
