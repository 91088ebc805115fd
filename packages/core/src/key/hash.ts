// Hashing at rest: SHA-256 of the key, or HMAC-SHA-256 with a server-side pepper (node:crypto);
// constant-time comparison of digests. The verifier hashes a key only when its cache has not yet
// confirmed it (see verify/tuning.ts, sameKey), so a digest is computed once per key and cache entry.
import { createHmac, hash as oneShotHash, timingSafeEqual } from 'node:crypto';
import { tillError } from '../errors.js';

export type HashAlgorithm = 'sha256' | 'hmac-sha256';

export interface KeyHasher {
  /** The algorithm new keys are stored with. */
  readonly algorithm: HashAlgorithm;
  /** Digest of a full key, base64url, under `algorithm` (the record says which one it was stored with). */
  digest(key: string, algorithm?: HashAlgorithm): string;
  /**
   * Whether `key` hashes to `expected` (the stored digest's 32 bytes as a latin1 string, from
   * `digestBytes`), compared in constant time.
   */
  matches(key: string, algorithm: HashAlgorithm, expected: string): boolean;
}

/** The stored digest's bytes, copied here for timingSafeEqual (one buffer, no allocation per call). */
const EXPECTED = Buffer.alloc(32);

/**
 * A hasher: HMAC-SHA-256 keyed with `pepper` when one is given (a stolen database then cannot
 * be checked offline), plain SHA-256 otherwise. 128+ bit random secrets need no slow hash.
 */
export function createHasher(pepper?: string | Buffer): KeyHasher {
  if (pepper !== undefined) {
    const length = typeof pepper === 'string' ? Buffer.byteLength(pepper) : Buffer.isBuffer(pepper) ? pepper.length : -1;
    if (length < 16) {
      throw tillError('INVALID_OPTIONS', 'hash', 'pepper must be a string or Buffer of at least 16 bytes');
    }
  }
  const algorithm: HashAlgorithm = pepper === undefined ? 'sha256' : 'hmac-sha256';
  const noPepper = () => tillError('INVALID_OPTIONS', 'hash', 'a key was stored with HMAC-SHA-256 but no pepper is configured');

  const raw = (key: string, alg: HashAlgorithm): Buffer => {
    if (alg === 'sha256') return oneShotHash('sha256', key, 'buffer') as unknown as Buffer;
    if (pepper === undefined) throw noPepper();
    return createHmac('sha256', pepper).update(key).digest();
  };

  return {
    algorithm,
    digest: (key, alg = algorithm) => raw(key, alg).toString('base64url'),
    matches(key, alg, expected) {
      // A key stored with HMAC cannot match without the pepper: refused like a wrong secret, not thrown (a 500).
      if (expected.length !== 32 || (alg !== 'sha256' && pepper === undefined)) return false;
      // Every byte of the stored digest is read, and timingSafeEqual compares them all, whatever differs first.
      for (let i = 0; i < 32; i++) EXPECTED[i] = expected.charCodeAt(i);
      return timingSafeEqual(raw(key, alg), EXPECTED);
    },
  };
}

/**
 * A stored base64url digest as the latin1 string of its 32 bytes (what `matches` takes), or null
 * when it is not one. A cached key holds its digest so until its first presentation confirms it:
 * 48 bytes of heap.
 */
export function digestBytes(base64url: string): string | null {
  const bytes = Buffer.from(base64url, 'base64url');
  if (bytes.length !== 32 || bytes.toString('base64url') !== base64url) return null;
  return bytes.toString('latin1');
}
