// Finding the key in request headers: Bearer and X-API-Key by default, a length cap before any work.
import { tillError } from '../errors.js';

/** Where a key may be sent: a header, optionally with an auth scheme (`Authorization: Bearer <key>`). */
export interface KeySource {
  /** Header name, any case. */
  header: string;
  /** Auth scheme in front of the key, compared case-insensitively. */
  scheme?: string;
}

export const DEFAULT_SOURCES: readonly KeySource[] = Object.freeze([
  Object.freeze({ header: 'authorization', scheme: 'Bearer' }),
  Object.freeze({ header: 'x-api-key' }),
]);

/** Header values longer than this are rejected unread. A key is at most 77 characters. */
export const DEFAULT_MAX_HEADER_LENGTH = 512;

/** Node's header bag: lowercase names, a string (or, for a few, an array). */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

export type Extraction = { readonly found: true; readonly key: string } | { readonly found: false; readonly code: 'MISSING' | 'MALFORMED' };

const MISSING: Extraction = Object.freeze({ found: false, code: 'MISSING' });
const MALFORMED: Extraction = Object.freeze({ found: false, code: 'MALFORMED' });

interface CompiledSource {
  readonly header: string;
  /** `bearer ` in lowercase with its space, or null. */
  readonly scheme: string | null;
  /**
   * The character codes of the scheme as the option spells it (`Bearer `), as clients send it: compared
   * without a fold per character, and without a call to startsWith (a builtin call costs more than these
   * few reads).
   */
  readonly spelled: readonly number[] | null;
}

export interface KeyExtractor {
  (headers: HeaderBag): Extraction;
  readonly sources: readonly KeySource[];
  /** The same answer without an object: the key, or `NO_KEY` (missing) or `BAD_KEY` (malformed). */
  readonly scan: (headers: HeaderBag) => string | typeof NO_KEY | typeof BAD_KEY;
  /**
   * Where the last key `scan` returned lies: in `text` (the header value it was cut from) from `at`. The
   * key itself is a slice of that value, which V8 reads through an indirection at every character;
   * the verifier's constant-time comparison reads the value itself (Verifier.verifyIn). Overwritten by
   * the next scan: read it at once.
   */
  readonly origin: { text: string; at: number };
}

/** `scan()` found no key. */
export const NO_KEY = 0;
/** `scan()` found a malformed header, or two different keys. */
export const BAD_KEY = 1;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Whether `value` begins with the characters of `codes`. */
function startsWithCodes(value: string, codes: readonly number[]): boolean {
  if (value.length < codes.length) return false;
  for (let i = 0; i < codes.length; i++) if (value.charCodeAt(i) !== codes[i]) return false;
  return true;
}

/** Whether the first `n` characters of `value` equal `lower`'s, ignoring ASCII case, without allocating. */
function startsWithLower(value: string, lower: string, n: number): boolean {
  if (value.length < n) return false;
  for (let i = 0; i < n; i++) {
    let c = value.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * `value` from `from`, trimmed as String.prototype.trim trims it: without a call to trim when both ends
 * are printable ASCII (never whitespace), as they are in nearly every request.
 */
function trimmedFrom(value: string, from: number): string {
  const first = value.charCodeAt(from);
  const last = value.charCodeAt(value.length - 1);
  if (first >= 33 && first <= 126 && last >= 33 && last <= 126) return from === 0 ? value : value.slice(from);
  return value.slice(from).trim();
}

/** Compiles header sources once (at middleware creation) into a function run per request. */
export function createExtractor(sources: readonly KeySource[] = DEFAULT_SOURCES, maxHeaderLength = DEFAULT_MAX_HEADER_LENGTH): KeyExtractor {
  if (!Array.isArray(sources) || sources.length === 0) {
    throw tillError('INVALID_OPTIONS', 'extract', 'sources must be a non-empty array of { header, scheme? }');
  }
  if (!Number.isInteger(maxHeaderLength) || maxHeaderLength < 16) {
    throw tillError('INVALID_OPTIONS', 'extract', 'maxHeaderLength must be an integer of at least 16');
  }
  const compiled: CompiledSource[] = sources.map((s, i) => {
    if (!s || typeof s.header !== 'string' || !HEADER_NAME.test(s.header)) {
      throw tillError('INVALID_OPTIONS', 'extract', `sources[${i}].header must be a header name`);
    }
    if (s.scheme !== undefined && (typeof s.scheme !== 'string' || !HEADER_NAME.test(s.scheme))) {
      throw tillError('INVALID_OPTIONS', 'extract', `sources[${i}].scheme must be a token like "Bearer"`);
    }
    return {
      header: s.header.toLowerCase(),
      scheme: s.scheme ? `${s.scheme.toLowerCase()} ` : null,
      spelled: s.scheme ? [...`${s.scheme} `].map((c) => c.charCodeAt(0)) : null,
    };
  });

  const origin = { text: '', at: 0 };
  const scan = (headers: HeaderBag): string | typeof NO_KEY | typeof BAD_KEY => {
    let key: string | undefined;
    for (let i = 0; i < compiled.length; i++) {
      const source = compiled[i]!;
      let value = headers[source.header];
      if (value === undefined) continue;
      if (typeof value !== 'string') {
        // Repeated headers that Node keeps as a list: two different values are two keys.
        if (!Array.isArray(value)) return BAD_KEY;
        if (value.length === 0) continue;
        if (typeof value[0] !== 'string') return BAD_KEY;
        for (let j = 1; j < value.length; j++) if (value[j] !== value[0]) return BAD_KEY;
        value = value[0] as string;
      }
      if (value.length > maxHeaderLength) return BAD_KEY;
      let token: string;
      if (source.scheme !== null) {
        const scheme = source.scheme;
        if (!startsWithCodes(value, source.spelled!) && !startsWithLower(value, scheme, scheme.length)) {
          // The scheme alone (servers strip the trailing space of `Bearer `) is an empty token. Only
          // HTTP's own whitespace (space, tab) is stripped: `Bearer` and a no-break space is not it.
          const bare = value.replace(/^[ \t]+|[ \t]+$/g, '');
          if (bare.length === scheme.length - 1 && startsWithLower(bare, scheme, bare.length)) return BAD_KEY;
          // A header in another scheme (Basic, ...) is not ours to judge: keep looking.
          continue;
        }
        token = trimmedFrom(value, scheme.length);
        if (token.length === 0) return BAD_KEY;
      } else {
        token = trimmedFrom(value, 0);
        if (token.length === 0) continue;
      }
      if (key !== undefined && key !== token) return BAD_KEY;
      key = token;
      // The value and the key's place in it when nothing was trimmed around the key (the usual case).
      const at = value.length - token.length;
      const exact = source.scheme === null ? at === 0 : at === source.scheme.length;
      origin.text = exact ? value : token;
      origin.at = exact ? at : 0;
    }
    return key === undefined ? NO_KEY : key;
  };
  const extract = (headers: HeaderBag): Extraction => {
    const found = scan(headers);
    return typeof found === 'string' ? { found: true, key: found } : found === NO_KEY ? MISSING : MALFORMED;
  };
  return Object.assign(extract, { scan, origin, sources: Object.freeze(sources.map((s) => Object.freeze({ ...s }))) });
}
