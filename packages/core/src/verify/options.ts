// The verifier's options, their defaults and their checks: made once into a config when it is built.
import { tillError } from '../errors.js';
import type { KeyHasher } from '../key/hash.js';
import { isValidPrefix } from '../key/format.js';
import type { Limiter } from '../limits/limiter.js';
import type { UsageTracker } from '../audit/usage.js';
import type { Clock } from '../util/clock.js';
import type { KeyStore, SubscriptionListener } from '../store/types.js';
import type { Charges } from './entry.js';

export interface CacheOptions {
  /** Most keys kept in the cache. Default 10,000. */
  max?: number;
  /** Milliseconds a cached key is trusted without asking the store. Default 30,000. */
  ttl?: number;
  /** Milliseconds an unknown id is remembered as unknown. Default 5,000. */
  negativeTtl?: number;
  /**
   * Most unknown ids remembered. They have a cache of their own, so a flood of made-up keys can
   * never push real keys out (and with them the stale window). Default 10,000.
   */
  negativeMax?: number;
  /**
   * Milliseconds past `ttl` during which a key that verified recently keeps working while the
   * store is unreachable. Default 300,000 (5 minutes); 0 turns it off.
   */
  staleWindow?: number;
  /**
   * Hash every presented key (true), instead of hashing a key once and confirming its later
   * presentations by a constant-time comparison with the secret the cache then holds. Default false:
   * the process's memory holds the secrets of its cached keys, as it already sees every key of every
   * request; true keeps only digests in memory, at the cost of a hash per request.
   */
  hashEveryRequest?: boolean;
}

export interface VerifierOptions {
  store: KeyStore;
  /** Hasher for stored digests; made from `pepper` when absent. */
  hasher?: KeyHasher;
  /** Key prefixes this verifier accepts; any valid prefix when absent. */
  prefixes?: readonly string[];
  cache?: CacheOptions;
  /** Seconds a client is told to wait when the store is unreachable. Default 2. */
  unavailableRetryAfter?: number;
  clock?: Clock;
  /** Charges rate limits and credits; one of its own (events unheard) when absent. */
  limiter?: Limiter;
  /** Counts each key's outcomes for usage tracking; none when absent. */
  usage?: UsageTracker;
  /** Told whether the store's invalidation subscription could be made (see SubscriptionListener). */
  onSubscription?: SubscriptionListener;
  /** The name its messages on the `till:verify` channel carry (a Till's, in a Till). Default: a name of its own. */
  till?: string;
}

export interface VerifyOptions {
  /** Scopes the key must hold. */
  scopes?: readonly string[];
  /** `all` (default) needs every scope; `any` needs one. */
  scopeMode?: 'all' | 'any';
  /**
   * Rate limits charged per key beside the key's own, in the same atomic step (and the same round
   * trip). `bucket` names the state: limits of the same bucket share it.
   */
  limits?: Charges;
  /** Credits this request spends when the key has credits. Default 1. */
  cost?: number;
  /**
   * The client's IP address, checked against the key's allowlist (`allowedIps`) when it has one. The
   * adapters pass the framework's view of it (its trust-proxy setting) and read it only for keys with
   * an allowlist; a direct caller passes it here. A key with an allowlist and no address given is refused.
   */
  ip?: string;
}

/** Reads the client address of a request (the framework's `req.ip`), given the request. */
export type ClientAddressOf<C> = (context: C) => string | undefined;

/** The cache settings, defaulted and checked. */
export interface CacheConfig {
  readonly max: number;
  readonly ttl: number;
  readonly negativeTtl: number;
  readonly negativeMax: number;
  readonly staleWindow: number;
  readonly hashEveryRequest: boolean;
}

const DEFAULT_CACHE = { max: 10_000, ttl: 30_000, negativeTtl: 5_000, negativeMax: 10_000, staleWindow: 300_000, hashEveryRequest: false };

function checkNumber(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw tillError('INVALID_OPTIONS', 'verifier', `${name} must be a number >= ${min}`);
  }
  return value;
}

function checkCount(value: unknown, name: string): number {
  const count = checkNumber(value, name, 1);
  if (!Number.isInteger(count)) throw tillError('INVALID_OPTIONS', 'verifier', `${name} must be an integer`);
  return count;
}

/** Checks a verifier's options (throws INVALID_OPTIONS) and gives its cache settings and retry time. */
export function verifierConfig(options: VerifierOptions): { readonly cache: CacheConfig; readonly unavailableRetryAfter: number } {
  if (!options || typeof options !== 'object' || !options.store || typeof options.store.get !== 'function') {
    throw tillError('INVALID_OPTIONS', 'verifier', 'a store is required');
  }
  const given = { ...DEFAULT_CACHE, ...options.cache };
  const max = checkCount(given.max, 'cache.max');
  const ttl = checkNumber(given.ttl, 'cache.ttl', 0);
  const negativeTtl = checkNumber(given.negativeTtl, 'cache.negativeTtl', 0);
  const staleWindow = checkNumber(given.staleWindow, 'cache.staleWindow', 0);
  if (options.prefixes !== undefined) {
    if (!Array.isArray(options.prefixes) || !options.prefixes.every(isValidPrefix)) {
      throw tillError('INVALID_OPTIONS', 'verifier', 'prefixes must be an array of valid key prefixes');
    }
  }
  const retryAfter = checkNumber(options.unavailableRetryAfter ?? 2, 'unavailableRetryAfter', 1);
  if (options.clock !== undefined && typeof options.clock !== 'function') {
    throw tillError('INVALID_OPTIONS', 'verifier', 'clock must be a function returning epoch milliseconds');
  }
  const negativeMax = checkCount(given.negativeMax, 'cache.negativeMax');
  if (typeof given.hashEveryRequest !== 'boolean') throw tillError('INVALID_OPTIONS', 'verifier', 'cache.hashEveryRequest must be a boolean');
  const hashEveryRequest = given.hashEveryRequest;
  return { cache: { max, ttl, negativeTtl, negativeMax, staleWindow, hashEveryRequest }, unavailableRetryAfter: Math.ceil(retryAfter) };
}
