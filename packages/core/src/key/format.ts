// The key format `<prefix>_<id><secret><check>`: generation and a parser that never throws.
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { BASE62, base62Digit, encodeBase62, randomBase62 } from './base62.js';
import { keySlot } from '../util/cluster-slot.js';
export { keySlot };
import { tillError } from '../errors.js';

/** Length of the public id, in base62 characters (about 95 bits: collisions are not a concern). */
export const ID_LENGTH = 16;
/** Length of the secret: 22 base62 characters carry 130.9 bits, above the 128 the design asks. */
export const SECRET_LENGTH = 22;
/** Length of the check: CRC-32 fits in 6 base62 characters (62^6 > 2^32). */
export const CHECK_LENGTH = 6;
/** Characters after the prefix's underscore. */
export const BODY_LENGTH = ID_LENGTH + SECRET_LENGTH + CHECK_LENGTH;
export const MAX_PREFIX_LENGTH = 32;
/** Longest string that can be a key at all: anything longer is rejected before any work. */
export const MAX_KEY_LENGTH = MAX_PREFIX_LENGTH + 1 + BODY_LENGTH;

const PREFIX_RE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;

/**
 * Matches a Till key anywhere in text (for secret scanners). A match is a candidate until its
 * check passes (`parseKey`); the check rejects all but about one in four billion look-alikes.
 */
export const KEY_PATTERN = /\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9A-Za-z]{44}\b/g;

export function isValidPrefix(prefix: unknown): prefix is string {
  return typeof prefix === 'string' && prefix.length <= MAX_PREFIX_LENGTH && PREFIX_RE.test(prefix);
}

export function assertValidPrefix(prefix: unknown, where: string): asserts prefix is string {
  if (!isValidPrefix(prefix)) {
    throw tillError(
      'INVALID_OPTIONS',
      where,
      `prefix must be 1-${MAX_PREFIX_LENGTH} characters of a-z, 0-9 and single inner underscores, starting with a letter (like "sk_live")`,
    );
  }
}

export interface GeneratedKey {
  /** The full key: shown once to its holder, never stored. */
  readonly key: string;
  readonly prefix: string;
  readonly id: string;
}

/** Most ids drawn looking for one in a given slot (about 16,384 are needed on average). */
const MAX_SLOT_DRAWS = 1_000_000;

/** A random id in `slot`: candidates cut from bulk random bytes (one CSPRNG call per 64 KiB, not per id). */
function randomIdInSlot(slot: number): string {
  let draws = 0;
  for (;;) {
    const bytes = randomBytes(65_536);
    let id = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (b >= 248) continue; // as randomBase62: every character equally likely
      id += BASE62[b % 62];
      if (id.length < ID_LENGTH) continue;
      if (keySlot(id) === slot) return id;
      if (++draws >= MAX_SLOT_DRAWS) throw tillError('INVALID_ARGUMENT', 'keys', `no key id found in slot ${slot}`);
      id = '';
    }
  }
}

/**
 * A new random key with the given prefix; with `slot`, its id is drawn until it falls in that Cluster
 * slot (the keys of a rotation chain share one, so one script charges their shared credits). Only the
 * public id is constrained, about 14 of its 95 bits; the secret is drawn apart and stays whole.
 */
export function generateKey(prefix: string, slot?: number): GeneratedKey {
  assertValidPrefix(prefix, 'generateKey');
  const id = slot === undefined ? randomBase62(ID_LENGTH) : randomIdInSlot(slot);
  const head = `${prefix}_${id}${randomBase62(SECRET_LENGTH)}`;
  return { key: head + encodeBase62(crc32(head), CHECK_LENGTH), prefix, id };
}

export type ParseFailureReason = 'EMPTY' | 'TOO_LONG' | 'BAD_FORMAT' | 'BAD_CHECKSUM';

export type ParsedKey = { readonly ok: true; readonly prefix: string; readonly id: string } | { readonly ok: false; readonly reason: ParseFailureReason };

const EMPTY: ParsedKey = Object.freeze({ ok: false, reason: 'EMPTY' });
const TOO_LONG: ParsedKey = Object.freeze({ ok: false, reason: 'TOO_LONG' });
const BAD_FORMAT: ParsedKey = Object.freeze({ ok: false, reason: 'BAD_FORMAT' });
const BAD_CHECKSUM: ParsedKey = Object.freeze({ ok: false, reason: 'BAD_CHECKSUM' });

/**
 * Splits a key into prefix and id after checking its shape and CRC-32. Takes any value and
 * never throws: bad input is a typed failure. Touches no store.
 */
export function parseKey(input: unknown): ParsedKey {
  if (typeof input !== 'string' || input.length === 0) return EMPTY;
  if (input.length > MAX_KEY_LENGTH) return TOO_LONG;
  const bodyStart = input.length - BODY_LENGTH;
  // The prefix needs at least one character, then the separating underscore.
  if (bodyStart < 2 || input.charCodeAt(bodyStart - 1) !== 95 /* _ */) return BAD_FORMAT;
  let check = 0;
  for (let i = bodyStart; i < input.length; i++) {
    const d = base62Digit(input.charCodeAt(i));
    if (d < 0) return BAD_FORMAT;
    if (i >= input.length - CHECK_LENGTH) check = check * 62 + d;
  }
  if (!isPrefixAt(input, bodyStart - 1)) return BAD_FORMAT;
  // The check is CRC-32 (IEEE, the zlib one) of the ASCII text before it.
  if (crc32(input.slice(0, input.length - CHECK_LENGTH)) !== check) return BAD_CHECKSUM;
  return { ok: true, prefix: input.slice(0, bodyStart - 1), id: input.slice(bodyStart, bodyStart + ID_LENGTH) };
}

/** PREFIX_RE on `text.slice(0, end)` without making the slice: parseKey runs on every request. */
function isPrefixAt(text: string, end: number): boolean {
  if (end > MAX_PREFIX_LENGTH) return false;
  const first = text.charCodeAt(0);
  if (first < 97 || first > 122) return false;
  let previousUnderscore = false;
  for (let i = 1; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 95) {
      if (previousUnderscore) return false;
      previousUnderscore = true;
    } else if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57)) {
      previousUnderscore = false;
    } else {
      return false;
    }
  }
  return !previousUnderscore;
}

/** Whether a string is a valid key id (as printed by the CLI and logs). */
export function isValidKeyId(id: unknown): id is string {
  if (typeof id !== 'string' || id.length !== ID_LENGTH) return false;
  for (let i = 0; i < id.length; i++) if (base62Digit(id.charCodeAt(i)) < 0) return false;
  return true;
}
