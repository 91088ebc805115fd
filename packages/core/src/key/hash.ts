// Hashing at rest: SHA-256 of the key, or HMAC-SHA-256 with a server-side pepper; constant-time compare.
import { createHmac, hash as oneShotHash } from 'node:crypto';
import { tillError } from '../errors.js';
import { hmacKey, hmacSha256Ascii, isAscii, sha256Ascii, type HmacKey } from './sha256.js';

export type HashAlgorithm = 'sha256' | 'hmac-sha256';

export interface KeyHasher {
  /** The algorithm new keys are stored with. */
  readonly algorithm: HashAlgorithm;
  /** Digest of a full key, base64url, under `algorithm` (the record says which one it was stored with). */
  digest(key: string, algorithm?: HashAlgorithm): string;
  /**
   * Whether `key` hashes to `expected` (the stored digest's 32 bytes as a latin1 string, from
   * `digestBytes`), compared in constant time. The verifier's hot path: no allocation, no native call.
   */
  matches(key: string, algorithm: HashAlgorithm, expected: string): boolean;
}

const ACTUAL = new Int32Array(8);

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
  const pads: HmacKey | null = pepper === undefined ? null : hmacKey(pepper);
  const noPepper = () => tillError('INVALID_OPTIONS', 'hash', 'a key was stored with HMAC-SHA-256 but no pepper is configured');

  const digest = (key: string, alg: HashAlgorithm = algorithm): string => {
    if (alg === 'sha256') return oneShotHash('sha256', key, 'base64url');
    if (pepper === undefined) throw noPepper();
    return createHmac('sha256', pepper).update(key).digest('base64url');
  };

  return {
    algorithm,
    digest,
    matches(key, alg, expected) {
      // A key stored with HMAC cannot match without the pepper: refused like a wrong secret, not thrown (a 500).
      if (expected.length !== 32 || (alg !== 'sha256' && pads === null)) return false;
      if (!isAscii(key)) {
        const bytes = Buffer.from(digest(key, alg), 'base64url');
        for (let i = 0; i < 8; i++) ACTUAL[i] = bytes.readInt32BE(4 * i);
      } else if (alg === 'sha256') sha256Ascii(key, ACTUAL);
      else if (pads !== null) hmacSha256Ascii(pads, key, ACTUAL);
      else throw noPepper();
      // Every byte is compared, whatever differs first.
      let diff = 0;
      for (let i = 0, j = 0; i < 8; i++, j += 4) {
        diff |=
          ACTUAL[i]! ^ ((expected.charCodeAt(j) << 24) | (expected.charCodeAt(j + 1) << 16) | (expected.charCodeAt(j + 2) << 8) | expected.charCodeAt(j + 3));
      }
      return diff === 0;
    },
  };
}
