// Page cursors over creation order, shared by the stores: `<createdAt>.<id>`, base64url-wrapped.
import { tillError } from '../errors.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './types.js';

export interface CursorPosition {
  readonly createdAt: number;
  readonly id: string;
}

export function encodeCursor(pos: CursorPosition): string {
  return Buffer.from(`${pos.createdAt}.${pos.id}`).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): CursorPosition | null {
  if (cursor === undefined) return null;
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString() : '';
  const dot = text.indexOf('.');
  const createdAt = Number(text.slice(0, dot));
  if (dot < 1 || !Number.isSafeInteger(createdAt)) throw tillError('INVALID_ARGUMENT', 'store', 'invalid cursor');
  return { createdAt, id: text.slice(dot + 1) };
}

/** Whether a key at (createdAt, id) comes after the cursor in creation order. */
export function isAfter(createdAt: number, id: string, pos: CursorPosition | null): boolean {
  return pos === null || createdAt > pos.createdAt || (createdAt === pos.createdAt && id > pos.id);
}

export function pageSize(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw tillError('INVALID_ARGUMENT', 'store', `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return limit;
}
