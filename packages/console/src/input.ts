// Reading requests: the JSON body, the query string and the values in them, each checked strictly.
// Unknown fields and parameters are refused (a typo in an admin call must not be silently ignored),
// and every value is checked for its type here, so the key manager only ever sees well-typed input.
import type { IncomingMessage } from 'node:http';
import { AUDIT_TYPES, type AuditType, type CreateKeyInput, type KeyPatch, isValidKeyId } from '@till/core';
import { ConsoleProblem, badRequest } from './respond.js';

/** Largest request body read, in bytes. */
export const MAX_BODY = 64 * 1024;

/** A body the app's own parser read before the console saw the request (express.json(), koa-bodyparser). */
export type PreparsedBody = { readonly raw: string } | { readonly parsed: unknown };

type Json = Record<string, unknown>;

function readStream(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error: ConsoleProblem | null, text?: string): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      if (error !== null) {
        // Stop reading; the answer goes out and the connection closes after it.
        req.resume();
        reject(error);
      } else resolve(text as string);
    };
    const onData = (chunk: Buffer | string): void => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buffer.length;
      if (size > MAX_BODY) finish(new ConsoleProblem(413, 'BODY_TOO_LARGE', 'Payload too large', `The body may hold at most ${MAX_BODY} bytes.`));
      else chunks.push(buffer);
    };
    req.on('data', onData);
    req.once('end', () => finish(null, Buffer.concat(chunks).toString('utf8')));
    req.once('error', () => finish(badRequest('The request body could not be read.')));
  });
}

/** The JSON object a change request carries; an absent body is `{}`. */
export async function readBody(req: IncomingMessage, pre: PreparsedBody | undefined): Promise<Json> {
  let value: unknown;
  if (pre !== undefined && 'parsed' in pre) {
    value = pre.parsed;
    if (value === undefined || value === null || (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0 && !isJson(req))) {
      value = {};
    }
  } else {
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > MAX_BODY) throw new ConsoleProblem(413, 'BODY_TOO_LARGE', 'Payload too large', `The body may hold at most ${MAX_BODY} bytes.`);
    const text = pre !== undefined ? pre.raw : req.readableEnded ? '' : await readStream(req);
    if (text.trim() === '') return {};
    if (!isJson(req)) throw new ConsoleProblem(415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported media type', 'Send the body as application/json.');
    try {
      value = JSON.parse(text);
    } catch {
      throw badRequest('The body is not valid JSON.');
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('The body must be a JSON object.');
  return value as Json;
}

/** The body exactly as sent (for a signature over it); refused when the app's parser has already consumed it. */
export async function readRaw(req: IncomingMessage, pre: PreparsedBody | undefined): Promise<string> {
  if (pre !== undefined && 'raw' in pre) return pre.raw;
  if (pre !== undefined || req.readableEnded) throw badRequest('The raw body is needed to check the signature: mount the console before body parsers.');
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > MAX_BODY) throw new ConsoleProblem(413, 'BODY_TOO_LARGE', 'Payload too large', `The body may hold at most ${MAX_BODY} bytes.`);
  return readStream(req);
}

function isJson(req: IncomingMessage): boolean {
  const type = req.headers['content-type'];
  return typeof type === 'string' && /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type);
}

/** Refuses fields a request may not carry. */
export function onlyFields(body: Json, allowed: readonly string[], what: string): void {
  for (const name of Object.keys(body)) {
    if (!allowed.includes(name)) throw badRequest(`${what} takes no field "${name.slice(0, 40)}"; it takes: ${allowed.join(', ')}.`);
  }
}

const isPlainObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

export function text(value: unknown, name: string, max = 200): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) throw badRequest(`${name} must be a string of 1 to ${max} characters.`);
  return value;
}

export function strings(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || value.length > 100 || !value.every((s) => typeof s === 'string' && s.length <= 200)) {
    throw badRequest(`${name} must be a list of at most 100 strings.`);
  }
  return value as string[];
}

/** A time: epoch milliseconds or an ISO 8601 string; null where `nullable`. */
function time(value: unknown, name: string): Date | number | null {
  if (value === null) return null;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw badRequest(`${name} must be epoch milliseconds, an ISO 8601 date or null.`);
}

function duration(value: unknown, name: string): string | number {
  if ((typeof value === 'string' && value.length > 0 && value.length <= 40) || (typeof value === 'number' && Number.isFinite(value))) return value;
  throw badRequest(`${name} must be a duration such as "90d" or "12h", or milliseconds.`);
}

export function objectField(value: unknown, name: string): Json {
  if (!isPlainObject(value)) throw badRequest(`${name} must be a JSON object.`);
  return value;
}

export function limits(value: unknown): CreateKeyInput['limits'] {
  if (!Array.isArray(value) || value.length > 20 || !value.every(isPlainObject)) throw badRequest('limits must be a list of { name, limit, window } objects.');
  for (const l of value as Json[]) {
    onlyFields(l, ['name', 'limit', 'window'], 'a limit');
    text(l.name, 'a limit name', 64);
    if (typeof l.limit !== 'number') throw badRequest('a limit\'s "limit" must be a number.');
    duration(l.window, 'a limit window');
  }
  return value as unknown as CreateKeyInput['limits'];
}

export function credits(value: unknown): CreateKeyInput['credits'] {
  if (value === null) return null;
  const c = objectField(value, 'credits');
  onlyFields(c, ['remaining', 'refill'], 'credits');
  if (typeof c.remaining !== 'number') throw badRequest('credits.remaining must be a number.');
  if (c.refill !== undefined && c.refill !== null) {
    const r = objectField(c.refill, 'credits.refill');
    onlyFields(r, ['amount', 'interval'], 'credits.refill');
    if (typeof r.amount !== 'number') throw badRequest('credits.refill.amount must be a number.');
    duration(r.interval, 'credits.refill.interval');
  }
  return c as unknown as CreateKeyInput['credits'];
}

/** A list of strings, or null (which clears it), as key networks and roles are given. */
export function stringsOrNull(value: unknown, name: string): string[] | null {
  return value === null ? null : strings(value, name);
}

/** Who changes and why: the reason a request gives (the actor is the acting key, never the body). */
export function reasonOf(body: Json): string | undefined {
  return body.reason === undefined ? undefined : text(body.reason, 'reason');
}

export const CREATE_FIELDS = [
  'name',
  'scopes',
  'ownerId',
  'metadata',
  'expiresAt',
  'expiresIn',
  'notBefore',
  'prefix',
  'limits',
  'credits',
  'allowedIps',
  'roles',
  'identityId',
  'reason',
];

export function createInput(body: Json): CreateKeyInput {
  onlyFields(body, CREATE_FIELDS, 'Creating a key');
  const input: CreateKeyInput = { name: text(body.name, 'name'), scopes: strings(body.scopes, 'scopes') };
  if (body.ownerId !== undefined) input.ownerId = body.ownerId === null ? null : text(body.ownerId, 'ownerId');
  if (body.metadata !== undefined) input.metadata = objectField(body.metadata, 'metadata');
  if (body.expiresAt !== undefined) input.expiresAt = time(body.expiresAt, 'expiresAt');
  if (body.expiresIn !== undefined) input.expiresIn = duration(body.expiresIn, 'expiresIn');
  if (body.notBefore !== undefined) input.notBefore = time(body.notBefore, 'notBefore');
  if (body.prefix !== undefined) input.prefix = text(body.prefix, 'prefix', 40);
  if (body.limits !== undefined) input.limits = limits(body.limits);
  if (body.credits !== undefined) input.credits = credits(body.credits);
  keyPolicies(body, input);
  return input;
}

export const PATCH_FIELDS = [
  'name',
  'scopes',
  'metadata',
  'setMetadata',
  'unsetMetadata',
  'expiresAt',
  'expiresIn',
  'notBefore',
  'limits',
  'credits',
  'allowedIps',
  'roles',
  'identityId',
  'reason',
];

/** A key's networks, roles and identity, as creating and updating take them; core checks what they hold. */
function keyPolicies(body: Json, into: CreateKeyInput | KeyPatch): void {
  if (body.allowedIps !== undefined) into.allowedIps = stringsOrNull(body.allowedIps, 'allowedIps');
  if (body.roles !== undefined) into.roles = stringsOrNull(body.roles, 'roles');
  if (body.identityId !== undefined) into.identityId = body.identityId === null ? null : text(body.identityId, 'identityId', 64);
}

export function patchInput(body: Json): KeyPatch {
  onlyFields(body, PATCH_FIELDS, 'Updating a key');
  const patch: KeyPatch = {};
  if (body.name !== undefined) patch.name = text(body.name, 'name');
  if (body.scopes !== undefined) patch.scopes = strings(body.scopes, 'scopes');
  if (body.metadata !== undefined) patch.metadata = objectField(body.metadata, 'metadata');
  if (body.setMetadata !== undefined) patch.setMetadata = objectField(body.setMetadata, 'setMetadata');
  if (body.unsetMetadata !== undefined) patch.unsetMetadata = strings(body.unsetMetadata, 'unsetMetadata');
  if (body.expiresAt !== undefined) patch.expiresAt = time(body.expiresAt, 'expiresAt');
  if (body.expiresIn !== undefined) patch.expiresIn = duration(body.expiresIn, 'expiresIn');
  if (body.notBefore !== undefined) patch.notBefore = time(body.notBefore, 'notBefore');
  if (body.limits !== undefined) patch.limits = limits(body.limits);
  if (body.credits !== undefined) patch.credits = credits(body.credits);
  keyPolicies(body, patch);
  if (Object.keys(patch).length === 0) throw badRequest(`An update changes at least one of: ${PATCH_FIELDS.filter((f) => f !== 'reason').join(', ')}.`);
  return patch;
}

export function rotateInput(body: Json): { grace?: string | number; reason?: string } {
  onlyFields(body, ['grace', 'reason'], 'Rotating a key');
  const reason = reasonOf(body);
  return { ...(body.grace !== undefined && { grace: duration(body.grace, 'grace') }), ...(reason !== undefined && { reason }) };
}

export function revokeInput(body: Json): { reason?: string; chain: boolean } {
  onlyFields(body, ['reason', 'chain'], 'Revoking a key');
  if (body.chain !== undefined && typeof body.chain !== 'boolean') throw badRequest('chain must be true or false.');
  const reason = reasonOf(body);
  return { chain: body.chain !== false, ...(reason !== undefined && { reason }) };
}

/** The query string, each parameter at most once and only those the route takes. */
export class Query {
  private readonly params: URLSearchParams;

  constructor(search: string, allowed: readonly string[]) {
    this.params = new URLSearchParams(search);
    const seen = new Set<string>();
    for (const name of this.params.keys()) {
      if (!allowed.includes(name)) throw badRequest(`Unknown query parameter "${name.slice(0, 40)}"; this route takes: ${allowed.join(', ') || 'none'}.`);
      if (seen.has(name)) throw badRequest(`The query parameter "${name}" is given twice.`);
      seen.add(name);
    }
  }

  text(name: string, max = 200): string | undefined {
    const v = this.params.get(name);
    if (v === null) return undefined;
    if (v.length === 0 || v.length > max) throw badRequest(`${name} must be 1 to ${max} characters.`);
    return v;
  }

  int(name: string, min: number, max: number): number | undefined {
    const v = this.params.get(name);
    if (v === null) return undefined;
    if (!/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) throw badRequest(`${name} must be an integer from ${min} to ${max}.`);
    return Number(v);
  }

  /** Epoch milliseconds or an ISO 8601 date. */
  time(name: string): number | undefined {
    const v = this.params.get(name);
    if (v === null) return undefined;
    if (/^\d{1,16}$/.test(v)) return Number(v);
    const ms = /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : Number.NaN;
    if (Number.isNaN(ms)) throw badRequest(`${name} must be epoch milliseconds or an ISO 8601 date.`);
    return ms;
  }

  types(name: string): AuditType[] | undefined {
    const v = this.text(name, 400);
    if (v === undefined) return undefined;
    const list = v.split(',');
    for (const t of list)
      if (!(AUDIT_TYPES as readonly string[]).includes(t)) throw badRequest(`${name} must be a comma-separated list of: ${AUDIT_TYPES.join(', ')}.`);
    return list as AuditType[];
  }
}

/** A key id from the path. */
export function keyId(segment: string): string {
  if (!isValidKeyId(segment)) throw badRequest('The path does not name a key id (16 base62 characters).');
  return segment;
}
