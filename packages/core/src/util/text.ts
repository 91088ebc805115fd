// Text that people and scripts read: what may be stored, and how what is shown, logged or sent is escaped.
import { tillError } from '../errors.js';

/**
 * Characters that make text read as something it is not, or drive a terminal or a log: controls (C0,
 * DEL, C1 U+0080..U+009F), format characters (Unicode category Cf: the bidi controls U+202A..U+202E,
 * U+2066..U+2069, U+200E/U+200F, U+061C, the zero-width ones, U+FEFF, ...), the line and paragraph
 * separators U+2028/U+2029 and lone surrogates.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u;
const UNSAFE_ALL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/gu;
/** The same less C0 (JSON.stringify escapes those in strings, and writes its own newlines between them). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\p{Cf}\p{Cs}\u2028\u2029]/gu;

/** True when `text` holds none of the characters above: "admin" then reads as what it is. */
export function isSafeText(text: string): boolean {
  return !UNSAFE.test(text);
}

/**
 * Returns `value` when it is a string without those characters; else throws `INVALID_ARGUMENT`
 * naming `field` (for a name, an owner, an actor, a reason: text that is stored and shown later).
 */
export function safeText(value: unknown, field: string, where = 'keys'): string {
  if (typeof value !== 'string' || !isSafeText(value)) {
    throw tillError('INVALID_ARGUMENT', where, `${field} must be a string without control, format (bidi, zero-width) or line-separator characters`);
  }
  return value;
}

/** Each UTF-16 unit of `c` as `\uXXXX`: what JSON and JavaScript read back as the same character. */
function escapeUnits(c: string): string {
  let out = '';
  for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return out;
}

/**
 * Text as it may be printed, logged or sent: each of those characters written as `\uXXXX`, so a
 * newline, an ANSI escape or a right-to-left override is shown, never obeyed. Everything else is kept.
 */
export function escapeText(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeUnits) : text;
}

/**
 * `JSON.stringify` that also writes those characters as `\uXXXX` (it leaves C1, bidi and zero-width
 * characters raw): the same document, readable by any JSON parser, that cannot drive a terminal.
 */
export function safeJson(value: unknown, space?: number): string {
  const text = JSON.stringify(value, null, space);
  // JSON.stringify escapes C0 in strings, so a raw newline is layout; outside strings JSON has only
  // ASCII, and inside them an escape means the same character.
  return text === undefined ? text : text.replace(UNSAFE_IN_JSON, escapeUnits);
}
