// What the key manager takes and gives: the inputs of its calls and the results they resolve with.
import { isTillError, type TillError } from '../errors.js';
import type { KeyHasher } from '../key/hash.js';
import type { CreditsInput, RateLimitInput } from '../limits/rules.js';
import type { KeyInfo, KeyStatus } from '../store/record.js';
import type { KeyStore } from '../store/types.js';
import type { Clock } from '../util/clock.js';

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
  /** The same as a duration from now: `90d`, `12h`, or milliseconds. Not with `expiresAt`. */
  expiresIn?: string | number;
  /** When the key starts working. */
  notBefore?: Date | number | null;
  /** Prefix for this key; the manager's default when absent. */
  prefix?: string;
  /** Rate limits every request with this key is charged against, like `{ name: 'per-second', limit: 10, window: '1s' }`. */
  limits?: readonly RateLimitInput[];
  /** Usage credits: a number of uses, optionally refilled. Absent or null: unlimited. */
  credits?: CreditsInput | null;
  /**
   * Client IP ranges the key may be used from, like `['203.0.113.0/24', '2001:db8::/32']` (IPv4, IPv6,
   * IPv4-mapped IPv6; a bare address is one host). A request from elsewhere is refused with IP_NOT_ALLOWED.
   * Absent, null or empty: from anywhere.
   */
  allowedIps?: readonly string[] | null;
  /**
   * Roles the key holds (`till.roles.define` first): their scopes join the key's own at verification,
   * and a change to a role reaches every key holding it. Absent, null or empty: none.
   */
  roles?: readonly string[] | null;
  /** The identity the key belongs to: its limits and credits are shared by all of its keys. It must exist. */
  identityId?: string | null;
}

/** Who made a change and why: written with the change into the audit trail. */
export interface ChangeContext {
  /** Who or what makes the change: a user, a service, `cli:alice`. Default: the manager's `actor`. */
  actor?: string;
  /** Why, in a few words. */
  reason?: string;
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
  /** Who makes changes through this manager when a call does not say (audit trail). Default none. */
  actor?: string;
}

export interface KeyPatch {
  name?: string;
  scopes?: readonly string[];
  /** Replaces all metadata. */
  metadata?: Record<string, unknown>;
  /** Sets these metadata entries and keeps the others (merged with the key's current metadata). */
  setMetadata?: Record<string, unknown>;
  /** Removes these metadata entries. */
  unsetMetadata?: readonly string[];
  /** A new expiry; null removes it. */
  expiresAt?: Date | number | null;
  /** A new expiry as a duration from now. Not with `expiresAt`. */
  expiresIn?: string | number;
  notBefore?: Date | number | null;
  disabled?: boolean;
  /** Replaces the key's rate limits ([] removes them). */
  limits?: readonly RateLimitInput[];
  /** Sets the credits anew (the live count restarts from `remaining`); null removes them. */
  credits?: CreditsInput | null;
  /** Replaces the key's IP allowlist; null or [] removes it (any address). */
  allowedIps?: readonly string[] | null;
  /** Replaces the roles the key holds; null or [] removes them. Each must be defined. */
  roles?: readonly string[] | null;
  /** Moves the key to another identity (which must exist); null takes it out of its identity. */
  identityId?: string | null;
}

/**
 * What the store says about a full key presented to `identify`: whether its secret is the one
 * stored for its id. Ids are public, so only `confirmed` says the key is real.
 */
export interface KeyIdentity {
  /** The key's public id (from the key itself, whatever the store says). */
  readonly id: string;
  readonly prefix: string;
  /**
   * `confirmed`: the secret matches the stored digest. `mismatch`: a key with this id exists, but
   * not with this secret (a forged key, or this manager's pepper is not the one the key was made
   * with). `unknown`: no key has this id here. `unconfirmable`: the key was stored with HMAC and
   * this manager has no pepper to check it with.
   */
  readonly match: 'confirmed' | 'mismatch' | 'unknown' | 'unconfirmable';
  /** The key's status now; only when `confirmed` (a forged key learns nothing from it). */
  readonly status?: KeyStatus;
}

export interface RotatedKey extends CreatedKey {
  /** The old key after the rotation: its new expiry and its link to the new key. */
  readonly previous: KeyInfo;
  /**
   * False when the old key's new expiry is saved but could not be announced to running services
   * (see TillError NOT_ANNOUNCED): they keep its old expiry until their cache TTL runs out.
   */
  readonly announced: boolean;
}

/**
 * What a rotation rejected with NOT_REPLICATED carries in its `rotation` property: the rotation as made
 * on the primary (`previous` is null when the old key could not be read back).
 */
export interface UnconfirmedRotation extends CreatedKey {
  readonly previous: KeyInfo | null;
}

/** The rotation a NOT_REPLICATED error of `rotate()` carries, if it is one. */
export function unconfirmedRotation(error: unknown): UnconfirmedRotation | null {
  if (!isTillError(error, 'NOT_REPLICATED')) return null;
  const rotation = (error as TillError & { rotation?: UnconfirmedRotation }).rotation;
  return rotation === undefined ? null : rotation;
}
