// The audit trail: what changed, who did it and why, and what was tried and refused. Never a secret.
import { tillError } from '../errors.js';
import type { OutcomeCode } from '../verify/outcome.js';
import type { KeyInfo } from '../store/record.js';
import type { IdentityRecord } from '../identity/record.js';

/** Changes made by an administrator (through the key manager). */
export const CHANGE_TYPES = [
  'key.created',
  'key.updated',
  'key.rotated',
  'key.revoked',
  'key.disabled',
  'key.enabled',
  'key.deleted',
  'role.defined',
  'role.deleted',
  'identity.created',
  'identity.updated',
  'identity.deleted',
] as const;
/**
 * What the verifier and the limits saw and refused. `key.probed`: a wrong secret sent with a real
 * key's id (ids are public: probing of the id, never a failure of the key itself).
 */
export const SECURITY_TYPES = ['auth.failed', 'key.probed', 'client.blocked', 'limit.refused', 'key.misused'] as const;
export const AUDIT_TYPES = [...CHANGE_TYPES, ...SECURITY_TYPES] as const;

export type ChangeType = (typeof CHANGE_TYPES)[number];
export type SecurityType = (typeof SECURITY_TYPES)[number];
export type AuditType = (typeof AUDIT_TYPES)[number];

/**
 * One entry of the trail. Keys appear by public id only; `before`/`after` are `KeyInfo`, which has no
 * hash. Times are epoch milliseconds.
 */
export interface AuditEntry {
  /** Unique, and increasing with time in one store: `<ms>-<seq>`. */
  readonly id: string;
  readonly at: number;
  readonly type: AuditType;
  readonly keyId: string | null;
  readonly ownerId: string | null;
  /** Who or what made a change (`cli:alice`, `api`, a service name); null when not told. */
  readonly actor: string | null;
  readonly reason: string | null;
  /** The key before and after a change. */
  readonly before?: KeyInfo | null;
  readonly after?: KeyInfo | null;
  /** For security events: the outcome, the client, what it sent (never the key). */
  readonly code?: OutcomeCode;
  readonly ip?: string;
  readonly userAgent?: string;
  /** A short free text (the limit that refused, the rotation's new key id). */
  readonly detail?: string;
  /** For security events: how many times it happened within the writer's window (1 when absent). */
  readonly count?: number;
  /** For an identity's change: its id, and the identity before and after (keyId is then null). */
  readonly identityId?: string;
  readonly identityBefore?: IdentityRecord | null;
  readonly identityAfter?: IdentityRecord | null;
}

/** An entry before the store gives it its id. */
export type AuditRecord = Omit<AuditEntry, 'id'>;

export interface AuditQuery {
  /** Entries at or after this time (epoch ms or Date). */
  from?: number | Date;
  /** Entries before this time. */
  to?: number | Date;
  keyId?: string;
  ownerId?: string;
  /** Only the changes of this identity. */
  identityId?: string;
  types?: readonly AuditType[];
  /** Page size, 1-1000; default 100. */
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

export interface AuditPage {
  /** Oldest first. */
  readonly entries: AuditEntry[];
  /** Present when there may be more: pass it back as `cursor`. */
  readonly cursor?: string;
}

const MAX_TEXT = 200;
const UA_MAX = 200;

/** Checks a query and normalizes its times. */
export function normalizeQuery(query: AuditQuery = {}): Required<Pick<AuditQuery, 'limit'>> & {
  from: number;
  to: number;
  keyId?: string;
  ownerId?: string;
  identityId?: string;
  types: ReadonlySet<AuditType> | null;
  cursor?: string;
} {
  const fail = (m: string): never => {
    throw tillError('INVALID_ARGUMENT', 'audit', `${m}`);
  };
  if (query === null || typeof query !== 'object') fail('a query must be an object');
  const time = (v: number | Date | undefined, name: string, fallback: number): number => {
    if (v === undefined) return fallback;
    const ms = v instanceof Date ? v.getTime() : v;
    if (typeof ms !== 'number' || !Number.isFinite(ms)) fail(`${name} must be a Date or epoch milliseconds`);
    return ms;
  };
  const from = time(query.from, 'from', 0);
  const to = time(query.to, 'to', Number.MAX_SAFE_INTEGER);
  const limit = query.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) fail('limit must be an integer from 1 to 1000');
  let types: ReadonlySet<AuditType> | null = null;
  if (query.types !== undefined) {
    if (!Array.isArray(query.types) || !query.types.every((t) => (AUDIT_TYPES as readonly string[]).includes(t))) {
      fail(`types must be a list of: ${AUDIT_TYPES.join(', ')}`);
    }
    types = new Set(query.types);
  }
  for (const name of ['keyId', 'ownerId', 'identityId', 'cursor'] as const) {
    const v = query[name];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > MAX_TEXT)) fail(`${name} must be a non-empty string`);
  }
  return {
    from,
    to,
    limit,
    types,
    ...(query.keyId !== undefined && { keyId: query.keyId }),
    ...(query.ownerId !== undefined && { ownerId: query.ownerId }),
    ...(query.identityId !== undefined && { identityId: query.identityId }),
    ...(query.cursor !== undefined && { cursor: query.cursor }),
  };
}

/** Whether an entry passes a query's filters (time, key, owner, type). */
export function matches(entry: AuditEntry, q: ReturnType<typeof normalizeQuery>): boolean {
  if (entry.at < q.from || entry.at >= q.to) return false;
  if (q.keyId !== undefined && entry.keyId !== q.keyId) return false;
  if (q.ownerId !== undefined && entry.ownerId !== q.ownerId) return false;
  if (q.identityId !== undefined && entry.identityId !== q.identityId) return false;
  return q.types === null || q.types.has(entry.type);
}

/** Text that may go into the trail: bounded, no control characters (a log line stays one line). */
export function auditText(value: unknown, max = MAX_TEXT): string | null {
  if (typeof value !== 'string' || value.length === 0) return null;
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, max);
}

/** A user agent as the trail keeps it. */
export function userAgentText(value: unknown): string | undefined {
  return auditText(value, UA_MAX) ?? undefined;
}

/** Entries as JSON lines, oldest first: one entry a line, for `jq`, log shippers and spreadsheets. */
export function toJsonLines(entries: readonly AuditEntry[]): string {
  return entries.map((e) => `${JSON.stringify(e)}\n`).join('');
}
