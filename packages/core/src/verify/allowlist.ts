// IP allowlists: CIDR ranges (IPv4, IPv6, IPv4-mapped IPv6) parsed once when a key is written, compiled
// once when it is cached, and matched against the client address of a request without a store call.
// One file because the ranges a key is given and the addresses requests come from are one grammar, read
// by the same IPv4 and IPv6 readers, and the matcher reads the words the address reader leaves behind.
import { tillError } from '../errors.js';
import { ipv6Text } from '../util/ipv6-text.js';

/** Most ranges in one allowlist: a list longer than this is a firewall's job, not a key's. */
export const MAX_ALLOWED_IPS = 256;

/** Longest text of one range accepted (an IPv6 address with an IPv4 tail and a prefix is 49). */
const MAX_RANGE_LENGTH = 64;

/** One range, parsed: an IPv4 range (one word) or an IPv6 range (four words), network and mask. */
export interface Cidr {
  readonly family: 4 | 6;
  /** The network as 32-bit words (unsigned, as numbers), 1 for IPv4, 4 for IPv6, host bits zero. */
  readonly words: readonly number[];
  /** Prefix length: 0-32 for IPv4, 0-128 for IPv6. */
  readonly bits: number;
  /** Canonical text: `203.0.113.0/24`, `2001:db8::/32` (RFC 5952), an IPv4-mapped range as IPv4. */
  readonly text: string;
}

/**
 * A compiled allowlist: the ranges as flat typed arrays, scanned with integer compares. `v4` holds
 * (network, mask) pairs; `v6` holds (4 network words, 4 mask words) per range. Both as int32.
 */
export interface IpAllowlist {
  readonly v4: Int32Array;
  readonly v6: Int32Array;
  /** The ranges as canonical text, in the order given. */
  readonly ranges: readonly string[];
}

/** The error for a text that is not a range. Echoes at most a short slice of the input. */
function invalid(text: string, why: string): Error {
  return tillError('INVALID_ARGUMENT', 'keys', `invalid IP range ${JSON.stringify(text.slice(0, MAX_RANGE_LENGTH))}: ${why}`);
}

/** The address parsed last, as four words (an IPv4 address in [3], with the IPv4-mapped prefix in [2]). */
const scratch = new Int32Array(4);

/**
 * Parses a dotted IPv4 address in `text[from, to)` into a 32-bit word (as int32), or returns null.
 * Four decimal parts 0-255, no leading zeros (`010` is octal to some parsers and decimal to others).
 */
function ipv4Word(text: string, from: number, to: number): number | null {
  let word = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return null;
      word = (word << 8) | part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return null;
      part = part * 10 + (c - 48);
      if (part > 255) return null;
      digits++;
    } else {
      return null;
    }
  }
  if (digits === 0 || dots !== 3) return null;
  return (word << 8) | part;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Where readIpv6 leaves the eight groups it read: written in place, so reading an address allocates nothing. */
const groupBuffer = new Int32Array(8);

/**
 * Reads an IPv6 address in `text[from, to)` into groupBuffer (an IPv4 tail counts as two groups; `::`
 * stands for one or more zero groups); false when it is not one.
 */
function readIpv6(text: string, from: number, to: number): boolean {
  const out = groupBuffer;
  let n = 0;
  let gapAt = -1;
  let i = from;
  if (text.charCodeAt(i) === 58 /* : */) {
    if (text.charCodeAt(i + 1) !== 58) return false;
    gapAt = 0;
    i += 2;
    if (i === to) {
      out.fill(0);
      return true;
    }
  }
  for (;;) {
    // One group, or an IPv4 tail.
    let value = 0;
    let digits = 0;
    let j = i;
    while (j < to) {
      const h = hexValue(text.charCodeAt(j));
      if (h < 0) break;
      value = (value << 4) | h;
      digits++;
      j++;
    }
    if (j < to && text.charCodeAt(j) === 46 /* . */) {
      if (n > 6) return false;
      const word = ipv4Word(text, i, to);
      if (word === null) return false;
      out[n++] = (word >>> 16) & 0xffff;
      out[n++] = word & 0xffff;
      break;
    }
    if (digits === 0 || digits > 4 || n === 8) return false;
    out[n++] = value;
    if (j === to) break;
    if (text.charCodeAt(j) !== 58) return false;
    if (text.charCodeAt(j + 1) === 58) {
      if (gapAt >= 0) return false;
      gapAt = n;
      i = j + 2;
      if (i === to) break;
    } else {
      i = j + 1;
      if (i === to) return false;
    }
  }
  if (gapAt < 0) return n === 8;
  if (n > 7) return false;
  // The groups after the gap move to the end; the gap becomes zeros.
  const tail = n - gapAt;
  for (let k = 0; k < tail; k++) out[7 - k] = out[n - 1 - k]!;
  for (let k = gapAt; k < 8 - tail; k++) out[k] = 0;
  return true;
}

/** The eight 16-bit groups of an IPv6 address in `text[from, to)`, as a new array, or null. */
function ipv6Groups(text: string, from: number, to: number): number[] | null {
  return readIpv6(text, from, to) ? Array.from(groupBuffer) : null;
}

/**
 * Reads a client address into `scratch`: 4 for IPv4 (also an IPv4-mapped IPv6 address, `::ffff:a.b.c.d`
 * or `::ffff:c000:201`, which Node gives for IPv4 clients of a dual-stack server), 6 for IPv6 (a zone,
 * `%eth0`, is dropped), 0 for anything else. An IPv4 address is also left in its mapped form.
 */
function readAddress(address: string): 0 | 4 | 6 {
  const n = address.length;
  if (n === 0 || n > 60) return 0;
  const v4 = n <= 15 ? ipv4Word(address, 0, n) : null;
  if (v4 !== null) {
    scratch[0] = 0;
    scratch[1] = 0;
    scratch[2] = 0xffff;
    scratch[3] = v4;
    return 4;
  }
  // `::ffff:a.b.c.d`, as Node gives an IPv4 client of a server listening on `::`: read without the IPv6 parser.
  if (n >= 14 && address.charCodeAt(0) === 58 && address.charCodeAt(1) === 58 && address.charCodeAt(6) === 58 && isFfff(address)) {
    const mapped = ipv4Word(address, 7, n);
    if (mapped !== null) {
      scratch[0] = 0;
      scratch[1] = 0;
      scratch[2] = 0xffff;
      scratch[3] = mapped;
      return 4;
    }
  }
  let end = address.indexOf('%');
  if (end === -1) end = n;
  if (end === 0 || address.indexOf(':') === -1) return 0;
  if (!readIpv6(address, 0, end)) return 0;
  const groups = groupBuffer;
  for (let k = 0; k < 4; k++) scratch[k] = (groups[2 * k]! << 16) | groups[2 * k + 1]!;
  return scratch[0] === 0 && scratch[1] === 0 && scratch[2] === 0xffff ? 4 : 6;
}

/** Whether characters 2-5 are `ffff`, in either case. */
function isFfff(text: string): boolean {
  return (text.charCodeAt(2) | 32) === 102 && (text.charCodeAt(3) | 32) === 102 && (text.charCodeAt(4) | 32) === 102 && (text.charCodeAt(5) | 32) === 102;
}

function maskWord(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? -1 : (-1 << (32 - bits)) | 0;
}

function ipv4Text(word: number): string {
  return `${(word >>> 24) & 255}.${(word >>> 16) & 255}.${(word >>> 8) & 255}.${word & 255}`;
}

/**
 * Parses one range: `203.0.113.0/24`, `2001:db8::/32`, a single address (`/32` or `/128` implied),
 * or an IPv4-mapped IPv6 range (`::ffff:192.0.2.0/120`, kept as the IPv4 range it maps, `192.0.2.0/24`).
 * A range with host bits set (`203.0.113.5/24`) is refused rather than widened: it is usually a typo,
 * and whoever wrote it meant either the address or the network. Throws INVALID_ARGUMENT.
 */
export function parseCidr(value: unknown): Cidr {
  if (typeof value !== 'string') throw tillError('INVALID_ARGUMENT', 'keys', `an IP range must be a string like "203.0.113.0/24" or "2001:db8::/32"`);
  const text = value.trim();
  if (text.length === 0 || text.length > MAX_RANGE_LENGTH) throw invalid(text, `expected an address or CIDR range of at most ${MAX_RANGE_LENGTH} characters`);
  const slash = text.indexOf('/');
  const end = slash === -1 ? text.length : slash;
  let bits: number | null = null;
  if (slash !== -1) {
    const digits = text.slice(slash + 1);
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(digits)) throw invalid(text, 'the prefix length after "/" must be a number without leading zeros');
    bits = Number(digits);
  }
  if (text.indexOf('%') !== -1) throw invalid(text, 'a zone (%...) names a link of one host, not a range');
  const v4 = ipv4Word(text, 0, end);
  if (v4 !== null) {
    const prefix = bits ?? 32;
    if (prefix > 32) throw invalid(text, 'an IPv4 prefix length is at most 32');
    return v4Range(v4, prefix, text);
  }
  const groups = text.indexOf(':') === -1 ? null : ipv6Groups(text, 0, end);
  if (groups === null) throw invalid(text, 'not an IPv4 or IPv6 address');
  const prefix = bits ?? 128;
  if (prefix > 128) throw invalid(text, 'an IPv6 prefix length is at most 128');
  const mapped = groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff;
  if (mapped && prefix >= 96) return v4Range(((groups[6]! << 16) | groups[7]!) >>> 0, prefix - 96, text);
  const words = [0, 1, 2, 3].map((k) => ((groups[2 * k]! << 16) | groups[2 * k + 1]!) >>> 0);
  for (let k = 0; k < 4; k++) {
    if ((words[k]! & ~maskWord(prefix - 32 * k)) !== 0) throw invalid(text, `host bits are set; the network of /${prefix} is ${networkText(words, prefix)}`);
  }
  return { family: 6, words, bits: prefix, text: `${ipv6Text(groups)}/${prefix}` };
}

function v4Range(word: number, prefix: number, text: string): Cidr {
  const network = (word & maskWord(prefix)) >>> 0;
  if (network !== word >>> 0) throw invalid(text, `host bits are set; the network of /${prefix} is ${ipv4Text(network)}/${prefix}`);
  return { family: 4, words: [network], bits: prefix, text: `${ipv4Text(network)}/${prefix}` };
}

function networkText(words: readonly number[], prefix: number): string {
  const groups: number[] = [];
  for (let k = 0; k < 4; k++) {
    const w = (words[k]! & maskWord(prefix - 32 * k)) >>> 0;
    groups.push(w >>> 16, w & 0xffff);
  }
  return `${ipv6Text(groups)}/${prefix}`;
}

/**
 * Checks an allowlist as a key is given it: an array of ranges, each parsed, returned as canonical text,
 * without duplicates, in the order given. An empty array means no allowlist (any address).
 */
export function normalizeAllowlist(value: unknown, where: string): string[] {
  if (!Array.isArray(value)) throw tillError('INVALID_ARGUMENT', where, 'allowedIps must be an array of IP ranges like "203.0.113.0/24"');
  if (value.length > MAX_ALLOWED_IPS) throw tillError('INVALID_ARGUMENT', where, `allowedIps holds at most ${MAX_ALLOWED_IPS} ranges`);
  const out: string[] = [];
  for (const range of value) {
    let cidr: Cidr;
    try {
      cidr = parseCidr(range);
    } catch (error) {
      throw where === 'keys' ? error : tillError('INVALID_ARGUMENT', where, (error as Error).message.replace(/^\[till\] \[keys\] /, ''));
    }
    if (!out.includes(cidr.text)) out.push(cidr.text);
  }
  return out;
}

/** Whether a stored allowlist is one `normalizeAllowlist` wrote (a store must not hand the verifier junk). */
export function isStoredAllowlist(value: unknown): value is string[] {
  if (!Array.isArray(value) || value.length > MAX_ALLOWED_IPS) return false;
  for (const range of value) {
    try {
      if (parseCidr(range).text !== range) return false;
    } catch {
      return false;
    }
  }
  return true;
}

const compiled = new Map<string, IpAllowlist>();
const COMPILED_MAX = 4096;

/**
 * A stored allowlist compiled for matching. Keys often share one (a customer's office ranges): lists
 * compiled once are shared, up to COMPILED_MAX distinct lists.
 */
export function compileAllowlist(ranges: readonly string[]): IpAllowlist {
  const name = ranges.join(',');
  const found = compiled.get(name);
  if (found !== undefined) return found;
  const v4: number[] = [];
  const v6: number[] = [];
  for (const range of ranges) {
    const cidr = parseCidr(range);
    if (cidr.family === 4) v4.push(cidr.words[0]! | 0, maskWord(cidr.bits));
    else {
      for (let k = 0; k < 4; k++) v6.push(cidr.words[k]! | 0);
      for (let k = 0; k < 4; k++) v6.push(maskWord(cidr.bits - 32 * k));
    }
  }
  const list: IpAllowlist = Object.freeze({ v4: Int32Array.from(v4), v6: Int32Array.from(v6), ranges: Object.freeze([...ranges]) });
  if (compiled.size < COMPILED_MAX) compiled.set(name, list);
  return list;
}

/** Whether the address in `scratch` (of `kind`) is in one of the list's ranges. */
function inList(list: IpAllowlist, kind: 4 | 6): boolean {
  if (kind === 4) {
    const v4 = list.v4;
    const word = scratch[3]!;
    for (let i = 0; i < v4.length; i += 2) if ((word & v4[i + 1]!) === v4[i]) return true;
  }
  // An IPv4 address is also its mapped IPv6 form (::ffff:a.b.c.d): a range like ::/0 covers it.
  const v6 = list.v6;
  const a = scratch[0]!;
  const b = scratch[1]!;
  const c = scratch[2]!;
  const d = scratch[3]!;
  for (let i = 0; i < v6.length; i += 8) {
    if ((a & v6[i + 4]!) === v6[i] && (b & v6[i + 5]!) === v6[i + 1] && (c & v6[i + 6]!) === v6[i + 2] && (d & v6[i + 7]!) === v6[i + 3]) return true;
  }
  return false;
}

/**
 * Whether a client address passes every allowlist given (a key's, and one day its identity's: each
 * that is set must let it in). No address, or one that is not an IP, passes none. An empty array of
 * lists lets any request in.
 */
export function ipAllowed(lists: readonly IpAllowlist[], address: string | undefined): boolean {
  if (lists.length === 0) return true;
  if (typeof address !== 'string') return false;
  const kind = readAddress(address);
  if (kind === 0) return false;
  for (let i = 0; i < lists.length; i++) if (!inList(lists[i]!, kind)) return false;
  return true;
}

/** Most addresses an IpPolicy remembers its verdict on; past it, it forgets them all and starts again. */
export const POLICY_MEMO_MAX = 64;

/**
 * The allowlists of one cached key, with its verdicts on the addresses it saw lately. A key with an
 * allowlist is used from few addresses (that is what the list says), so the next request nearly always
 * brings one of them: a Map lookup (the string's hash, a few ns) instead of a parse and a match (tens of
 * ns). A verdict depends on nothing but the address and the lists, which never change for a cache entry
 * (a changed key is a new entry), so it is never stale. Bounded: a client cycling through addresses
 * only makes the memo start again, every POLICY_MEMO_MAX of them.
 */
export class IpPolicy {
  private readonly seen = new Map<string, boolean>();

  constructor(readonly lists: readonly IpAllowlist[]) {}

  allows(address: string | undefined): boolean {
    if (typeof address !== 'string') return this.lists.length === 0;
    const known = this.seen.get(address);
    if (known !== undefined) return known;
    const allowed = ipAllowed(this.lists, address);
    // Only what can be an address is kept: a proxy header's junk is judged each time, never held.
    if (address.length <= 60) {
      if (this.seen.size >= POLICY_MEMO_MAX) this.seen.clear();
      this.seen.set(address, allowed);
    }
    return allowed;
  }
}
