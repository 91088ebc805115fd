// The digest comparison reads every byte of the stored digest, wherever the first difference is:
// a white-box check of KeyHasher.matches() with an `expected` that counts what is read of it.
import { describe, expect, it } from 'vitest';
import { createHasher, type HashAlgorithm } from '../src/key/hash.js';
import { generateKey } from '../src/key/format.js';

/** Mimics the 32-char latin1 string matches() is given, counting the reads of each position. */
function countingDigest(bytes: readonly number[]): { expected: string; reads: number[] } {
  const reads = new Array<number>(bytes.length).fill(0);
  const expected = {
    length: bytes.length,
    charCodeAt(i: number): number {
      reads[i] = (reads[i] ?? 0) + 1;
      return bytes[i] ?? Number.NaN;
    },
  };
  return { expected: expected as unknown as string, reads };
}

const ALL = Array.from({ length: 32 }, (_, i) => i);

describe('digest comparison in constant time', () => {
  const pepper = 'a-pepper-of-32-characters-length';
  for (const [algorithm, hasher] of [
    ['sha256', createHasher()],
    ['hmac-sha256', createHasher(pepper)],
  ] as Array<[HashAlgorithm, ReturnType<typeof createHasher>]>) {
    describe(algorithm, () => {
      const { key } = generateKey('till');
      const right = [...Buffer.from(hasher.digest(key, algorithm), 'base64url')];

      it('reads all 32 bytes of the stored digest for a full match, and matches', () => {
        expect(right).toHaveLength(32);
        const { expected, reads } = countingDigest(right);
        expect(hasher.matches(key, algorithm, expected)).toBe(true);
        // Which positions were left unread (none): printed as positions, never as bytes.
        expect(ALL.filter((i) => reads[i] === 0)).toEqual([]);
      });

      for (const first of [0, 15, 31]) {
        it(`reads all 32 bytes when the first difference is at byte ${first}, and refuses`, () => {
          const wrong = [...right];
          wrong[first] = wrong[first]! ^ 0x01;
          const { expected, reads } = countingDigest(wrong);
          expect(hasher.matches(key, algorithm, expected)).toBe(false);
          expect(ALL.filter((i) => reads[i] === 0)).toEqual([]);
          // And the same reads as a match: nothing depends on where the difference is.
          const match = countingDigest(right);
          hasher.matches(key, algorithm, match.expected);
          expect(reads).toEqual(match.reads);
        });
      }

      it('refuses a digest of the wrong length', () => {
        for (const length of [0, 31, 33, 44]) {
          const bytes = Array.from({ length }, (_, i) => right[i % 32]!);
          expect(hasher.matches(key, algorithm, countingDigest(bytes).expected), `length ${length}`).toBe(false);
        }
        // A 33-byte digest that begins with the right 32 bytes is no match either.
        expect(hasher.matches(key, algorithm, countingDigest([...right, 0]).expected)).toBe(false);
      });
    });
  }
});
