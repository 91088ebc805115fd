// The store contract every backend implements and the conformance suite checks.
import type { KeyRecord } from '../record.js';

export interface ListKeysQuery {
  /** Only keys of this owner. */
  ownerId?: string;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Page size, 1-1000; default 100. */
  limit?: number;
}

export interface KeyPage {
  readonly keys: KeyRecord[];
  /** Present when there may be more: pass it back as `cursor`. */
  readonly cursor?: string;
}

/** Called with a key id whose record changed, or `null` when every cached record may be stale. */
export type InvalidationListener = (id: string | null) => void;

export interface KeyStore {
  /** A short name for messages and events: `memory`, `redis`. */
  readonly kind: string;
  /** The record of `id`, or null. Rejects with a TillError when the store cannot answer. */
  get(id: string): Promise<KeyRecord | null>;
  /** Saves a new record; rejects with TillError `KEY_EXISTS` if the id is taken. */
  insert(record: KeyRecord): Promise<void>;
  /**
   * Replaces a record only if its stored version is still `expectedVersion` (compare-and-set), and
   * tells every process sharing the store to drop the id from its cache. Resolves false on a lost
   * race; rejects with `KEY_NOT_FOUND` when there is no such record.
   */
  replace(record: KeyRecord, expectedVersion: number): Promise<boolean>;
  /** Keys in creation order, a page at a time. An admin path: never called per request. */
  list(query?: ListKeysQuery): Promise<KeyPage>;
  /** Subscribes to invalidations from every process sharing the store; returns the unsubscribe. */
  onInvalidate(listener: InvalidationListener): () => void;
  /** Releases what the store opened itself (never a client the application passed in). */
  close(): Promise<void>;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
