// The audit codec of the Redis store: entries as stored (compact JSON under a `<ms>-<seq>` id) and back.
import { compactInfo, expandInfo, type KeyInfo } from '../store/record.js';
import { CHANGE_TYPES, type AuditEntry, type AuditRecord } from '../audit/trail.js';

/**
 * An audit entry as stored: compact JSON without what the store knows otherwise (the time is the
 * entry id's; the key id is a trail's own, and the snapshots' `id`; the owner is the snapshots') or
 * what holds its default (null actor, reason and snapshots; snapshots compacted like records).
 * `withKey` false: for a key's own trail.
 */
export function encodeEntry(audit: AuditRecord, withKey: boolean): string {
  const snapshot = audit.after ?? audit.before;
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(audit)) {
    if (value === undefined || value === null || field === 'at' || (field === 'keyId' && !withKey)) continue;
    if (field === 'ownerId' && snapshot && snapshot.ownerId === value) continue;
    if (field === 'before' || field === 'after') {
      const { id, ...rest } = compactInfo(value as KeyInfo);
      out[field] = id === audit.keyId ? rest : { id, ...rest };
    } else {
      out[field] = value;
    }
  }
  return JSON.stringify(out);
}

/** An entry for a key's own trail; '' (none) when there is no entry. */
export const trailEntry = (audit: AuditRecord | undefined): string => (audit === undefined ? '' : encodeEntry(audit, false));

/** A stored entry as an audit entry; its time is its id's (the Redis server's clock). */
export function parseEntry(id: string, json: string | undefined, trailOf: string | null): AuditEntry | null {
  if (json === undefined) return null;
  try {
    const stored = JSON.parse(json) as Record<string, unknown>;
    const keyId = (stored.keyId as string | undefined) ?? trailOf;
    const entry = { keyId, actor: null, reason: null, ...stored, id, at: Number(id.slice(0, id.indexOf('-'))) } as Record<string, unknown>;
    // A change has both snapshots (null for none); a security event has neither.
    const change = (CHANGE_TYPES as readonly unknown[]).includes(stored.type);
    for (const field of ['before', 'after'] as const) {
      if (stored[field] !== undefined) entry[field] = expandInfo({ id: keyId, ...(stored[field] as Record<string, unknown>) });
      else if (change) entry[field] = null;
    }
    const snapshot = (entry.after ?? entry.before) as KeyInfo | null | undefined;
    if (entry.ownerId === undefined) entry.ownerId = snapshot ? snapshot.ownerId : null;
    return entry as unknown as AuditEntry;
  } catch {
    return null;
  }
}

/** Whether audit id `a` (`<ms>-<seq>`) comes before `b`. */
export function idBefore(a: string, b: string): boolean {
  const i = a.indexOf('-');
  const j = b.indexOf('-');
  const ams = Number(a.slice(0, i));
  const bms = Number(b.slice(0, j));
  return ams < bms || (ams === bms && Number(a.slice(i + 1)) < Number(b.slice(j + 1)));
}

/** Two lists of `<id> <json>` lines, each oldest first, as one. */
export function mergeById(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  const idOf = (line: string) => line.slice(0, line.indexOf(' '));
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && !idBefore(idOf(b[j]!), idOf(a[i]!)))) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  return out;
}
