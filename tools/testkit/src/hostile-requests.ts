// Hostile HTTP requests for the flood drill (test/drills/hostile-flood.test.ts), as raw bytes: each kind with
// the answers it may get. Answers are labels: `200`, `401/MALFORMED` (status/problem code), or, for a
// request Node's own parser refuses, its status (400, 431) or `reset`/`closed` (Node may close the socket
// before the client has read its answer, as it does for a header section over its limit).
import { randomBytes } from 'node:crypto';
import type { RawRequest } from './raw-http.js';
import { badCheckKey, madeUpKey, wrongSecretKey } from './key-forgery.js';

export interface HostileKeys {
  /** Valid keys (two, to send two different valid keys in one request). */
  readonly valid: string;
  readonly other: string;
  readonly revoked: string;
}

export interface HostileKind {
  readonly kind: string;
  /** Times it appears in one round of the schedule. Default 1. */
  readonly weight?: number;
  /** Refused by Node's HTTP parser, before any application code: the same answer whatever the app. */
  readonly parser?: boolean;
  readonly build: (path: string) => { bytes: Buffer; responses?: number };
  /** The labels its responses may have. */
  readonly expect: readonly string[];
}

/** Node's default limit on a request's header section (request line and headers), http.maxHeaderSize. */
export const MAX_HEADER_SIZE = 16 * 1024;

const CRLF = Buffer.from('\r\n');
type Part = string | Buffer;
const bytesOf = (part: Part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : part);

/** A request: `GET <path> HTTP/<version>`, Host (unless `host: false`), then `lines` as given (strings as latin1 bytes). */
export function rawRequest(path: string, lines: readonly Part[], options: { version?: string; host?: boolean; body?: string; method?: Part } = {}): Buffer {
  const parts: Buffer[] = [bytesOf(options.method ?? 'GET'), Buffer.from(` ${path} HTTP/${options.version ?? '1.1'}\r\n`, 'latin1')];
  if (options.host !== false) parts.push(Buffer.from('Host: 127.0.0.1\r\n'));
  for (const line of lines) parts.push(bytesOf(line), CRLF);
  parts.push(CRLF);
  if (options.body !== undefined) parts.push(Buffer.from(options.body, 'latin1'));
  return Buffer.concat(parts);
}

/** A header padded so that the whole request is `total` bytes. */
function padTo(path: string, lines: readonly Part[], total: number): Buffer {
  const base = rawRequest(path, [...lines, 'X-Filler: ']).length;
  return rawRequest(path, [...lines, `X-Filler: ${'f'.repeat(Math.max(0, total - base))}`]);
}

/** Bytes 0x80-0xff: never valid UTF-8 on their own (obs-text to HTTP, which Node accepts in values). */
function highBytes(n: number): Buffer {
  return Buffer.from(Array.from(randomBytes(n), (b) => 0x80 | b));
}

const NODE_REFUSES = ['400', 'reset', 'closed'];

/** A request that never changes, built once per path. */
function fixed(build: (path: string) => Buffer): (path: string) => { bytes: Buffer } {
  const built = new Map<string, Buffer>();
  return (path) => {
    let bytes = built.get(path);
    if (bytes === undefined) built.set(path, (bytes = build(path)));
    return { bytes };
  };
}

/**
 * A large request around a new made-up key each time: built once per path with a placeholder of a key's
 * length, then copied with the key written in its place.
 */
function aroundMadeUpKey(build: (path: string, key: string) => Buffer): (path: string) => { bytes: Buffer } {
  const placeholder = madeUpKey().replace(/./g, '#');
  const templates = new Map<string, { bytes: Buffer; at: number }>();
  return (path) => {
    let template = templates.get(path);
    if (template === undefined) {
      const bytes = build(path, placeholder);
      templates.set(path, (template = { bytes, at: bytes.indexOf(placeholder) }));
    }
    const bytes = Buffer.from(template.bytes);
    bytes.write(madeUpKey(), template.at, 'latin1');
    return { bytes };
  };
}

/** Every kind of hostile request, given the keys of the app under test. */
export function hostileKinds(keys: HostileKeys): HostileKind[] {
  const { valid, other, revoked } = keys;
  const bearer = (key: Part) => Buffer.concat([Buffer.from('Authorization: Bearer '), bytesOf(key)]);
  const one = (lines: Part[], expect: string[], extra: Partial<HostileKind> = {}) => ({ build: fixed((path) => rawRequest(path, lines)), expect, ...extra });
  return [
    // Valid keys, sent oddly but acceptably.
    { kind: 'valid bearer', ...one([bearer(valid)], ['200']) },
    { kind: 'valid x-api-key, tabs around it', ...one([`X-API-Key:\t${valid}\t`], ['200']) },
    { kind: 'valid, scheme in odd case and spaces', ...one([`authorization: bEaReR    ${valid}   `], ['200']) },
    { kind: 'valid, every header twice', ...one([bearer(valid), bearer(valid), `X-API-Key: ${valid}`, `x-api-key: ${valid}`], ['200']) },
    {
      kind: 'valid, 150 identical Authorization headers',
      ...one(
        Array.from({ length: 150 }, () => bearer(valid)),
        ['200'],
      ),
    },
    {
      kind: 'valid, odd query string',
      build: fixed((path) => rawRequest(`${path}?a=%ZZ&b=%00&c=%ff%fe&__proto__[x]=1&constructor[prototype][y]=2&${'q=1&'.repeat(200)}`, [bearer(valid)])),
      expect: ['200'],
    },
    { kind: 'valid, absolute-form target', build: fixed((path) => rawRequest(`http://evil.example${path}`, [bearer(valid)])), expect: ['200'] },
    {
      kind: 'valid, GET with a body',
      build: fixed((path) => rawRequest(path, [bearer(valid), 'Content-Length: 11'], { body: 'hello world' })),
      expect: ['200'],
    },
    { kind: 'valid, HTTP/1.0', build: fixed((path) => rawRequest(path, [bearer(valid)], { version: '1.0' })), expect: ['200'] },
    // Two keys in one request.
    { kind: 'two different Authorization headers', ...one([bearer(valid), bearer(other)], ['401/MALFORMED']) },
    { kind: 'Authorization and X-API-Key differ', ...one([bearer(valid), `X-API-Key: ${madeUpKey()}`], ['401/MALFORMED']) },
    {
      kind: '200 X-API-Key headers, one differs',
      build: aroundMadeUpKey((path, key) => rawRequest(path, [...Array.from({ length: 199 }, () => `X-API-Key: ${valid}`), `X-API-Key: ${key}`])),
      expect: ['401/MALFORMED'],
    },
    { kind: 'two keys in one X-API-Key value', ...one([`X-API-Key: ${valid}, ${other}`], ['401/MALFORMED']) },
    // Keys of the right shape that are not valid.
    { kind: 'made-up key (valid check)', weight: 4, build: (path) => ({ bytes: rawRequest(path, [bearer(madeUpKey())]) }), expect: ['401/NOT_FOUND'] },
    { kind: 'made-up key in X-API-Key', build: (path) => ({ bytes: rawRequest(path, [`X-API-Key: ${madeUpKey()}`]) }), expect: ['401/NOT_FOUND'] },
    { kind: 'real id, wrong secret', build: (path) => ({ bytes: rawRequest(path, [bearer(wrongSecretKey(valid))]) }), expect: ['401/NOT_FOUND'] },
    { kind: 'wrong check', build: (path) => ({ bytes: rawRequest(path, [bearer(badCheckKey(madeUpKey()))]) }), expect: ['401/MALFORMED'] },
    { kind: 'revoked key', ...one([bearer(revoked)], ['401/REVOKED']) },
    { kind: 'uppercase prefix', ...one([bearer(`TILL${valid.slice(4)}`)], ['401/MALFORMED']) },
    {
      kind: 'prefix of 33 characters',
      build: (path) => ({ bytes: rawRequest(path, [bearer(`${'a'.repeat(33)}${madeUpKey().slice(4)}`)]) }),
      expect: ['401/MALFORMED'],
    },
    { kind: 'key and one more character', ...one([bearer(`${valid}x`)], ['401/MALFORMED']) },
    { kind: 'percent-encoded key', ...one([bearer(valid.replace('_', '%5F'))], ['401/MALFORMED']) },
    { kind: 'JSON as a key', ...one(['X-API-Key: {"$ne":null}'], ['401/MALFORMED']) },
    { kind: 'two tokens after Bearer', ...one([`Authorization: Bearer ${valid} ${valid}`], ['401/MALFORMED']) },
    // No key, or not one of ours.
    { kind: 'no key', ...one([], ['401/MISSING']) },
    { kind: 'empty Authorization', ...one(['Authorization:'], ['401/MISSING']) },
    { kind: 'Bearer without a token', ...one(['Authorization: Bearer'], ['401/MALFORMED']) },
    { kind: 'Basic credentials', ...one(['Authorization: Basic dXNlcjpwYXNzd29yZA=='], ['401/MISSING']) },
    // Bytes that are not text.
    {
      kind: 'invalid UTF-8 in the key',
      build: (path) => ({ bytes: rawRequest(path, [Buffer.concat([Buffer.from('Authorization: Bearer till_'), highBytes(4), Buffer.from(valid.slice(9))])]) }),
      expect: ['401/MALFORMED'],
    },
    {
      kind: 'invalid UTF-8 as X-API-Key',
      build: (path) => ({ bytes: rawRequest(path, [Buffer.concat([Buffer.from('X-API-Key: '), highBytes(49)])]) }),
      expect: ['401/MALFORMED'],
    },
    {
      kind: 'UTF-8 look-alike prefix',
      ...one([Buffer.concat([Buffer.from('Authorization: Bearer '), Buffer.from(`ţill${valid.slice(4)}`, 'utf8')])], ['401/MALFORMED']),
    },
    {
      kind: 'invalid UTF-8 in a header name',
      parser: true,
      build: (path) => ({ bytes: rawRequest(path, [Buffer.concat([Buffer.from('X-'), highBytes(3), Buffer.from(`: ${valid}`)]), bearer(valid)]) }),
      expect: NODE_REFUSES,
    },
    {
      kind: 'huge user agent, invalid UTF-8 and tabs',
      build: aroundMadeUpKey((path, key) =>
        rawRequest(path, [bearer(key), Buffer.concat([Buffer.from('User-Agent: x\t'), highBytes(64), Buffer.from(`\t${'u'.repeat(12_000)}`)])]),
      ),
      expect: ['401/NOT_FOUND'],
    },
    // Control characters: Node's parser refuses them in a header value (HTAB aside).
    { kind: 'SOH after the key', parser: true, ...one([`Authorization: Bearer ${valid}\x01`], NODE_REFUSES) },
    { kind: 'NUL in the key', parser: true, ...one([`X-API-Key: ${valid.slice(0, 10)}\x00${valid.slice(10)}`], NODE_REFUSES) },
    { kind: 'DEL after the key', parser: true, ...one([`X-API-Key: ${valid}\x7f`], NODE_REFUSES) },
    { kind: 'bare CR to inject a header', parser: true, ...one([`X-API-Key: ${madeUpKey()}\rAuthorization: Bearer ${valid}`], NODE_REFUSES) },
    { kind: 'folded header (obs-fold)', parser: true, ...one(['Authorization: Bearer', ` ${valid}`], NODE_REFUSES) },
    { kind: 'space before the colon', parser: true, ...one([`X-API-Key : ${valid}`], NODE_REFUSES) },
    {
      kind: 'control character in the method',
      parser: true,
      build: fixed((path) => rawRequest(path, [bearer(valid)], { method: 'G\x01T' })),
      expect: NODE_REFUSES,
    },
    { kind: 'no Host header', parser: true, build: fixed((path) => rawRequest(path, [bearer(valid)], { host: false })), expect: NODE_REFUSES },
    {
      kind: 'Content-Length with Transfer-Encoding',
      parser: true,
      build: fixed((path) => rawRequest(path, [bearer(valid), 'Content-Length: 5', 'Transfer-Encoding: chunked'], { body: '0\r\n\r\n' })),
      expect: NODE_REFUSES,
    },
    // Size: long values the extractor refuses unread, header sections close to and over Node's limit.
    { kind: 'bearer token of 8 KB', ...one([`Authorization: Bearer ${'A'.repeat(8192)}`], ['401/MALFORMED']) },
    { kind: 'X-API-Key of 15 KB', build: fixed((path) => rawRequest(path, [`X-API-Key: ${'k'.repeat(MAX_HEADER_SIZE - 1024)}`])), expect: ['401/MALFORMED'] },
    { kind: 'valid key, headers 256 bytes under the limit', build: fixed((path) => padTo(path, [bearer(valid)], MAX_HEADER_SIZE - 256)), expect: ['200'] },
    {
      kind: 'made-up key, headers 256 bytes under the limit',
      build: aroundMadeUpKey((path, key) => padTo(path, [bearer(key)], MAX_HEADER_SIZE - 256)),
      expect: ['401/NOT_FOUND'],
    },
    // Node keeps the first 2,000 headers (http.maxHeadersCount): the key after them is never seen.
    {
      kind: '2,100 tiny headers, then the key',
      build: fixed((path) => rawRequest(path, [...Array.from({ length: 2100 }, () => 'a:1'), bearer(valid)])),
      expect: ['401/MISSING'],
    },
    { kind: 'headers over the limit (20 KB)', parser: true, build: fixed((path) => padTo(path, [bearer(valid)], 20_000)), expect: ['431', 'reset', 'closed'] },
    {
      kind: 'request target over the limit',
      parser: true,
      build: fixed((path) => rawRequest(`${path}?${'q'.repeat(20_000)}`, [bearer(valid)])),
      expect: ['431', 'reset', 'closed'],
    },
    // Three requests in one write.
    {
      kind: 'pipelined: valid, made-up, revoked',
      build: (path) => ({
        bytes: Buffer.concat([rawRequest(path, [bearer(valid)]), rawRequest(path, [bearer(madeUpKey())]), rawRequest(path, [bearer(revoked)])]),
        responses: 3,
      }),
      expect: ['200', '401/NOT_FOUND', '401/REVOKED'],
    },
  ];
}

/** The kinds repeated by weight: one round of the schedule. */
export function schedule(kinds: readonly HostileKind[]): HostileKind[] {
  return kinds.flatMap((k) => Array.from({ length: k.weight ?? 1 }, () => k));
}

/** The label of one response: `200`, `401/MALFORMED`, `431`, `reset`. */
export function labelOf(response: { status: number; code: string | null; error: string | null }): string {
  if (response.status === 0) return response.error ?? 'closed';
  return response.code === null ? String(response.status) : `${response.status}/${response.code}`;
}

export type { RawRequest };
