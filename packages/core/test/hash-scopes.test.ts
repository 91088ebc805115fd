import { describe, expect, it } from 'vitest';
import { createHasher, digestBytes } from '../src/key/hash.js';
import { TillError } from '../src/errors.js';
import { isValidGrant, isValidScope, normalizeGrants, normalizeRequired, ScopeSet, scopesSatisfy } from '../src/verify/scopes.js';
import { createHash, createHmac } from 'node:crypto';

describe('hashing', () => {
  const key = 'till_0123456789abcdefXXXXXXXXXXXXXXXXXXXXXX000000';

  it('is SHA-256 of the key without a pepper', () => {
    const hasher = createHasher();
    expect(hasher.algorithm).toBe('sha256');
    expect(hasher.digest(key)).toBe(createHash('sha256').update(key).digest('base64url'));
  });

  it('is HMAC-SHA-256 with a pepper, and still reads SHA-256 records', () => {
    const pepper = 'a-pepper-of-32-characters-length';
    const hasher = createHasher(pepper);
    expect(hasher.algorithm).toBe('hmac-sha256');
    expect(hasher.digest(key)).toBe(createHmac('sha256', pepper).update(key).digest('base64url'));
    expect(hasher.digest(key, 'sha256')).toBe(createHash('sha256').update(key).digest('base64url'));
  });

  it('refuses short or mistyped peppers, and HMAC records without a pepper', () => {
    expect(() => createHasher('short')).toThrow(TillError);
    expect(() => createHasher(42 as unknown as string)).toThrow(/pepper/);
    expect(() => createHasher().digest(key, 'hmac-sha256')).toThrow(/no pepper/);
  });

  it('matches a key against a stored digest: equal, one character off, or truncated', () => {
    const hasher = createHasher();
    const words = digestBytes(hasher.digest(key))!;
    expect(hasher.matches(key, 'sha256', words)).toBe(true);
    expect(hasher.matches(`${key}x`, 'sha256', words)).toBe(false);
    expect(hasher.matches(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`, 'sha256', words)).toBe(false);
    expect(digestBytes(hasher.digest(key).slice(0, 16))).toBeNull();
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

describe('scopes', () => {
  it('validates required scopes and grants', () => {
    expect(isValidScope('users:read')).toBe(true);
    expect(isValidScope('a.b-c_d:e')).toBe(true);
    for (const bad of ['', '*', 'users:*', 'a::b', ':a', 'a b', 'a:', 'ü', 'x'.repeat(129), 3]) expect(isValidScope(bad)).toBe(false);
    expect(isValidGrant('*')).toBe(true);
    expect(isValidGrant('users:*')).toBe(true);
    for (const bad of ['**', 'users*', '*:read', 'a:*:b', '']) expect(isValidGrant(bad)).toBe(false);
  });

  it('normalizes grants and names the bad one', () => {
    expect(normalizeGrants(['b', 'a', 'b'], 'x')).toEqual(['a', 'b']);
    expect(() => normalizeGrants('a', 'x')).toThrow(/array/);
    expect(() => normalizeGrants(['ok', 'not ok'], 'x')).toThrow(/"not ok"/);
    expect(() => normalizeRequired([], 'x')).toThrow(/at least one/);
    expect(() => normalizeRequired(['users:*'], 'x')).toThrow(/concrete/);
  });

  it('matches wildcards on the key side only', () => {
    const set = new ScopeSet(['users:*', 'reports:read']);
    expect(set.has('users:read')).toBe(true);
    expect(set.has('users:write:all')).toBe(true);
    expect(set.has('users')).toBe(false);
    expect(set.has('usersx:read')).toBe(false);
    expect(set.has('reports:read')).toBe(true);
    expect(set.has('reports:write')).toBe(false);
    expect(new ScopeSet(['*']).has('anything:at:all')).toBe(true);
    expect(scopesSatisfy(['a', 'b'], ['a', 'b'])).toBe(true);
    expect(scopesSatisfy(['a'], ['a', 'b'])).toBe(false);
    expect(scopesSatisfy(['a'], ['a', 'b'], 'any')).toBe(true);
    expect(scopesSatisfy([], ['a'], 'any')).toBe(false);
  });

  it('scopesSatisfy refuses a mode other than all or any, rather than reading it as any', () => {
    for (const mode of ['ALL', 'every', '', 'any ', null, 1]) {
      expect(() => scopesSatisfy(['a'], ['a', 'b'], mode as never)).toThrow(/mode must be "all" or "any"/);
    }
  });
});
