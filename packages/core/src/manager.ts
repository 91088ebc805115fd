// The key manager: creating and changing keys. Every change is a compare-and-set on the record's version.
import { systemClock, type Clock } from './clock.js';
import { TillError } from './errors.js';
import { createHasher, type KeyHasher } from './hash.js';
import { assertValidPrefix, generateKey, isValidKeyId } from './key-format.js';
import { toKeyInfo, type KeyInfo, type KeyRecord } from './record.js';
import { normalizeGrants } from './scopes.js';
import type { KeyStore, ListKeysQuery } from './store/types.js';

export interface CreateKeyInput {
  /** A label for people: "billing service, production". */
  name: string;
  /** Scopes the key holds; give it the fewest it needs. */
  scopes: readonly string[];
  /** Who the key belongs to (a user, team or service id). */
  ownerId?: string | null;
  /** Free JSON data returned with the verified key; at most 4 KiB as JSON. */
  metadata?: Record<string, unknown>;
  /** When the key stops working. Keys without an expiry are flagged by audits. */
  expiresAt?: Date | number | null;
  /** When the key starts working. */
  notBefore?: Date | number | null;
  /** Prefix for this key; the manager's default when absent. */
  prefix?: string;
}

export interface CreatedKey {
  /** The full key. Show it once to its holder: it is not stored and cannot be shown again. */
  readonly key: string;
  readonly record: KeyInfo;
}

export interface KeyManagerOptions {
  store: KeyStore;
  hasher?: KeyHasher;
  /** Prefix of new keys. Default `till`. */
  prefix?: string;
  clock?: Clock;
  /** Called after each change this manager makes, with the key id (the Till instance evicts its cache). */
  onChange?: (id: string) => void;
}

const MAX_TEXT = 200;
const MAX_METADATA_BYTES = 4096;
const MAX_ATTEMPTS = 16;

function fail(message: string): never {
  throw new TillError('INVALID_ARGUMENT', `[till] [keys] ${message}`);
}

function checkText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_TEXT || /[\u0000-\u001f\u007f]/.test(value)) {
    fail(`${field} must be a non-empty string of at most ${MAX_TEXT} characters without control characters`);
  }
  return value;
}

function toMillis(value: Date | number | null | undefined, field: string): number | null {
  if (value === undefined || value === null) return null;
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) fail(`${field} must be a valid Date or epoch milliseconds`);
  return ms;
}

function checkMetadata(value: unknown): Record<string, unknown> {
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

function checkId(id: unknown): string {
  if (!isValidKeyId(id)) fail('key id must be the 16-character id printed with the key');
  return id;
}

export class KeyManager {
  private readonly store: KeyStore;
  private readonly hasher: KeyHasher;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly onChange: ((id: string) => void) | undefined;

  constructor(options: KeyManagerOptions) {
    if (!options || !options.store) throw new TillError('INVALID_OPTIONS', '[till] [keys] a store is required');
    const prefix = options.prefix ?? 'till';
    assertValidPrefix(prefix, 'keys');
    this.store = options.store;
    this.hasher = options.hasher ?? createHasher();
    this.prefix = prefix;
    this.clock = options.clock ?? systemClock;
    this.onChange = options.onChange;
  }

  /** Creates a key. The full key is in the result and nowhere else: it is never stored. */
  async create(input: CreateKeyInput): Promise<CreatedKey> {
    if (!input || typeof input !== 'object') fail('create needs { name, scopes }');
    const name = checkText(input.name, 'name');
    const scopes = normalizeGrants(input.scopes, 'keys');
    const ownerId = input.ownerId === undefined || input.ownerId === null ? null : checkText(input.ownerId, 'ownerId');
    const metadata = checkMetadata(input.metadata);
    const now = this.clock();
    const expiresAt = toMillis(input.expiresAt, 'expiresAt');
    const notBefore = toMillis(input.notBefore, 'notBefore');
    if (expiresAt !== null && expiresAt <= now) fail('expiresAt must be in the future');
    if (expiresAt !== null && notBefore !== null && notBefore >= expiresAt) fail('notBefore must be before expiresAt');
    const prefix = input.prefix ?? this.prefix;
    assertValidPrefix(prefix, 'keys');

    for (let attempt = 0; ; attempt++) {
      const generated = generateKey(prefix);
      const record: KeyRecord = {
        id: generated.id,
        prefix,
        hash: this.hasher.digest(generated.key),
        hashAlgorithm: this.hasher.algorithm,
        name,
        ownerId,
        scopes,
        metadata,
        createdAt: now,
        updatedAt: now,
        expiresAt,
        notBefore,
        revokedAt: null,
        revokedReason: null,
        disabled: false,
        rotatedFrom: null,
        rotatedTo: null,
        version: 1,
      };
      try {
        await this.store.insert(record);
        return { key: generated.key, record: toKeyInfo(record) };
      } catch (error) {
        // An id collision (about 95 random bits) is astronomically rare; draw a new key.
        if (!(error instanceof TillError && error.code === 'KEY_EXISTS') || attempt >= 2) throw error;
      }
    }
  }

  /** The key's record without its hash, or null. */
  async get(id: string): Promise<KeyInfo | null> {
    const record = await this.store.get(checkId(id));
    return record === null ? null : toKeyInfo(record);
  }

  /** A page of keys in creation order. */
  async list(query: ListKeysQuery = {}): Promise<{ keys: KeyInfo[]; cursor?: string }> {
    const page = await this.store.list(query);
    return page.cursor === undefined ? { keys: page.keys.map(toKeyInfo) } : { keys: page.keys.map(toKeyInfo), cursor: page.cursor };
  }

  /** Revokes a key for good. Revoking a revoked key keeps the first time and reason. */
  async revoke(id: string, options: { reason?: string } = {}): Promise<KeyInfo> {
    const reason = options.reason === undefined ? 'revoked' : checkText(options.reason, 'reason');
    return this.change(id, (record, now) =>
      record.revokedAt !== null ? null : { ...record, revokedAt: now, revokedReason: reason },
    );
  }

  /**
   * Applies `edit` to the current record and saves it if nobody changed the key meanwhile,
   * retrying on a lost race: concurrent changes never overwrite each other. `edit` returns null
   * when there is nothing to change.
   */
  protected async change(id: string, edit: (record: KeyRecord, now: number) => KeyRecord | null): Promise<KeyInfo> {
    checkId(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(id);
      if (current === null) throw new TillError('KEY_NOT_FOUND', `[till] [keys] no key ${id}`);
      const now = this.clock();
      const edited = edit(current, now);
      if (edited === null) return toKeyInfo(current);
      const next: KeyRecord = { ...edited, id: current.id, updatedAt: now, version: current.version + 1 };
      if (await this.store.replace(next, current.version)) {
        this.onChange?.(id);
        return toKeyInfo(next);
      }
    }
    throw new TillError('CONFLICT', `[till] [keys] key ${id} kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }
}
