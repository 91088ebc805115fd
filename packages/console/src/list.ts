// Listing keys: a page of the store's keys in creation order, searched and filtered by status.
//
// The store lists keys a page at a time by an opaque cursor and knows no search, so a search reads
// store pages of a fixed size and keeps the keys that match. The console's cursor says which store
// page a listing stopped in and how far into it (`{ c, s }`, base64url JSON): the next page goes on
// from exactly there, with nothing skipped or repeated. A request reads at most MAX_SCANNED keys; a
// rare search that finds fewer than a page in them answers what it found and a cursor to go on.
import type { KeyInfo, KeyManager, KeyStatus } from '@till/core';
import { keyStatus } from '@till/core';
import type { Query } from './input.js';
import { badRequest } from './respond.js';

export const LIST_QUERY = ['q', 'status', 'ownerId', 'identityId', 'limit', 'cursor'];
const STATUSES: readonly KeyStatus[] = ['active', 'revoked', 'disabled', 'expired', 'not_yet_valid'];
/** Keys read from the store per call: fixed, so a cursor's offset always points into the same page. */
const STORE_PAGE = 500;
const MAX_SCANNED = 10_000;

interface Position {
  /** The store's cursor of the page to read; absent: the first page. */
  readonly c?: string;
  /** Keys of that page already gone through. */
  readonly s: number;
}

function encode(position: Position): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

function decode(cursor: string): Position {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (value !== null && typeof value === 'object') {
      const { c, s } = value as Record<string, unknown>;
      if (
        (c === undefined || (typeof c === 'string' && c.length > 0 && c.length <= 200)) &&
        Number.isInteger(s) &&
        (s as number) >= 0 &&
        (s as number) < STORE_PAGE
      ) {
        return c === undefined ? { s: s as number } : { c, s: s as number };
      }
    }
  } catch {
    // Falls through to the refusal.
  }
  throw badRequest('cursor is not one this API gave.');
}

/** Whether a key matches a search: its id, name, owner or a scope contains the text, case aside. */
function found(info: KeyInfo, text: string): boolean {
  return (
    info.id.toLowerCase().includes(text) ||
    info.name.toLowerCase().includes(text) ||
    info.ownerId?.toLowerCase().includes(text) === true ||
    info.scopes.some((s) => s.toLowerCase().includes(text))
  );
}

/** A key as the API shows it: its record without the digest, its status now, its last use. */
export function view(info: KeyInfo, now: number, lastUsedAt?: number | null): Record<string, unknown> {
  return { ...info, status: keyStatus(info, now), ...(lastUsedAt !== undefined && { lastUsedAt }) };
}

export interface KeyListing {
  keys: Array<Record<string, unknown>>;
  /** Present when there may be more. */
  cursor?: string;
}

export async function listKeys(keys: KeyManager, query: Query, now: number): Promise<KeyListing> {
  const text = query.text('q', 100)?.toLowerCase();
  const status = query.text('status', 20);
  if (status !== undefined && !(STATUSES as readonly string[]).includes(status)) throw badRequest(`status must be one of: ${STATUSES.join(', ')}.`);
  const ownerId = query.text('ownerId');
  const identityId = query.text('identityId', 64);
  const limit = query.int('limit', 1, 200) ?? 50;
  const cursor = query.text('cursor', 400);
  let position: Position = cursor === undefined ? { s: 0 } : decode(cursor);
  const picked: KeyInfo[] = [];
  let next: Position | null = null;
  for (let scanned = 0; ; ) {
    const page = await keys.list({
      limit: STORE_PAGE,
      ...(position.c !== undefined && { cursor: position.c }),
      ...(ownerId !== undefined && { ownerId }),
      ...(identityId !== undefined && { identityId }),
    });
    let i = position.s;
    for (; i < page.keys.length && picked.length < limit; i++) {
      const info = page.keys[i]!;
      if ((text === undefined || found(info, text)) && (status === undefined || keyStatus(info, now) === status)) picked.push(info);
    }
    scanned += i - position.s;
    if (i < page.keys.length) {
      next = { ...(position.c !== undefined && { c: position.c }), s: i };
      break;
    }
    if (page.cursor === undefined) break;
    position = { c: page.cursor, s: 0 };
    if (picked.length === limit || scanned >= MAX_SCANNED) {
      next = position;
      break;
    }
  }
  // Last use comes from the usage counts, one read per key of the page.
  const lastUse = await Promise.all(picked.map((k) => keys.usage(k.id, { days: 0 }).then((u) => u.lastUsedAt)));
  const out: KeyListing = { keys: picked.map((k, i) => view(k, now, lastUse[i] ?? null)) };
  if (next !== null) out.cursor = encode(next);
  return out;
}
