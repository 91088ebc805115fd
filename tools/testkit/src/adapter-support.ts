// Shared by the Express and Koa suites: a store that cannot answer, look-alike keys, the expected problems, a leak check.
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { expect } from 'vitest';
import {
  MemoryStore,
  TillError,
  type AuditPage,
  type KeyUsage,
  type UsageBatchItem,
  type AuditQuery,
  type AuditRecord,
  type ConsumeRequest,
  type ConsumeResult,
  type FailureCode,
  type InvalidationListener,
  type KeyPage,
  type KeyRecord,
  type KeyStore,
  type ListKeysQuery,
  type Till,
} from '@till/core';

/** 2030-01-01: far from any real clock, so a test that forgets the injected clock shows. */
export const T0 = Date.UTC(2030, 0, 1);

/**
 * A backend that cannot be reached: `get` rejects as a real store does when its server is gone.
 * Writes go to an inner memory store so keys can be made first; `down = false` lets reads through.
 */
export class UnreachableStore implements KeyStore {
  readonly kind = 'unreachable';
  down = true;
  private readonly inner = new MemoryStore();

  get(id: string): Promise<KeyRecord | null> {
    if (this.down) return Promise.reject(new TillError('STORE_UNAVAILABLE', '[till] [test] store unavailable: connection refused'));
    return this.inner.get(id);
  }
  insert(record: KeyRecord, audit?: AuditRecord): Promise<void> {
    return this.inner.insert(record, audit);
  }
  replace(record: KeyRecord, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.inner.replace(record, expectedVersion, audit);
  }
  remove(id: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.inner.remove(id, expectedVersion, audit);
  }
  appendAudit(entries: readonly AuditRecord[]): Promise<void> {
    return this.inner.appendAudit(entries);
  }
  readAudit(query?: AuditQuery): Promise<AuditPage> {
    return this.inner.readAudit(query);
  }
  recordUsage(batch: readonly UsageBatchItem[]): Promise<void> {
    if (this.down) return Promise.reject(new TillError('STORE_UNAVAILABLE', '[till] [test] store unavailable: connection refused'));
    return this.inner.recordUsage(batch);
  }
  readUsage(id: string, days: number): Promise<KeyUsage> {
    return this.inner.readUsage(id, days);
  }
  list(query?: ListKeysQuery): Promise<KeyPage> {
    return this.inner.list(query);
  }
  consume(request: ConsumeRequest): Promise<ConsumeResult> {
    if (this.down) return Promise.reject(new TillError('STORE_UNAVAILABLE', '[till] [test] store unavailable: connection refused'));
    return this.inner.consume(request);
  }
  onInvalidate(listener: InvalidationListener): () => void {
    return this.inner.onInvalidate(listener);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function base62(length: number): string {
  let out = '';
  for (const byte of randomBytes(length)) out += BASE62[byte % 62];
  return out;
}

function check(head: string): string {
  let v = crc32(head);
  let out = '';
  do {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  } while (v > 0);
  return out.padStart(6, '0');
}

/** The same prefix and id as `key`, another secret, and a valid check: it parses, and must still fail. */
export function withWrongSecret(key: string): string {
  const head = key.slice(0, key.length - 28);
  let secret = base62(22);
  while (secret === key.slice(-28, -6)) secret = base62(22);
  return head + secret + check(head + secret);
}

/** `key` with one character of its check changed: fails the CRC before any lookup. */
export function withBadCheck(key: string): string {
  const last = key.at(-1)!;
  return key.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

/** Builds a key-shaped string with a valid check from a prefix and 38 base62 characters. */
export function keyShaped(prefix: string, body38: string): string {
  const head = `${prefix}_${body38}`;
  return head + check(head);
}

export const TEXT: Record<FailureCode, { status: number; title: string; detail: string }> = {
  MISSING: { status: 401, title: 'API key required', detail: 'Send an API key as "Authorization: Bearer <key>" or in the X-API-Key header.' },
  MALFORMED: { status: 401, title: 'Invalid API key', detail: 'The API key is malformed, or the request carries more than one key.' },
  NOT_FOUND: { status: 401, title: 'Invalid API key', detail: 'The API key is not valid.' },
  REVOKED: { status: 401, title: 'API key revoked', detail: 'The API key has been revoked.' },
  DISABLED: { status: 401, title: 'API key disabled', detail: 'The API key is disabled.' },
  EXPIRED: { status: 401, title: 'API key expired', detail: 'The API key has expired.' },
  NOT_YET_VALID: { status: 401, title: 'API key not yet valid', detail: 'The API key is not valid yet.' },
  INSUFFICIENT_SCOPE: { status: 403, title: 'Insufficient scope', detail: '' },
  RATE_LIMITED: { status: 429, title: 'Rate limit exceeded', detail: 'Too many requests; retry later.' },
  USAGE_EXCEEDED: { status: 429, title: 'Usage exceeded', detail: 'The API key has no usage credits left.' },
  BLOCKED: { status: 429, title: 'Too many failed attempts', detail: 'Too many failed authentications from this client; retry later.' },
  STORE_UNAVAILABLE: { status: 503, title: 'Service unavailable', detail: 'API keys cannot be checked right now; retry later.' },
  IP_NOT_ALLOWED: { status: 403, title: 'IP address not allowed', detail: 'The API key may not be used from this IP address.' },
};

/** The `WWW-Authenticate` value RFC 6750 asks for, written out by hand (not computed by core). */
export function expectedChallenge(code: FailureCode, realm?: string, scopes?: readonly string[]): string | undefined {
  const params: string[] = realm === undefined ? [] : [`realm="${realm}"`];
  const { status, title } = TEXT[code];
  // RFC 6750 has no error code for a refused address: no challenge.
  if (code === 'IP_NOT_ALLOWED') return undefined;
  if (status === 403) params.push('error="insufficient_scope"', `scope="${scopes!.join(' ')}"`);
  else if (status === 401 && code !== 'MISSING') params.push('error="invalid_token"', `error_description="${title}"`);
  else if (status !== 401) return undefined;
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`;
}

/** The exact problem body of `code`. */
export function expectedBody(
  code: FailureCode,
  extra: { scopes?: readonly string[]; mode?: 'all' | 'any'; retryAfter?: number } = {},
): Record<string, unknown> {
  const { status, title, detail } = TEXT[code];
  const body: Record<string, unknown> = {
    type: `urn:till:problem:${code.toLowerCase().replace(/_/g, '-')}`,
    title,
    status,
    detail,
    code,
  };
  if (code === 'INSUFFICIENT_SCOPE') {
    const mode = extra.mode ?? 'all';
    body.detail = `This request needs ${mode === 'all' ? 'the scopes' : 'one of the scopes'}: ${extra.scopes!.join(', ')}.`;
    body.required_scopes = extra.scopes;
    body.scope_mode = mode;
  }
  if (extra.retryAfter !== undefined) body.retry_after = extra.retryAfter;
  return body;
}

/** What a test needs from a response, whatever client made it. */
export interface SeenResponse {
  status: number;
  text: string;
  headers: Record<string, unknown>;
}

/**
 * Remembers every secret a suite makes (full keys, their secret part, their stored hash in every
 * usual encoding) and checks every response against all of them.
 */
export class LeakCheck {
  private readonly secrets: string[] = [];
  readonly codes = new Set<string>();
  responses = 0;

  /** Registers a key made by `till` (reads the stored hash back from the store). */
  async track(till: Till, created: { key: string; record: { id: string } }): Promise<void> {
    this.addKey(created.key);
    const stored = await till.store.get(created.record.id);
    if (stored === null) throw new Error('key not stored');
    const digest = Buffer.from(stored.hash, 'base64url');
    this.secrets.push(stored.hash, digest.toString('base64'), digest.toString('hex'));
  }

  /** Registers a key-shaped secret that no store holds. */
  addKey(key: string): void {
    this.secrets.push(key, key.slice(-28, -6));
  }

  check(res: SeenResponse): void {
    this.responses++;
    const code = codeOf(res);
    if (code !== undefined) this.codes.add(code);
    const seen = `${res.text}\n${JSON.stringify(res.headers)}`;
    for (const secret of this.secrets) {
      // Not printing the secret: the assertion message names only its position.
      if (seen.includes(secret)) expect.fail(`response ${res.status} carries tracked secret #${this.secrets.indexOf(secret)}`);
    }
  }
}

function codeOf(res: SeenResponse): string | undefined {
  if (res.status === 200) return 'VALID';
  try {
    const body = JSON.parse(res.text) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : undefined;
  } catch {
    return undefined;
  }
}

/** Asserts the whole default problem response for `code`: status, headers and body. */
export function expectProblem(
  res: SeenResponse,
  code: FailureCode,
  extra: { realm?: string; scopes?: readonly string[]; mode?: 'all' | 'any'; retryAfter?: number } = {},
): void {
  expect({ status: res.status, code: codeOf(res) }).toEqual({ status: TEXT[code].status, code });
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['www-authenticate']).toBe(expectedChallenge(code, extra.realm, extra.scopes));
  expect(res.headers['retry-after']).toBe(extra.retryAfter === undefined ? undefined : String(extra.retryAfter));
  expect(JSON.parse(res.text)).toEqual(expectedBody(code, extra));
}

/** Runs `make` and asserts it throws TillError INVALID_OPTIONS with a `[till]` message. */
export function expectInvalidOptions(make: () => unknown): void {
  let thrown: unknown;
  try {
    make();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected a TillError').toBeInstanceOf(TillError);
  expect((thrown as TillError).code).toBe('INVALID_OPTIONS');
  expect((thrown as TillError).message).toMatch(/^\[till\] /);
}
