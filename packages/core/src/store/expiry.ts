// The expiry index: which keys it holds, the check of a query, and the memory store's copy of it.
import { tillError } from '../errors.js';
import type { KeyRecord } from './record.js';
import { MAX_EXPIRING_PAGE, type ExpiringEntry, type ExpiringPage, type ExpiringQuery } from './types.js';

/**
 * The expiry under which a key is indexed, or null when it is not: a key without expiry, a revoked key
 * (it can no longer be used, so its expiry warns of nothing) and a key superseded by a rotation (its
 * expiry is the end of its grace period, chosen on purpose) are left out. Every store decides by this.
 */
export function indexedExpiry(record: Pick<KeyRecord, 'expiresAt' | 'revokedAt' | 'rotatedTo'>): number | null {
  return record.expiresAt !== null && record.revokedAt === null && record.rotatedTo === null ? record.expiresAt : null;
}

/** Checks a query of the index, with the store's name in the error. */
export function checkExpiringQuery(query: ExpiringQuery, where: string): ExpiringQuery {
  if (query === null || typeof query !== 'object') throw tillError('INVALID_ARGUMENT', where, 'expiring: the query must be { from, to, limit }');
  const { from, to, limit } = query;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from > to)
    throw tillError('INVALID_ARGUMENT', where, 'expiring: from and to must be integer epoch ms, from <= to');
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_EXPIRING_PAGE)
    throw tillError('INVALID_ARGUMENT', where, `expiring: limit must be an integer from 1 to ${MAX_EXPIRING_PAGE}`);
  return { from, to, limit };
}

/** Soonest first, then by id: the order every store answers in. */
export function byExpiry(a: ExpiringEntry, b: ExpiringEntry): number {
  return a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The memory store's index: entries kept sorted, so a range is a binary search and a slice. */
export class MemoryExpiryIndex {
  private sorted: ExpiringEntry[] = [];
  private readonly byId = new Map<string, number>();
  /** The expiry each key's reminder was claimed for. */
  private readonly reminded = new Map<string, number>();

  /** Puts the key under its indexed expiry, or takes it out (null). */
  set(id: string, expiresAt: number | null): void {
    const old = this.byId.get(id);
    if (old === expiresAt) return;
    if (old !== undefined) {
      this.sorted.splice(this.position({ id, expiresAt: old }), 1);
      this.byId.delete(id);
    }
    // A changed expiry is a new one: its reminder may be sent again.
    this.reminded.delete(id);
    if (expiresAt === null) return;
    const entry = { id, expiresAt };
    this.sorted.splice(this.position(entry), 0, entry);
    this.byId.set(id, expiresAt);
  }

  range(query: ExpiringQuery): ExpiringPage {
    const start = this.position({ id: '', expiresAt: query.from });
    const entries: ExpiringEntry[] = [];
    for (let i = start; i < this.sorted.length && this.sorted[i]!.expiresAt <= query.to; i++) {
      if (entries.length === query.limit) return { entries, more: true, complete: true };
      entries.push({ ...this.sorted[i]! });
    }
    return { entries, more: false, complete: true };
  }

  claim(id: string, expiresAt: number): boolean {
    if (this.byId.get(id) !== expiresAt || this.reminded.get(id) === expiresAt) return false;
    this.reminded.set(id, expiresAt);
    return true;
  }

  /** The first position whose entry is not before `entry`. */
  private position(entry: ExpiringEntry): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (byExpiry(this.sorted[mid]!, entry) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
