import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHasher } from '../src/key/hash.js';
import { digestBytes, hmacKey, hmacSha256Ascii, sha256Ascii } from '../src/key/sha256.js';

const words = (digest: Buffer) => Array.from({ length: 8 }, (_, i) => digest.readInt32BE(4 * i));
const ascii = fc.string({ unit: fc.integer({ min: 0, max: 127 }).map((c) => String.fromCharCode(c)), maxLength: 300 });

describe('SHA-256 in JavaScript', () => {
  it('equals node:crypto on the standard vectors and every length across block edges', () => {
    const out = new Int32Array(8);
    for (const text of ['', 'abc', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq']) {
      sha256Ascii(text, out);
      expect([...out]).toEqual(words(createHash('sha256').update(text).digest()));
    }
    for (let n = 0; n <= 200; n++) {
      const text = 'k'.repeat(n);
      sha256Ascii(text, out);
      expect([...out], `length ${n}`).toEqual(words(createHash('sha256').update(text).digest()));
    }
  });

  it('equals node:crypto on random ASCII (property)', () => {
    const out = new Int32Array(8);
    fc.assert(
      fc.property(ascii, (text) => {
        sha256Ascii(text, out);
        expect([...out]).toEqual(words(createHash('sha256').update(text).digest()));
      }),
      { numRuns: 1000 },
    );
  });

  it('computes HMAC-SHA-256 like node:crypto, for short and long keys (property)', () => {
    const out = new Int32Array(8);
    const keys = fc.oneof(
      fc.string({ minLength: 1, maxLength: 150 }),
      fc.uint8Array({ minLength: 1, maxLength: 150 }).map((a) => Buffer.from(a)),
    );
    fc.assert(
      fc.property(keys, ascii, (key, text) => {
        hmacSha256Ascii(hmacKey(key), text, out);
        expect([...out]).toEqual(words(createHmac('sha256', key).update(text).digest()));
      }),
      { numRuns: 500 },
    );
  });

  it('reads only well-formed 32-byte base64url digests', () => {
    const d = createHash('sha256').update('x').digest();
    expect(Buffer.from(digestBytes(d.toString('base64url'))!, 'latin1').equals(d)).toBe(true);
    expect(digestBytes('')).toBeNull();
    expect(digestBytes(d.subarray(0, 31).toString('base64url'))).toBeNull();
    expect(digestBytes(`${d.toString('base64url')}A`)).toBeNull();
  });

  it('lets the hasher match keys, with and without a pepper, ASCII or not', () => {
    for (const pepper of [undefined, 'a-pepper-of-some-length-0123']) {
      const hasher = createHasher(pepper);
      for (const key of ['till_abc', 'ünïcödé key']) {
        const expected = digestBytes(hasher.digest(key))!;
        expect(hasher.matches(key, hasher.algorithm, expected)).toBe(true);
        expect(hasher.matches(`${key}x`, hasher.algorithm, expected)).toBe(false);
        // Any one byte of the stored digest changed (high bits too) is a mismatch.
        for (const at of [0, 3, 4, 17, 31]) {
          for (const flip of [0x01, 0x80]) {
            const changed = expected.slice(0, at) + String.fromCharCode(expected.charCodeAt(at) ^ flip) + expected.slice(at + 1);
            expect(hasher.matches(key, hasher.algorithm, changed)).toBe(false);
          }
        }
        expect(hasher.matches(key, hasher.algorithm, expected.slice(1))).toBe(false);
      }
    }
  });
});
