// The verifier's cache entry: a known key, with what is derived from its record once rather than per
// request, or an id the store does not know. Kept small (a cache holds 100,000 of them): no copy of the
// record, only the public view a success hands out and the few fields the verifier judges by.
import { digestBytes, type HashAlgorithm, type KeyHasher } from '../key/hash.js';
import type { Credits, LimitCharge } from '../limits/rules.js';
import { toVerifiedKey, withoutHash, type KeyRecord } from '../store/record.js';
import type { VerifySuccess } from './outcome.js';
import type { IdentityRecord } from '../identity/record.js';
import type { IdentityCharge } from '../store/types.js';
import { scopeSetOf, type ScopeSet } from './scopes.js';
import { compileAllowlist, IpPolicy } from './allowlist.js';
import { keyOf, packTail, sameKey, tailOf, type PackedTail } from './tuning.js';

/** Rate limits charged per key, each naming the bucket that holds its state. */
export type Charges = ReadonlyArray<LimitCharge & { readonly bucket: string }>;

const NO_CHARGES: Charges = Object.freeze([]);

/** A status that refuses a key whatever the time, judged first. */
type Blocked = 'REVOKED' | 'DISABLED';

/**
 * What few keys have, kept apart so that an entry of a key without them holds none of it: a status that
 * blocks it, a start, credits, limits, a version past the first (a key never changed has version 1). It
 * holds the key's proof, in the entry's slot for it (see KnownEntry.proof): one field for both.
 */
export interface Rare {
  /** The key's proof (see Proof). */
  proof: Proof;
  readonly version: number;
  /** REVOKED or DISABLED when the record says so; null otherwise (then expiry and not-before are judged by the clock). */
  readonly blocked: Blocked | null;
  readonly notBefore: number | null;
  readonly credits: Credits | null;
  /** The key's own limits as charges; empty when it has none. */
  readonly charges: Charges;
  /** The key's charges joined with a middleware's, for the last middleware limits seen (they rarely vary). */
  joined: { readonly extra: Charges; readonly all: Charges } | null;
  /**
   * The IP allowlists a request's client address must pass, every one: the key's own and its
   * identity's, each when it has one. Null: any address.
   */
  readonly ips: IpPolicy | null;
  /** The roles the key holds, its own and its identity's (their scopes are joined into the entry's already); empty for none. */
  readonly roles: readonly string[];
  /**
   * The key's identity as read with the key (null: the key has none, or it is gone, and then the key
   * is refused as DISABLED).
   */
  readonly identity: IdentityRecord | null;
  /** The identity's part of every charge of the key (null: none, or nothing to charge). */
  readonly identityCharge: IdentityCharge | null;
}

/**
 * An entry's proof of its key. Until a presentation of the key matches the stored digest: the digest, its
 * 32 bytes (latin1) after one character naming the algorithm (DIGEST_LENGTH). Once one did: a number,
 * the first characters of the key's tail, the rest in the entry's tail fields (PackedTail), compared in
 * constant time with later presentations (sameKey), which are then not hashed. Null for a stored digest
 * that is not 32 bytes, which nothing matches. With `cache.hashEveryRequest` it stays a digest.
 */
type Proof = string | number | null;

const ALGORITHMS: Readonly<Record<string, HashAlgorithm>> = { s: 'sha256', h: 'hmac-sha256' };
const DIGEST_LENGTH = 33;
/** The version of a record never changed. */
const FIRST_VERSION = 1;

export interface KnownEntry extends PackedTail {
  /** The success a request without charges gets: one frozen value for every request with this key. Its `key` is the record's public view. */
  readonly fresh: VerifySuccess;
  /**
   * The key's proof (see Proof); for a key with what few keys have, its Rare, which holds the proof. One
   * field for both: 8 bytes less per cached key (see proofOf, rareOf).
   */
  proof: Proof | Rare;
  /** Cache time it was read from the store (see CacheClock). */
  readonly fetched: number;
  /** Cache time the LRU last heard of a use (see noteUse). */
  touched: number;
}

/**
 * An id no key has. It holds every field a known entry does, set to nothing, so that both kinds share
 * one V8 hidden class and the verifier's property reads stay monomorphic (one shape check each).
 */
export interface UnknownEntry extends PackedTail {
  readonly fresh: null;
  readonly proof: null;
  readonly fetched: number;
  touched: number;
}

export type Entry = KnownEntry | UnknownEntry;

export function unknownEntry(fetched: number): UnknownEntry {
  return { fresh: null, proof: null, fetched, touched: fetched, t1: 0, t2: 0, t3: 0, t4: 0, t5: 0, t6: 0 };
}

/** What an entry's key has of what few keys have; null: none of it. */
function rareOf(entry: KnownEntry): Rare | null {
  const slot = entry.proof;
  return typeof slot === 'object' ? slot : null;
}

/** The proof of an entry's key, wherever it is kept: in the slot itself for most keys (a number once confirmed). */
function proofOf(entry: KnownEntry): Proof {
  const slot = entry.proof;
  return typeof slot === 'object' && slot !== null ? slot.proof : slot;
}

/** Replaces the proof of an entry's key where it is kept. */
function setProof(entry: KnownEntry, proof: Proof): void {
  const rare = rareOf(entry);
  if (rare === null) entry.proof = proof;
  else rare.proof = proof;
}

/**
 * The entry of a key read from the store, with its identity as read with it (`identity`: null when the
 * key names none or the identity is gone). A key whose identity is gone is refused as DISABLED: a
 * forced deletion of an identity never lifts its shared limits off its keys.
 */
export function knownEntry(stored: KeyRecord, fetched: number, identity: IdentityRecord | null = null): KnownEntry {
  // The record as records are kept (shared prefix, scope list and empty maps), read once and let go.
  const record = withoutHash(stored);
  const bytes = digestBytes(stored.hash);
  const identityId = record.identityId ?? null;
  const owner = identityId !== null && identity !== null && identity.id === identityId ? identity : null;
  const blocked: Blocked | null = record.revokedAt !== null ? 'REVOKED' : record.disabled || (identityId !== null && owner === null) ? 'DISABLED' : null;
  const proof = bytes === null ? null : `${record.hashAlgorithm === 'sha256' ? 's' : 'h'}${bytes}`;
  const rare: Rare | null =
    identityId === null &&
    record.version === FIRST_VERSION &&
    blocked === null &&
    record.notBefore === null &&
    record.credits === null &&
    record.limits.length === 0 &&
    record.allowedIps.length === 0 &&
    record.roles.length === 0
      ? null
      : {
          proof,
          version: record.version,
          blocked,
          notBefore: record.notBefore,
          credits: record.credits,
          charges:
            record.limits.length === 0
              ? NO_CHARGES
              : record.limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window, cost: 1, bucket: `k.${l.name}` })),
          joined: null,
          ips: ipPolicy(record.allowedIps, owner === null ? NO_RANGES : owner.allowedIps),
          roles: owner === null || owner.roles.length === 0 ? record.roles : [...new Set([...record.roles, ...owner.roles])],
          identity: owner,
          identityCharge: owner === null || (owner.limits.length === 0 && owner.credits === null) ? null : identityChargeOf(owner),
        };
  return {
    fresh: Object.freeze({
      valid: true,
      code: 'VALID',
      key: toVerifiedKey(record),
      stale: false,
    }),
    proof: rare ?? proof,
    fetched,
    touched: fetched,
    t1: 0,
    t2: 0,
    t3: 0,
    t4: 0,
    t5: 0,
    t6: 0,
  };
}

/**
 * Whether `key` is the key of `entry`: compared in constant time with the tail a presentation confirmed
 * before (the entry was found by the key's id), or, until one did, hashed and compared with the stored
 * digest. A key that matches the digest has its tail kept in place of it when `keep` (not
 * `cache.hashEveryRequest`). The comparison reads the key in `text` from `start` (see sameKey).
 */
export function confirms(entry: KnownEntry, key: string, hasher: KeyHasher, keep: boolean, text: string = key, start = 0): boolean {
  const proof = proofOf(entry);
  if (typeof proof === 'number') return sameKey(entry.fresh.key.prefix, proof, entry, key, text, start);
  if (proof === null || proof.length !== DIGEST_LENGTH || !hasher.matches(key, ALGORITHMS[proof[0]!]!, proof.slice(1))) return false;
  if (keep) setProof(entry, packTail(entry, key));
  return true;
}

/** Whether a record read again (`next`) has the digest of the key `entry` was verified with. */
export function sameDigest(entry: KnownEntry, next: KnownEntry, hasher: KeyHasher, keep: boolean): boolean {
  const proof = proofOf(entry);
  if (typeof proof !== 'number') return proofOf(next) === proof;
  const view = entry.fresh.key;
  return confirms(next, keyOf(view.prefix, view.id, tailOf(proof, entry)), hasher, keep);
}

/** The failure code of a key's status at `now` (the order keyStatus checks them), null when it is active. */
export function refusalAt(entry: KnownEntry, now: number): Blocked | 'EXPIRED' | 'NOT_YET_VALID' | null {
  const rare = rareOf(entry);
  if (rare !== null && rare.blocked !== null) return rare.blocked;
  const expiresAt = entry.fresh.key.expiresAt;
  if (expiresAt !== null && expiresAt <= now) return 'EXPIRED';
  if (rare !== null && rare.notBefore !== null && rare.notBefore > now) return 'NOT_YET_VALID';
  return null;
}

/**
 * The compiled grants of a key: looked up by its scope list, which records share (so a cache of 100,000
 * keys holds one ScopeSet per distinct list, and its entries none). Only a request that requires scopes asks.
 */
export function scopesOf(entry: KnownEntry): ScopeSet {
  return scopeSetOf(entry.fresh.key.scopes);
}

const NO_RANGES: readonly string[] = Object.freeze([]);

/** The allowlists of a key and of its identity, each when set: an address must pass both. */
function ipPolicy(own: readonly string[], identity: readonly string[]): IpPolicy | null {
  const lists = [own, identity].filter((l) => l.length > 0).map(compileAllowlist);
  return lists.length === 0 ? null : new IpPolicy(lists);
}

/** The identity's part of a charge: its limits, each request costing 1 of each (buckets `i.<name>` under the identity's tag), and its credits. */
function identityChargeOf(identity: IdentityRecord): IdentityCharge {
  return Object.freeze({
    id: identity.id,
    version: identity.version,
    credits: identity.credits,
    limits: Object.freeze(identity.limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window, cost: 1, bucket: `i.${l.name}` }))),
  });
}

/** Whether a request with this key is charged even without middleware limits (own limits or credits, or its identity's). */
export function chargedAlways(entry: KnownEntry): boolean {
  const rare = rareOf(entry);
  return rare !== null && (rare.charges.length > 0 || rare.credits !== null || rare.identityCharge !== null);
}

/** The key's identity as cached with it (null: none): the seam the policies (allowed networks, roles) read. */
export function identityOf(entry: KnownEntry): IdentityRecord | null {
  return rareOf(entry)?.identity ?? null;
}

/** The identity's part of the key's charges, or undefined when there is none. */
export function identityChargeOfEntry(entry: KnownEntry): IdentityCharge | undefined {
  return rareOf(entry)?.identityCharge ?? undefined;
}

/** The version of the identity an entry was made with (0: none). */
export function identityVersionOf(entry: KnownEntry): number {
  return rareOf(entry)?.identity?.version ?? 0;
}

/** The IP allowlists a request with this key must pass; null when it has none (any address). */
export function ipPolicyOf(entry: KnownEntry): IpPolicy | null {
  return rareOf(entry)?.ips ?? null;
}

/** Whether an entry's key holds the role `name` (its scopes then came from it). */
export function holdsRole(entry: KnownEntry, name: string): boolean {
  return rareOf(entry)?.roles.includes(name) === true;
}

/** The version of the record an entry was made from. */
export function versionOf(entry: KnownEntry): number {
  return rareOf(entry)?.version ?? FIRST_VERSION;
}

/** The key's credits, null when it has none. */
export function creditsOf(entry: KnownEntry): Credits | null {
  return rareOf(entry)?.credits ?? null;
}

/**
 * Every limit a request with this key is charged: the key's own, then the middleware's. The joined
 * list is kept for the last middleware limits seen, so a route's requests share one array.
 */
export function chargesOf(entry: KnownEntry, extra: Charges | undefined): Charges {
  const rare = rareOf(entry);
  const own = rare === null ? NO_CHARGES : rare.charges;
  if (extra === undefined || extra.length === 0) return own;
  if (own.length === 0) return extra;
  if (rare!.joined?.extra !== extra) rare!.joined = { extra, all: own.concat(extra) };
  return rare!.joined!.all;
}
