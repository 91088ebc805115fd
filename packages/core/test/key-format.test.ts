import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BASE62, encodeBase62, randomBase62 } from '../src/key/base62.js';
import { generateKey, isValidKeyId, isValidPrefix, KEY_PATTERN, MAX_KEY_LENGTH, parseKey } from '../src/key/format.js';
import { TillError } from '../src/errors.js';

describe('key check', () => {
  // Keys issued before the check moved to node:zlib's crc32: the format must keep accepting them.
  const ISSUED = [
    { key: 'sk_live_mGzUgJuPLjgLFLAVwn2UqkRa2XTWtjP67YS4Ra3UUHG1', prefix: 'sk_live', id: 'mGzUgJuPLjgLFLAV' },
    { key: 'till_G14KaJi9Oycu6YLdC6Nl4bEmueMO1WAbun6eng4bmhJl', prefix: 'till', id: 'G14KaJi9Oycu6YLd' },
  ];

  it('accepts keys issued by earlier versions', () => {
    for (const { key, prefix, id } of ISSUED) expect(parseKey(key)).toEqual({ ok: true, prefix, id });
  });

  it('refuses any one character of those keys changed', () => {
    for (const { key } of ISSUED) {
      for (let i = key.length - 44; i < key.length; i++) {
        const swapped = key.slice(0, i) + (key[i] === 'A' ? 'B' : 'A') + key.slice(i + 1);
        expect(parseKey(swapped)).toEqual({ ok: false, reason: 'BAD_CHECKSUM' });
      }
    }
  });
});

describe('base62', () => {
  it('draws only base62 characters, about uniformly', () => {
    const text = randomBase62(62_000);
    expect(text).toMatch(/^[0-9A-Za-z]+$/);
    const counts = new Map<string, number>();
    for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const n of counts.values()) expect(n).toBeGreaterThan(800); // expected 1000 each
  });
  it('encodes fixed width', () => {
    expect(encodeBase62(0, 6)).toBe('000000');
    expect(encodeBase62(61, 2)).toBe('0z');
    expect(encodeBase62(0xffffffff, 6)).toHaveLength(6);
    expect(BASE62).toHaveLength(62);
  });
});

describe('generateKey', () => {
  it('makes keys of the published shape that parse back to their id', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const { key, id, prefix } = generateKey('sk_live');
      expect(prefix).toBe('sk_live');
      expect(key).toMatch(/^sk_live_[0-9A-Za-z]{44}$/);
      expect(key.length).toBeLessThanOrEqual(MAX_KEY_LENGTH);
      expect(isValidKeyId(id)).toBe(true);
      expect(parseKey(key)).toEqual({ ok: true, prefix: 'sk_live', id });
      seen.add(key);
    }
    expect(seen.size).toBe(500);
  });

  it('is found by KEY_PATTERN inside text, whole', () => {
    const { key } = generateKey('till_test');
    const text = `config = "${key}"\nother=${key}.`;
    expect([...text.matchAll(KEY_PATTERN)].map((m) => m[0])).toEqual([key, key]);
  });

  it('refuses bad prefixes', () => {
    for (const bad of ['', 'Sk', '1abc', 'a__b', 'a_', '_a', 'a-b', 'x'.repeat(33)]) {
      expect(isValidPrefix(bad)).toBe(false);
      expect(() => generateKey(bad)).toThrow(TillError);
    }
    expect(isValidPrefix('sk_live')).toBe(true);
  });
});

describe('parseKey', () => {
  const { key, id } = generateKey('sk_test');

  it('never throws, whatever it is given', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const result = parseKey(value);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
    // Whatever parses is a whole match of the published pattern.
    const whole = new RegExp(`^(?:${KEY_PATTERN.source})$`);
    const keyish = fc.oneof(fc.string({ maxLength: 90 }), fc.constant(generateKey('a').key), fc.constant(generateKey('sk_live').key));
    fc.assert(
      fc.property(keyish, (s) => !parseKey(s).ok || whole.test(s)),
      { numRuns: 2000 },
    );
  });

  it('names why a string is not a key', () => {
    expect(parseKey('')).toEqual({ ok: false, reason: 'EMPTY' });
    expect(parseKey(undefined)).toEqual({ ok: false, reason: 'EMPTY' });
    expect(parseKey(42)).toEqual({ ok: false, reason: 'EMPTY' });
    expect(parseKey('x'.repeat(MAX_KEY_LENGTH + 1))).toEqual({ ok: false, reason: 'TOO_LONG' });
    expect(parseKey('hello')).toEqual({ ok: false, reason: 'BAD_FORMAT' });
    expect(parseKey(key.replace('sk_test_', 'sk_test-'))).toEqual({ ok: false, reason: 'BAD_FORMAT' });
    expect(parseKey(key.replace('sk_test_', 'SK_test_'))).toEqual({ ok: false, reason: 'BAD_FORMAT' });
    expect(parseKey(`${key.slice(0, -1)}!`)).toEqual({ ok: false, reason: 'BAD_FORMAT' });
    expect(parseKey(`_${key.slice(8)}`)).toEqual({ ok: false, reason: 'BAD_FORMAT' });
    expect(parseKey(key)).toEqual({ ok: true, prefix: 'sk_test', id });
  });

  it('rejects every single-character typo by its check', () => {
    for (let i = 0; i < key.length; i++) {
      if (key[i] === '_') continue;
      const replacement = key[i] === 'a' ? 'b' : 'a';
      const typo = key.slice(0, i) + replacement + key.slice(i + 1);
      expect(parseKey(typo).ok).toBe(false);
    }
  });

  it('rejects random key-shaped noise by its check (property)', () => {
    const body = fc.string({ unit: fc.constantFrom(...BASE62), minLength: 44, maxLength: 44 });
    fc.assert(
      fc.property(body, (b) => {
        expect(parseKey(`sk_test_${b}`).ok).toBe(false);
      }),
      { numRuns: 3000 },
    );
  });
});
