// SHA-256 and HMAC-SHA-256 of short ASCII strings in plain JavaScript, for the verification hot path.
//
// Why not node:crypto: inside a busy HTTP server each native hash call measured 4-6 µs on this
// project's benchmark machine (the crossing into OpenSSL and its per-call setup run cold between
// requests), against about 0.35 µs in a tight loop. A key is one or two 64-byte blocks, which this
// code compresses in well under a microsecond with no allocation. It has no data-dependent
// branches or lookups, so its time does not depend on the key. Keys are created with node:crypto;
// test/sha256.test.ts checks this code against node:crypto on random input.
import { createHash } from 'node:crypto';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INITIAL = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

// Scratch space: JavaScript runs one call at a time and nothing here awaits, so sharing is safe.
const W = new Int32Array(64);
const INNER = new Int32Array(8);

function compress(state: Int32Array): void {
  const w = W;
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = state[0]!,
    b = state[1]!,
    c = state[2]!,
    d = state[3]!;
  let e = state[4]!,
    f = state[5]!,
    g = state[6]!,
    h = state[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}

/** Whether every character of `text` is ASCII (the only input the fast path takes). */
export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) return false;
  return true;
}

/**
 * SHA-256 of ASCII `text` into `out` (8 big-endian words), continuing from `init` after
 * `offsetBytes` already hashed (0 and INITIAL for a plain hash; a precomputed pad for HMAC).
 */
function hashAsciiFrom(text: string, init: Int32Array, offsetBytes: number, out: Int32Array): void {
  out.set(init);
  const w = W;
  const length = text.length;
  let pos = 0;
  for (; length - pos >= 64; pos += 64) {
    for (let j = 0; j < 16; j++) {
      const p = pos + 4 * j;
      w[j] = (text.charCodeAt(p) << 24) | (text.charCodeAt(p + 1) << 16) | (text.charCodeAt(p + 2) << 8) | text.charCodeAt(p + 3);
    }
    compress(out);
  }
  const rest = length - pos;
  w.fill(0, 0, 16);
  for (let i = 0; i < rest; i++) w[i >> 2]! |= text.charCodeAt(pos + i) << (24 - 8 * (i & 3));
  w[rest >> 2]! |= 0x80 << (24 - 8 * (rest & 3));
  if (rest >= 56) {
    compress(out);
    w.fill(0, 0, 16);
  }
  const bits = (length + offsetBytes) * 8;
  w[14] = Math.floor(bits / 0x100000000);
  w[15] = bits | 0;
  compress(out);
}

/** SHA-256 of an ASCII string, as 8 big-endian words. */
export function sha256Ascii(text: string, out: Int32Array): void {
  hashAsciiFrom(text, INITIAL, 0, out);
}

export interface HmacKey {
  readonly inner: Int32Array;
  readonly outer: Int32Array;
}

/** Precomputes the HMAC-SHA-256 pads of a key (RFC 2104): each request then costs two or three blocks. */
export function hmacKey(key: string | Buffer): HmacKey {
  let bytes = typeof key === 'string' ? Buffer.from(key) : key;
  if (bytes.length > 64) bytes = createHash('sha256').update(bytes).digest();
  const pad = (fill: number): Int32Array => {
    const block = Buffer.alloc(64, fill);
    for (let i = 0; i < bytes.length; i++) block[i] = bytes[i]! ^ fill;
    const state = new Int32Array(INITIAL);
    for (let j = 0; j < 16; j++) W[j] = block.readInt32BE(4 * j);
    compress(state);
    return state;
  };
  return { inner: pad(0x36), outer: pad(0x5c) };
}

/** HMAC-SHA-256 of an ASCII string under a precomputed key, as 8 big-endian words. */
export function hmacSha256Ascii(key: HmacKey, text: string, out: Int32Array): void {
  hashAsciiFrom(text, key.inner, 64, INNER);
  out.set(key.outer);
  const w = W;
  for (let j = 0; j < 8; j++) w[j] = INNER[j]!;
  w[8] = 0x80000000;
  w.fill(0, 9, 15);
  w[15] = (64 + 32) * 8;
  compress(out);
}

/**
 * A 32-byte digest in base64url as a 32-character latin1 string (one character per byte), or null
 * when it is not one. A cached key holds its digest so: 48 bytes of heap, where an Int32Array of the
 * same words costs about 240.
 */
export function digestBytes(base64url: string): string | null {
  const bytes = Buffer.from(base64url, 'base64url');
  if (bytes.length !== 32 || bytes.toString('base64url') !== base64url) return null;
  return bytes.toString('latin1');
}
