// Hashing at rest: SHA-256 of the key, or HMAC-SHA-256 with a server-side pepper; constant-time compare.
import { createHmac, hash as oneShotHash, timingSafeEqual } from 'node:crypto';
import { TillError } from './errors.js';

export type HashAlgorithm = 'sha256' | 'hmac-sha256';

export interface KeyHasher {
  /** The algorithm new keys are stored with. */
  readonly algorithm: HashAlgorithm;
  /** Digest of a full key under `algorithm` (the record says which one it was stored with). */
  digest(key: string, algorithm?: HashAlgorithm): Buffer;
}

/**
 * A hasher: HMAC-SHA-256 keyed with `pepper` when one is given (a stolen database then cannot
 * be checked offline), plain SHA-256 otherwise. 128+ bit random secrets need no slow hash.
 */
export function createHasher(pepper?: string | Buffer): KeyHasher {
  if (pepper !== undefined) {
    const length = typeof pepper === 'string' ? Buffer.byteLength(pepper) : Buffer.isBuffer(pepper) ? pepper.length : -1;
    if (length < 16) {
      throw new TillError('INVALID_OPTIONS', '[till] [hash] pepper must be a string or Buffer of at least 16 bytes');
    }
  }
  const algorithm: HashAlgorithm = pepper === undefined ? 'sha256' : 'hmac-sha256';
  return {
    algorithm,
    digest(key, alg = algorithm) {
      if (alg === 'sha256') return oneShotHash('sha256', key, 'buffer') as unknown as Buffer;
      if (pepper === undefined) {
        throw new TillError('INVALID_OPTIONS', '[till] [hash] a key was stored with HMAC-SHA-256 but no pepper is configured');
      }
      return createHmac('sha256', pepper).update(key).digest();
    },
  };
}

/** Constant-time equality of two digests; different lengths are unequal (and leak only the length). */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
