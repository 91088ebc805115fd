// The verifier's cache entry: a known key, with what is derived from its record once rather than per
// request, or an id the store does not know.
import { digestBytes } from '../key/hash.js';
import type { LimitCharge } from '../limits/rules.js';
import { toVerifiedKey, withoutHash, type KeyRecord } from '../store/record.js';
import type { VerifySuccess } from './outcome.js';
import { scopeSetOf, type ScopeSet } from './scopes.js';

/** Rate limits charged per key, each naming the bucket that holds its state. */
export type Charges = ReadonlyArray<LimitCharge & { readonly bucket: string }>;

const NO_CHARGES: Charges = Object.freeze([]);

export interface KnownEntry {
  /** The record, without its hash (the digest below is the one copy kept). */
  readonly record: KeyRecord;
  /**
   * The stored digest's bytes (latin1) until a presentation of the key matches it; null after that
   * (the confirmed key below stands in for it), and for a digest that is not 32 bytes, which nothing matches.
   */
  digest: string | null;
  /**
   * The key itself once a presentation matched the digest: later presentations are confirmed by a
   * constant-time comparison with it (sameKey), not by a hash. Null until then, and always with
   * `cache.hashEveryRequest`. Dropped with the entry on any change to the key.
   */
  confirmed: string | null;
  readonly scopes: ScopeSet;
  /** The success a request without charges gets: one frozen value for every request with this key. */
  readonly fresh: VerifySuccess;
  /** The key's own limits as charges; empty when it has none. */
  readonly charges: Charges;
  /** Whether a request with this key is charged even without middleware limits (own limits or credits). */
  readonly charged: boolean;
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
  readonly record: null;
  readonly digest: null;
  readonly confirmed: null;
  readonly scopes: null;
  readonly fresh: null;
  readonly charges: Charges;
  readonly charged: false;
  joined: null;
  readonly fetched: number;
  touched: number;
}

export type Entry = KnownEntry | UnknownEntry;

export function unknownEntry(fetched: number): UnknownEntry {
  return { record: null, digest: null, confirmed: null, scopes: null, fresh: null, charges: NO_CHARGES, charged: false, joined: null, fetched, touched: fetched };
}

export function knownEntry(record: KeyRecord, fetched: number): KnownEntry {
  const charges =
    record.limits.length === 0
      ? NO_CHARGES
      : record.limits.map((l) => Object.freeze({ name: l.name, limit: l.limit, window: l.window, cost: 1, bucket: `k.${l.name}` }));
  return {
    // The digest is kept as bytes (digest); the record's base64url copy of it would be a second.
    record: withoutHash(record),
    digest: digestBytes(record.hash),
    confirmed: null,
    scopes: scopeSetOf(record.scopes),
    fresh: Object.freeze({ valid: true, code: 'VALID', key: toVerifiedKey(record), stale: false }),
    charges,
    charged: charges.length > 0 || record.credits !== null,
    joined: null,
    fetched,
    touched: fetched,
  };
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
