// Fuzzing kit: arbitraries for hostile key headers (sendable over HTTP, or anything at all) and the oracle.
import fc from 'fast-check';
import { expect } from 'vitest';
import type { FailureCode } from '@till/core';
import { expectedBody, expectedChallenge, keyShaped } from './adapter-support.js';

const BASE62 = [...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'];

/** One character Node's HTTP client lets through in a header value: tab, visible ASCII, space, 0x80-0xff. */
const headerChar = fc
  .oneof(fc.constant(0x09), fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }))
  .map((code) => String.fromCharCode(code));

const sendable = (maxLength: number, minLength = 0) => fc.string({ unit: headerChar, minLength, maxLength });

/** Any Unicode text, as the UTF-8 bytes a client would put on the wire (one Latin-1 char per byte). */
const unicodeOnTheWire = fc.string({ unit: 'grapheme', maxLength: 24 }).map((s) =>
  Buffer.from(s, 'utf8')
    .toString('latin1')
    .replace(/[^\t\x20-\x7e\x80-\xff]/g, '?'),
);

/** 10,000 to 12,000 characters: past the length cap, still under Node's 16 KiB header limit. */
const longSendable = fc
  .tuple(sendable(8, 1), fc.integer({ min: 10_000, max: 12_000 }))
  .map(([unit, length]) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length));

const prefix = fc.oneof(fc.constant('till'), fc.stringMatching(/^[a-z][a-z0-9]{0,6}(?:_[a-z0-9]{1,4})?$/));
const base62 = (length: number) => fc.string({ unit: fc.constantFrom(...BASE62), minLength: length, maxLength: length });

/** Strings shaped like keys: random bodies, valid checks on unknown ids, and damaged copies of real keys. */
export function keyLike(realKeys: readonly string[]): fc.Arbitrary<string> {
  const real = fc.constantFrom(...realKeys);
  return fc.oneof(
    fc.tuple(prefix, base62(44)).map(([p, body]) => `${p}_${body}`),
    fc.tuple(prefix, base62(38)).map(([p, body]) => keyShaped(p, body)),
    real,
    fc.tuple(real, fc.nat(), fc.constantFrom(...BASE62)).map(([key, at, c]) => {
      const i = at % key.length;
      return key.slice(0, i) + (key[i] === c ? (c === 'a' ? 'b' : 'a') : c) + key.slice(i + 1);
    }),
    fc.tuple(real, fc.nat()).map(([key, at]) => key.slice(0, at % key.length)),
    fc.tuple(real, real, sendable(3)).map(([a, b, glue]) => a + glue + b),
  );
}

/** A header value a client can send: key-like or random, with or without a scheme, spaced any way. */
export function sendableValue(realKeys: readonly string[]): fc.Arbitrary<string> {
  const token = fc.oneof(
    { arbitrary: keyLike(realKeys), weight: 4 },
    { arbitrary: sendable(80), weight: 2 },
    { arbitrary: unicodeOnTheWire, weight: 1 },
    { arbitrary: longSendable, weight: 1 },
  );
  const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR', 'Basic', 'Token', 'Bearer:', 'Bearerx', '');
  const space = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 });
  // The first real key, presented properly, in either header shape: so that some runs must pass.
  const proper = fc.tuple(space, fc.constantFrom('Bearer ', 'bearer  ', ''), fc.constant(realKeys[0]!), space).map((parts) => parts.join(''));
  return fc.oneof(
    token,
    fc.tuple(space, scheme, space, token, space).map((parts) => parts.join('')),
    proper,
  );
}

/**
 * Up to three headers with distinct names (a client sends one header per name, the last one set),
 * each one value or several sent as repeated header lines, under Node's 16 KiB header limit.
 */
export function sendableHeaders(realKeys: readonly string[]): fc.Arbitrary<Array<[string, string | string[]]>> {
  const name = fc.constantFrom('authorization', 'Authorization', 'x-api-key', 'X-API-Key', 'x-other');
  const value = sendableValue(realKeys);
  return fc
    .uniqueArray(fc.tuple(name, fc.oneof(value, fc.array(value, { minLength: 1, maxLength: 3 }))), {
      minLength: 1,
      maxLength: 3,
      selector: ([n]) => n.toLowerCase(),
    })
    .filter((headers) => headers.reduce((n, [, v]) => n + (Array.isArray(v) ? v.join('').length : v.length), 0) < 14_000);
}

/** Anything a middleware upstream could leave in a header slot, except lists of non-strings (see the pinned test). */
export function anyHeaderValue(realKeys: readonly string[]): fc.Arbitrary<unknown> {
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 120 }),
    fc.string({ unit: 'binary', minLength: 10_000, maxLength: 10_200 }),
    sendableValue(realKeys),
    keyLike(realKeys).map((k) => `Bearer ${k}`),
  );
  return fc.oneof(
    { arbitrary: text, weight: 6 },
    { arbitrary: fc.array(text, { maxLength: 4 }), weight: 2 },
    { arbitrary: fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.object({ maxDepth: 1 }), fc.bigInt()), weight: 1 },
  );
}

/** A header bag with any names and any values, and a `rawHeaders` that is absent, consistent, or junk. */
export function anyRequestHeaders(realKeys: readonly string[]): fc.Arbitrary<{ headers: Record<string, unknown>; rawHeaders?: unknown[] }> {
  const name = fc.oneof(fc.constantFrom('authorization', 'x-api-key', 'x-other'), fc.string({ maxLength: 12 }));
  return fc
    .tuple(
      fc.dictionary(name, anyHeaderValue(realKeys), { maxKeys: 4 }),
      fc.constantFrom('absent', 'consistent', 'junk'),
      fc.array(fc.anything(), { maxLength: 6 }),
    )
    .map(([headers, raw, junk]) => {
      if (raw === 'absent') return { headers };
      if (raw === 'junk') return { headers, rawHeaders: junk };
      const rawHeaders: unknown[] = [];
      for (const [n, v] of Object.entries(headers)) for (const one of Array.isArray(v) ? v : [v]) rawHeaders.push(n, one);
      return { headers, rawHeaders };
    });
}

/** Every string inside a value, however nested: what "the presented value" means for a non-string. */
export function stringsIn(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) stringsIn(v, out);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) stringsIn(v, out);
  return out;
}

/**
 * fast-check parameters whose failure report never prints a key: a counterexample is shown with
 * the real keys replaced by their names and any other run of 20+ base62 characters (a mutated or
 * made-up key) elided. The seed and path in the report still replay it exactly.
 */
export function quietly<Ts>(keys: Readonly<Record<string, string>>, params: fc.Parameters<Ts>): fc.Parameters<Ts> {
  return {
    ...params,
    reporter(details) {
      if (!details.failed) return;
      let message = fc.defaultReportMessage(details) ?? 'property failed';
      for (const [name, key] of Object.entries(keys)) message = message.split(key).join(`<${name} key>`);
      message = message.replace(/[0-9A-Za-z]{20,}/g, (run) => `<${run.length} base62 chars>`);
      // Long values shrink to long runs of one character (or one escape): show their length instead.
      throw new Error(message.replace(/(\\?[^\\])\1{15,}/g, (run, unit: string) => `${unit}<×${run.length / unit.length}>`));
    },
  };
}

/** What the design says a request with these headers gets, worked out independently of the extractor. */
export type Expected = 'valid' | 'invalid' | 'missing' | 'unspecified';

export function expectedOutcome(headers: Array<[string, string | string[]]>, good: string): Expected {
  // Servers strip spaces and tabs around a header value; the extractor then trims the token.
  const ows = (v: string) => v.replace(/^[ \t]+|[ \t]+$/g, '');
  const kinds: string[] = [];
  for (const [rawName, sent] of headers) {
    const name = rawName.toLowerCase();
    if (name !== 'authorization' && name !== 'x-api-key') continue;
    const values = (Array.isArray(sent) ? sent : [sent]).map(ows);
    // A repeated header with different values is ambiguous: refused whatever it holds.
    if (values.some((v) => v !== values[0])) {
      kinds.push('bad');
      continue;
    }
    const v = values[0]!;
    if (v.length > 512) kinds.push('bad');
    else if (name === 'x-api-key') kinds.push(v.trim() === '' ? 'ignored' : v.trim() === good ? 'good' : 'bad');
    else if (v.slice(0, 7).toLowerCase() === 'bearer ') kinds.push(v.slice(7).trim() === good ? 'good' : 'bad');
    // "Bearer" with no token is what arrives when the token was empty. It should be MALFORMED; a core
    // bug makes it MISSING today. The suite's "rejects an empty Bearer token" test pins it exactly.
    else if (v.toLowerCase() === 'bearer') kinds.push('unspecified');
    else kinds.push('ignored');
  }
  if (kinds.includes('bad')) return 'invalid';
  if (kinds.includes('unspecified')) return 'unspecified';
  return kinds.includes('good') ? 'valid' : 'missing';
}

/** Asserts that the outcome code of an answer is the one the design gives for `expected`. */
export function expectOutcome(code: string, expected: Expected, scoped: boolean): void {
  if (expected === 'valid') expect(code).toBe(scoped ? 'INSUFFICIENT_SCOPE' : 'VALID');
  if (expected === 'invalid') expect(['VALID', 'MISSING', 'INSUFFICIENT_SCOPE']).not.toContain(code);
  if (expected === 'missing') expect(code).toBe('MISSING');
}

export interface Answer {
  status: number;
  body: string;
  headers: Record<string, unknown>;
}

/**
 * Checks one failed or passed answer: 200 only for the good key (its id alone in the body), any
 * other answer the fixed problem of its code (401, or 403 with the route's scopes), and no
 * presented value of key length anywhere in it.
 */
export function checkAnswer(
  answer: Answer,
  presented: readonly string[],
  good: { key: string; id: string },
  requiredScopes: readonly string[] | undefined,
): string {
  expect([200, 401, 403]).toContain(answer.status);
  let code = 'VALID';
  if (answer.status === 200) {
    expect(JSON.parse(answer.body)).toEqual({ id: good.id });
    expect(presented.some((v) => v.includes(good.key))).toBe(true);
  } else {
    const problem = JSON.parse(answer.body) as { code: FailureCode };
    code = problem.code;
    const scopes = answer.status === 403 ? requiredScopes : undefined;
    expect(problem).toEqual(expectedBody(problem.code, scopes ? { scopes } : {}));
    expect(answer.headers['www-authenticate']).toBe(expectedChallenge(problem.code, undefined, scopes));
    expect(answer.headers['content-type']).toBe('application/problem+json');
  }
  const everything = `${answer.body}\n${JSON.stringify(answer.headers)}`;
  for (const value of presented) {
    const trimmed = value.trim();
    // Shorter values could match the fixed texts by chance; key-length values cannot.
    if (trimmed.length >= 16) expect(everything.includes(trimmed)).toBe(false);
  }
  return code;
}
