// The stored shape of a key, and the public view of it that never holds the hash.
import type { HashAlgorithm } from '../key/hash.js';
import { isValidLimitName, type Credits, type RateLimit } from '../limits/rules.js';
import type { VerifiedKey } from '../verify/outcome.js';
import { isStoredAllowlist } from '../verify/allowlist.js';
import { isValidRoleName, MAX_ROLES } from './role.js';

/** Everything stored about one key. Times are epoch milliseconds. The secret itself is never stored. */
export interface KeyRecord {
  readonly id: string;
  readonly prefix: string;
  /** Digest of the full key, base64url. Never leaves the store, the verifier's cache or this type. */
  readonly hash: string;
  readonly hashAlgorithm: HashAlgorithm;
  readonly name: string;
  readonly ownerId: string | null;
  readonly scopes: readonly string[];
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly expiresAt: number | null;
  readonly notBefore: number | null;
  readonly revokedAt: number | null;
  readonly revokedReason: string | null;
  readonly disabled: boolean;
  /** Rotation links: the key this one replaced, and the key that replaced it. */
  readonly rotatedFrom: string | null;
  readonly rotatedTo: string | null;
  /** Rate limits of this key, all charged by every request it makes. */
  readonly limits: readonly RateLimit[];
  /** Usage credits, or null for none (unlimited). */
  readonly credits: Credits | null;
  /** Bumped by every change; stores only accept a write made against the current version. */
  readonly version: number;
  /** Client IP ranges the key may be used from (canonical CIDR text); empty: from anywhere. */
  readonly allowedIps: readonly string[];
  /** Names of the roles the key holds (their scopes join the key's at verification); sorted. */
  readonly roles: readonly string[];
  /**
   * The identity the key belongs to (its limits and credits are shared by all of its keys), or null.
   * Absent in records written before identities: read as null.
   */
  readonly identityId?: string | null;
}

/** A key record without its hash: what admin APIs return and what may be printed. */
export type KeyInfo = Omit<KeyRecord, 'hash' | 'hashAlgorithm'>;

export function toKeyInfo(record: KeyRecord): KeyInfo {
  const { hash: _hash, hashAlgorithm: _alg, ...info } = record;
  return info;
}

export function toVerifiedKey(record: KeyRecord): VerifiedKey {
  return Object.freeze({
    id: record.id,
    prefix: record.prefix,
    name: record.name,
    ownerId: record.ownerId,
    // Shared when frozen (as records read from a store are), copied otherwise.
    scopes: Object.isFrozen(record.scopes) ? record.scopes : Object.freeze([...record.scopes]),
    metadata: Object.isFrozen(record.metadata) ? record.metadata : Object.freeze({ ...record.metadata }),
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    limits: record.limits,
    credits: record.credits === null ? null : { refill: record.credits.refill },
    identityId: record.identityId ?? null,
  });
}

export type KeyStatus = 'active' | 'revoked' | 'disabled' | 'expired' | 'not_yet_valid';

/** Status of a record at `now`, in the order the verifier checks them. */
export function keyStatus(record: Pick<KeyRecord, 'revokedAt' | 'disabled' | 'expiresAt' | 'notBefore'>, now: number): KeyStatus {
  // Revocation is immediate, whatever the clock of the host that revoked said.
  if (record.revokedAt !== null) return 'revoked';
  if (record.disabled) return 'disabled';
  if (record.expiresAt !== null && record.expiresAt <= now) return 'expired';
  if (record.notBefore !== null && record.notBefore > now) return 'not_yet_valid';
  return 'active';
}

/** What a stored record or snapshot leaves out when a field holds its default (read back as it). */
const DEFAULTS: Readonly<Record<string, unknown>> = {
  hashAlgorithm: 'sha256',
  ownerId: null,
  metadata: {},
  expiresAt: null,
  notBefore: null,
  revokedAt: null,
  revokedReason: null,
  disabled: false,
  rotatedFrom: null,
  rotatedTo: null,
  limits: [],
  credits: null,
  allowedIps: [],
  roles: [],
  identityId: null,
};

function isDefault(field: string, value: unknown): boolean {
  if (!(field in DEFAULTS)) return false;
  const d = DEFAULTS[field];
  if (Array.isArray(d)) return Array.isArray(value) && value.length === 0;
  if (typeof d === 'object' && d !== null) return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
  return value === d;
}

/**
 * A record or snapshot without the fields that hold their defaults (`updatedAt` too while it equals
 * `createdAt`): a new key's record is half the size, which at a million keys is what Redis memory
 * is made of. `expandInfo`/`decodeRecord` read them back.
 */
export function compactInfo(info: KeyInfo | KeyRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(info)) {
    if (value === undefined || isDefault(field, value)) continue;
    if (field === 'updatedAt' && value === info.createdAt) continue;
    out[field] = value;
  }
  return out;
}

/** A snapshot written by `compactInfo`, whole again. */
export function expandInfo(value: Record<string, unknown>): KeyInfo {
  const { hashAlgorithm: _alg, ...defaults } = DEFAULTS;
  return { ...defaults, updatedAt: value.createdAt, ...value } as unknown as KeyInfo;
}

/**
 * A record as stored: compact JSON with `version` first, so a rate-limit charge on Redis reads the
 * version with a pattern instead of decoding the JSON.
 */
export function encodeRecord(record: KeyRecord): string {
  return JSON.stringify({ version: record.version, ...compactInfo(record) });
}

const FIELDS: ReadonlyArray<[keyof KeyRecord, string]> = [
  ['id', 'string'],
  ['prefix', 'string'],
  ['hash', 'string'],
  ['name', 'string'],
  ['createdAt', 'number'],
  ['version', 'number'],
];

/** Parses a stored record, rejecting anything that is not one (a store must not hand the verifier junk). */
export function decodeRecord(json: string): KeyRecord {
  const value = JSON.parse(json) as Record<string, unknown>;
  for (const [field, type] of FIELDS) {
    if (typeof value[field] !== type) throw new Error(`stored key record has no valid "${field}"`);
  }
  if (value.updatedAt !== undefined && typeof value.updatedAt !== 'number') throw new Error('stored key record has no valid "updatedAt"');
  if (value.disabled !== undefined && typeof value.disabled !== 'boolean') throw new Error('stored key record has no valid "disabled"');
  if (!Array.isArray(value.scopes) || !value.scopes.every((s) => typeof s === 'string')) throw new Error('stored key record has no valid "scopes"');
  if (value.hashAlgorithm !== undefined && value.hashAlgorithm !== 'sha256' && value.hashAlgorithm !== 'hmac-sha256')
    throw new Error('stored key record has an unknown "hashAlgorithm"');
  // A time of the wrong type would make a status check pass: refuse the record instead.
  for (const field of ['expiresAt', 'notBefore', 'revokedAt'] as const) {
    const t = value[field];
    if (t !== undefined && t !== null && !Number.isSafeInteger(t)) throw new Error(`stored key record has no valid "${field}"`);
  }
  if (value.limits !== undefined && !(Array.isArray(value.limits) && value.limits.every(isStoredLimit)))
    throw new Error('stored key record has no valid "limits"');
  if (value.credits !== undefined && value.credits !== null && !isStoredCredits(value.credits)) throw new Error('stored key record has no valid "credits"');
  if (value.identityId !== undefined && value.identityId !== null && typeof value.identityId !== 'string')
    throw new Error('stored key record has no valid "identityId"');
  if (value.metadata !== undefined && (typeof value.metadata !== 'object' || value.metadata === null || Array.isArray(value.metadata)))
    throw new Error('stored key record has no valid "metadata"');
  if (value.allowedIps !== undefined && !isStoredAllowlist(value.allowedIps)) throw new Error('stored key record has no valid "allowedIps"');
  if (value.roles !== undefined && !(Array.isArray(value.roles) && value.roles.length <= MAX_ROLES && value.roles.every(isValidRoleName)))
    throw new Error('stored key record has no valid "roles"');
  return recordOf(value as unknown as KeyRecord, value.hash as string);
}

/**
 * A record's copy without its digest, for caches that keep the digest in a form of their own: the
 * base64url string is 72 bytes of heap per cached key.
 */
export function withoutHash(record: KeyRecord): KeyRecord {
  return recordOf(record, '');
}

/**
 * Every field in one literal, in one order: records share one hidden class (a spread of 21 fields
 * made a dictionary-mode object of about 800 bytes; this is about 200). Lists and maps are frozen,
 * the empty ones shared, so a verified key can hand them out without copying them.
 */
function recordOf(v: KeyRecord, hash: string): KeyRecord {
  return {
    id: v.id,
    prefix: shared(v.prefix),
    hash,
    hashAlgorithm: v.hashAlgorithm ?? 'sha256',
    name: v.name,
    ownerId: v.ownerId ?? null,
    scopes: sharedScopes(v.scopes),
    metadata:
      v.metadata === undefined || Object.keys(v.metadata).length === 0 ? NO_METADATA : Object.isFrozen(v.metadata) ? v.metadata : Object.freeze(v.metadata),
    createdAt: v.createdAt,
    updatedAt: v.updatedAt ?? v.createdAt,
    expiresAt: v.expiresAt ?? null,
    notBefore: v.notBefore ?? null,
    revokedAt: v.revokedAt ?? null,
    revokedReason: v.revokedReason ?? null,
    disabled: v.disabled ?? false,
    rotatedFrom: v.rotatedFrom ?? null,
    rotatedTo: v.rotatedTo ?? null,
    limits: v.limits === undefined || v.limits.length === 0 ? NO_LIMITS : Object.freeze(v.limits),
    credits: v.credits ?? null,
    version: v.version,
    allowedIps:
      v.allowedIps === undefined || v.allowedIps.length === 0 ? NO_RANGES : Object.isFrozen(v.allowedIps) ? v.allowedIps : Object.freeze(v.allowedIps),
    roles: v.roles === undefined || v.roles.length === 0 ? NO_RANGES : sharedScopes(v.roles),
    identityId: v.identityId ?? null,
  };
}

const NO_METADATA: Readonly<Record<string, unknown>> = Object.freeze({});
const NO_LIMITS: readonly RateLimit[] = Object.freeze([]);
const NO_RANGES: readonly string[] = Object.freeze([]);

/**
 * Prefixes and scope lists repeat across keys (a service has a few of each): records decoded with
 * one share one copy, so a cache of 100,000 keys holds them once. Bounded: past SHARED_MAX distinct
 * values, new ones are kept as they come.
 */
const SHARED_MAX = 4096;
const sharedStrings = new Map<string, string>();
const sharedLists = new Map<string, readonly string[]>();

function shared(text: string): string {
  const found = sharedStrings.get(text);
  if (found !== undefined) return found;
  if (sharedStrings.size < SHARED_MAX) sharedStrings.set(text, text);
  return text;
}

function sharedScopes(scopes: readonly string[]): readonly string[] {
  const key = scopes.join('\n');
  const found = sharedLists.get(key);
  if (found !== undefined) return found;
  const list = Object.freeze(scopes.map(shared));
  if (sharedLists.size < SHARED_MAX) sharedLists.set(key, list);
  return list;
}

const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

function isStoredLimit(value: unknown): boolean {
  const l = value as RateLimit;
  return typeof l === 'object' && l !== null && isValidLimitName(l.name) && count(l.limit) && l.limit >= 1 && count(l.window) && l.window >= 1;
}

function isStoredCredits(value: unknown): boolean {
  const c = value as Credits;
  if (typeof c !== 'object' || !count(c.remaining) || !count(c.setAt) || !count(c.generation)) return false;
  if (c.account !== undefined && !/^[0-9A-Za-z]{16}$/.test(c.account)) return false;
  return c.refill === null || (typeof c.refill === 'object' && count(c.refill.amount) && count(c.refill.interval) && c.refill.interval >= 1);
}
