// An identity: the owner of keys, with limits and credits of its own that all of its keys share.
import { isTillError, tillError } from '../errors.js';
import { isValidLimitName, normalizeCredits, normalizeRateLimits, type Credits, type RateLimit } from '../limits/rules.js';
import { isSafeText } from '../util/text.js';
import { isStoredAllowlist, normalizeAllowlist } from '../verify/allowlist.js';
import { isValidRoleName, MAX_ROLES, normalizeRoleNames } from '../store/role.js';

/** Everything stored about one identity. Times are epoch milliseconds. */
export interface IdentityRecord {
  /** Chosen by the application (a customer, team or tenant id) or drawn: see IDENTITY_ID. */
  readonly id: string;
  readonly name: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Rate limits shared by every key of the identity: each request with any of them is charged here too. */
  readonly limits: readonly RateLimit[];
  /** Credits shared by every key of the identity, or null for none (unlimited). */
  readonly credits: Credits | null;
  /** Networks the identity's keys may be used from (CIDR); empty: any. Checked by the verifier's policies. */
  readonly allowedIps: readonly string[];
  /** Roles every key of the identity holds; resolved by the verifier's policies. */
  readonly roles: readonly string[];
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Bumped by every change; stores only accept a write made against the current version. */
  readonly version: number;
}

/**
 * An identity id: 1-64 letters, digits and `_ . - @ :`, starting with a letter or digit. No braces
 * (it names a Redis hash tag) and no spaces (it is a CLI argument and a log field).
 */
export const IDENTITY_ID = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$/;

export function isValidIdentityId(id: unknown): id is string {
  return typeof id === 'string' && IDENTITY_ID.test(id);
}

/**
 * The charge subject of an identity: its limits, credits and record live under this hash tag on
 * Redis, apart from any key's (a key id is 16 base62 characters and never holds a colon).
 */
export function identitySubject(id: string): string {
  return `${IDENTITY_SUBJECT}${id}`;
}

/** What every identity's charge subject begins with. */
export const IDENTITY_SUBJECT = 'identity:';

/** The invalidation message of an identity's change: every process drops the cached keys of the identity. */
export const IDENTITY_INVALIDATION = 'identity:';

const MAX_TEXT = 200;
const MAX_METADATA_BYTES = 4096;

function fail(message: string): never {
  throw tillError('INVALID_ARGUMENT', 'identities', message);
}

export function checkIdentityId(id: unknown): string {
  if (!isValidIdentityId(id)) fail('identity id must be 1-64 letters, digits, "_", ".", "-", "@" or ":", starting with a letter or digit');
  return id;
}

export function checkName(value: unknown): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_TEXT || !isSafeText(value)) {
    fail(`name must be a non-empty string of at most ${MAX_TEXT} characters without control characters`);
  }
  return value;
}

export function checkMetadata(value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('metadata must be a plain object');
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    fail('metadata must be JSON-serializable');
  }
  if (json === undefined) fail('metadata must be JSON-serializable');
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) fail(`metadata must be at most ${MAX_METADATA_BYTES} bytes as JSON`);
  return JSON.parse(json) as Record<string, unknown>;
}

/** The rules' own checks, reported as bad input of an identity. */
function asArgument<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (isTillError(error)) fail(error.message.replace(/^\[till\] \[[a-z]+\] /, ''));
    throw error;
  }
}

export function checkLimits(value: unknown): RateLimit[] {
  return asArgument(() => normalizeRateLimits(value, 'identities'));
}

export function checkCredits(value: unknown, setAt: number, generation: number): Credits {
  return asArgument(() => normalizeCredits(value, 'identities', setAt, generation));
}

/** The identity's allowlist: the rules of a key's (verify/allowlist.ts), canonical ranges. */
export function checkAllowedIps(value: unknown): string[] {
  return value === null ? [] : asArgument(() => normalizeAllowlist(value, 'identities'));
}

/** The identity's roles: the rules of a key's (store/role.ts); that each is defined is the manager's check. */
export function checkRoles(value: unknown): string[] {
  return value === null ? [] : asArgument(() => normalizeRoleNames(value, 'identities'));
}

/** An identity as stored: JSON with `version` first (a charge reads the version with a pattern, as it does a key's). */
export function encodeIdentity(record: IdentityRecord): string {
  const { version, ...rest } = record;
  return JSON.stringify({ version, ...rest });
}

const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/** Parses a stored identity, rejecting anything that is not one (the verifier must not judge by junk). */
export function decodeIdentity(json: string): IdentityRecord {
  const v = JSON.parse(json) as Record<string, unknown>;
  const bad = (field: string): never => {
    throw new Error(`stored identity has no valid "${field}"`);
  };
  if (!isValidIdentityId(v.id)) bad('id');
  if (typeof v.name !== 'string') bad('name');
  for (const field of ['createdAt', 'updatedAt', 'version']) if (!count(v[field])) bad(field);
  if (typeof v.metadata !== 'object' || v.metadata === null || Array.isArray(v.metadata)) bad('metadata');
  const limits = v.limits as RateLimit[];
  if (
    !Array.isArray(limits) ||
    !limits.every((l) => typeof l === 'object' && l !== null && isValidLimitName(l.name) && count(l.limit) && l.limit >= 1 && count(l.window) && l.window >= 1)
  )
    bad('limits');
  const c = v.credits as Credits | null;
  if (
    c !== null &&
    !(
      typeof c === 'object' &&
      count(c.remaining) &&
      count(c.setAt) &&
      count(c.generation) &&
      (c.refill === null || (typeof c.refill === 'object' && count(c.refill.amount) && count(c.refill.interval) && c.refill.interval >= 1))
    )
  )
    bad('credits');
  if (!isStoredAllowlist(v.allowedIps)) bad('allowedIps');
  if (!(Array.isArray(v.roles) && v.roles.length <= MAX_ROLES && v.roles.every(isValidRoleName))) bad('roles');
  return Object.freeze({
    id: v.id as string,
    name: v.name as string,
    metadata: Object.freeze(v.metadata as Record<string, unknown>),
    limits: Object.freeze(limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window }))),
    credits:
      c === null
        ? null
        : Object.freeze({
            remaining: c.remaining,
            refill: c.refill === null ? null : Object.freeze({ ...c.refill }),
            setAt: c.setAt,
            generation: c.generation,
          }),
    allowedIps: Object.freeze([...(v.allowedIps as string[])]),
    roles: Object.freeze([...(v.roles as string[])]),
    createdAt: v.createdAt as number,
    updatedAt: v.updatedAt as number,
    version: v.version as number,
  });
}
