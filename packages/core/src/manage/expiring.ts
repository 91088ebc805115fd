// Keys expiring soon, read from the store's expiry index (never a scan of every key), for reminders.
import { tillError } from '../errors.js';
import { indexedExpiry } from '../store/expiry.js';
import { toKeyInfo, type KeyInfo } from '../store/record.js';
import type { KeyStore, ReindexResult } from '../store/types.js';
import { parseDuration } from '../util/duration.js';

export interface ExpiringOptions {
  /** Keys expiring within this long from now: a duration (`14d`) or milliseconds. */
  within: string | number;
  /** Page size, 1-1000; default 100. */
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Only this owner's keys (filtered after the index is read). */
  ownerId?: string;
}

export interface ExpiringKeys {
  /** Soonest expiry first: keys not revoked, not superseded by a rotation, expiring after now and within the window. */
  readonly keys: KeyInfo[];
  /** Present when there may be more: pass it back as `cursor`. */
  readonly cursor?: string;
  /**
   * False when the store holds keys written before it kept an expiry index that are not indexed yet (a
   * Redis store with more than 10,000 keys, upgraded): `till audit --reindex` (`reindexExpiries()`) builds it.
   */
  readonly complete: boolean;
}

function fail(message: string): never {
  throw tillError('INVALID_ARGUMENT', 'keys', message);
}

function encode(expiresAt: number, id: string): string {
  return Buffer.from(`${expiresAt}.${id}`).toString('base64url');
}

function decode(cursor: unknown): { expiresAt: number; id: string } {
  const text = typeof cursor === 'string' && cursor.length <= 200 ? Buffer.from(cursor, 'base64url').toString() : '';
  const dot = text.indexOf('.');
  const expiresAt = Number(text.slice(0, dot));
  if (dot < 1 || !Number.isSafeInteger(expiresAt) || dot === text.length - 1) fail('invalid cursor');
  return { expiresAt, id: text.slice(dot + 1) };
}

function supported(store: KeyStore): Required<Pick<KeyStore, 'expiring' | 'claimReminder' | 'reindexExpiries'>> {
  if (typeof store.expiring !== 'function' || typeof store.claimReminder !== 'function' || typeof store.reindexExpiries !== 'function')
    throw tillError('INVALID_OPTIONS', 'keys', `the ${store.kind} store keeps no expiry index (expiring, claimReminder, reindexExpiries)`);
  return store as Required<Pick<KeyStore, 'expiring' | 'claimReminder' | 'reindexExpiries'>>;
}

/**
 * A page of keys expiring within `within` of `now`. Each entry of the index is checked against the key's
 * record as it is now (an entry left by a process older than the index, or changed since it was read,
 * is skipped), so only the records of keys in the window are read.
 */
export async function expiringKeys(store: KeyStore, options: ExpiringOptions, now: number): Promise<ExpiringKeys> {
  if (options === null || typeof options !== 'object') fail('expiring: options must be { within, limit?, cursor?, ownerId? }');
  const within = parseDuration(options.within, 'within');
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) fail('limit must be an integer from 1 to 1000');
  if (options.ownerId !== undefined && (typeof options.ownerId !== 'string' || options.ownerId === '')) fail('ownerId must be a non-empty string');
  const after = options.cursor === undefined ? null : decode(options.cursor);
  const index = supported(store);
  // Already expired keys are not reminded of: from just after now.
  const to = now + within;
  let from = after === null ? now + 1 : Math.max(now + 1, after.expiresAt);
  const keys: KeyInfo[] = [];
  let complete = true;
  let seen: { expiresAt: number; id: string } | null = after;
  // Ties at the cursor's expiry come back with every read from it: ask for enough to get past them.
  let ask = Math.min(10_000, limit + 1);
  while (from <= to) {
    const page = await index.expiring({ from, to, limit: ask });
    complete &&= page.complete;
    const fresh = page.entries.filter((e) => seen === null || e.expiresAt > seen.expiresAt || (e.expiresAt === seen.expiresAt && e.id > seen.id));
    if (fresh.length === 0) {
      if (!page.more) break;
      if (ask === 10_000) throw tillError('STORE_ERROR', 'keys', 'more than 10,000 keys share one expiry time: the index cannot be paged past them');
      ask = Math.min(10_000, ask * 4);
      continue;
    }
    const records = await Promise.all(fresh.map((e) => store.get(e.id)));
    for (let i = 0; i < fresh.length; i++) {
      const entry = fresh[i]!;
      const record = records[i];
      seen = entry;
      if (record === null || record === undefined || indexedExpiry(record) !== entry.expiresAt) continue;
      if (options.ownerId !== undefined && record.ownerId !== options.ownerId) continue;
      keys.push(toKeyInfo(record));
      if (keys.length === limit) {
        const more = i < fresh.length - 1 || page.more;
        return more ? { keys, cursor: encode(entry.expiresAt, entry.id), complete } : { keys, complete };
      }
    }
    if (!page.more) break;
    from = seen!.expiresAt;
  }
  return { keys, complete };
}

/** Rebuilds the store's expiry index from the records (for keys written before the store kept one). */
export function reindexExpiries(store: KeyStore): Promise<ReindexResult> {
  return supported(store).reindexExpiries();
}

/** Claims the reminder of a key's expiry for every process sharing the store: true once per key and expiry. */
export function claimReminder(store: KeyStore, id: string, expiresAt: number): Promise<boolean> {
  return supported(store).claimReminder(id, expiresAt);
}
