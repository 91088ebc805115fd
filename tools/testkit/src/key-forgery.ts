// Keys an attacker can make without knowing a secret: the right shape and a valid check, or a wrong check.
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { generateKey, ID_LENGTH } from '@till/core';
import { CHECK_LENGTH, SECRET_LENGTH } from '../../../packages/core/src/key/format.js';
import { encodeBase62 } from '../../../packages/core/src/key/base62.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function randomText(length: number): string {
  return Array.from(randomBytes(length), (b) => BASE62[b % 62]).join('');
}

/** A well-formed key (valid check) that no one issued. */
export function madeUpKey(prefix = 'till'): string {
  return generateKey(prefix).key;
}

/** The id of a real key with another secret and a valid check: reaches the store, fails the digest. */
export function wrongSecretKey(key: string): string {
  const head = key.slice(0, key.length - SECRET_LENGTH - CHECK_LENGTH) + randomText(SECRET_LENGTH);
  return head + encodeBase62(crc32(head), CHECK_LENGTH);
}

/** A key of the right shape whose check does not match: refused before any store read. */
export function badCheckKey(key: string): string {
  const last = key[key.length - 1]!;
  return key.slice(0, -1) + (last === '0' ? '1' : '0');
}

/** The public id of a key (what may be printed). */
export function idOf(key: string): string {
  const start = key.length - SECRET_LENGTH - CHECK_LENGTH - ID_LENGTH;
  return key.slice(start, start + ID_LENGTH);
}
