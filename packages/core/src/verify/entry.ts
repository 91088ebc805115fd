// The verifier's cache entry: a known key, with what is derived from its record once rather than per
// request, or an id the store does not know. Kept small (a cache holds 100,000 of them): no copy of the
// record, only the public view a success hands out and the few fields the verifier judges by.
import { digestBytes, type HashAlgorithm } from '../key/hash.js';
import type { Credits, LimitCharge } from '../limits/rules.js';
import { toVerifiedKey, withoutHash, type KeyRecord } from '../store/record.js';
import type { VerifySuccess } from './outcome.js';
import { scopeSetOf, type ScopeSet } from './scopes.js';

/** Rate limits charged per key, each naming the bucket that holds its state. */
export type Charges = ReadonlyArray<LimitCharge & { readonly bucket: string }>;

const NO_CHARGES: Charges = Object.freeze([]);

/** A status that refuses a key whatever the time, judged first. */
type Blocked = 'REVOKED' | 'DISABLED';

export interface KnownEntry {
  /** The success a request without charges gets: one frozen value for every request with this key. Its `key` is the record's public view. */
  readonly fresh: VerifySuccess;
  /**
   * The stored digest's bytes (latin1) until a presentation of the key matches it; null after that
   * (the confirmed key below stands in for it), and for a digest that is not 32 bytes, which nothing matches.
   */
  digest: string | null;
  /**
   * The key's secret and check (tailOf) once a presentation matched the digest: later presentations
   * are confirmed by a constant-time comparison with them and the prefix (sameKey), not by a hash.
   * Null until then, and always with `cache.hashEveryRequest`. Dropped with the entry on any change to the key.
   */
  confirmed: string | null;
  readonly scopes: ScopeSet;
  readonly hashAlgorithm: HashAlgorithm;
  readonly version: number;
  /** REVOKED or DISABLED when the record says so; null otherwise (then expiry and not-before are judged by the clock). */
  readonly blocked: Blocked | null;
  readonly notBefore: number | null;
  readonly credits: Credits | null;
  /** The key's own limits as charges; empty when it has none. */
  readonly charges: Charges;
  /** The key's charges joined with a middleware's, for the last middleware limits seen (they rarely vary). */
  joined: { readonly extra: Charges; readonly all: Charges } | null;
  /** Cache time it was read from the store (see CacheClock). */
  readonly fetched: number;
  /** Cache time the LRU last heard of a use (see noteUse). */
  touched: number;
}

/**
 * An id no key has. It holds every field a known entry does, set to nothing, so that both kinds share
 * one V8 hidden class and the verifier's property reads stay monomorphic (one shape check each).
 */
export interface UnknownEntry {
  readonly fresh: null;
  readonly digest: null;
  readonly confirmed: null;
  readonly scopes: null;
  readonly hashAlgorithm: null;
  readonly version: 0;
  readonly blocked: null;
  readonly notBefore: null;
  readonly credits: null;
  readonly charges: Charges;
  joined: null;
  readonly fetched: number;
  touched: number;
}

export type Entry = KnownEntry | UnknownEntry;

export function unknownEntry(fetched: number): UnknownEntry {
  return {
    fresh: null,
    digest: null,
    confirmed: null,
    scopes: null,
    hashAlgorithm: null,
    version: 0,
    blocked: null,
    notBefore: null,
    credits: null,
    charges: NO_CHARGES,
    joined: null,
    fetched,
    touched: fetched,
  };
}

export function knownEntry(stored: KeyRecord, fetched: number): KnownEntry {
  // The record as records are kept (shared prefix, scope list and empty maps), read once and let go.
  const record = withoutHash(stored);
  return {
    fresh: Object.freeze({ valid: true, code: 'VALID', key: toVerifiedKey(record), stale: false }),
    digest: digestBytes(stored.hash),
    confirmed: null,
    scopes: scopeSetOf(record.scopes),
    hashAlgorithm: record.hashAlgorithm,
    version: record.version,
    blocked: record.revokedAt !== null ? 'REVOKED' : record.disabled ? 'DISABLED' : null,
    notBefore: record.notBefore,
    credits: record.credits,
    charges:
      record.limits.length === 0
        ? NO_CHARGES
        : record.limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window, cost: 1, bucket: `k.${l.name}` })),
    joined: null,
    fetched,
    touched: fetched,
  };
}

/** The failure code of a key's status at `now` (the order keyStatus checks them), null when it is active. */
export function refusalAt(entry: KnownEntry, now: number): Blocked | 'EXPIRED' | 'NOT_YET_VALID' | null {
  if (entry.blocked !== null) return entry.blocked;
  const expiresAt = entry.fresh.key.expiresAt;
  if (expiresAt !== null && expiresAt <= now) return 'EXPIRED';
  if (entry.notBefore !== null && entry.notBefore > now) return 'NOT_YET_VALID';
  return null;
}

/** Whether a request with this key is charged even without middleware limits (own limits or credits). */
export function chargedAlways(entry: KnownEntry): boolean {
  return entry.charges.length > 0 || entry.credits !== null;
}

/**
 * Every limit a request with this key is charged: the key's own, then the middleware's. The joined
 * list is kept for the last middleware limits seen, so a route's requests share one array.
 */
export function chargesOf(entry: KnownEntry, extra: Charges | undefined): Charges {
  if (extra === undefined || extra.length === 0) return entry.charges;
  if (entry.charges.length === 0) return extra;
  if (entry.joined?.extra !== extra) entry.joined = { extra, all: entry.charges.concat(extra) };
  return entry.joined.all;
}
