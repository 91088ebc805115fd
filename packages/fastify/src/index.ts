// @till/fastify: API key hooks for Fastify 5. Thin: core verifies, this maps to HTTP.
import {
  createAuthenticator,
  createRateLimitGuard,
  createScopeCheck,
  problemResponse,
  tillError,
  type AuthOptions,
  type ProblemResponse,
  type RateLimitOptions,
  type Usage,
  type VerifiedKey,
  type VerifyFailure,
} from '@till/core';
import type { FastifyReply, FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** The key that authenticated this request, set by `apiKeyAuth()`. */
    apiKey?: VerifiedKey;
    /** The key's limits and credits after this request was charged, when it was. */
    apiKeyUsage?: Usage;
  }
}

/** What every function here returns: an async hook, for `onRequest` or `preHandler`. */
export type TillHook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Replaces the default response for a failure. `response` is what Till would send; call
 * `sendProblem(reply, response)` to send it after all, or send your own (and return or await
 * `reply`, as Fastify asks of async hooks). A handler that sends nothing gets the default response:
 * a refusal never lets the request through.
 */
export type FailureHandler = (failure: VerifyFailure, request: FastifyRequest, reply: FastifyReply, response: ProblemResponse) => unknown;

export interface ApiKeyAuthOptions extends AuthOptions<FastifyRequest> {
  /** Replaces the default RFC 9457 response (also used by `requireScopes` after this hook). */
  onFailure?: FailureHandler;
}

/** Sends a problem response (as bytes, so that Fastify adds no charset to its content type). */
export function sendProblem(reply: FastifyReply, response: ProblemResponse): FastifyReply {
  setHeaders(reply, response.headers);
  return reply.code(response.status).send(Buffer.from(JSON.stringify(response.body)));
}

/** Sets headers; the rate-limit lists join what an earlier Till hook set (one item per limit). */
function setHeaders(reply: FastifyReply, headers: Readonly<Record<string, string>>): void {
  for (const name in headers) {
    const value = headers[name]!;
    const before = (name === 'ratelimit' || name === 'ratelimit-policy') && reply.getHeader(name);
    reply.header(name, typeof before === 'string' && before !== '' ? `${before}, ${value}` : value);
  }
}

/** The client IP as Fastify sees it, by the app's `trustProxy` setting. */
const ipOf = (request: FastifyRequest): string | undefined => request.ip;

type Responder = (failure: VerifyFailure, request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Holds the hook chain until a refusal is written. Fastify runs the next hook as soon as an async
 * hook settles, unless the reply has ended: settling while an async onSend hook still runs (or once
 * the client hung up mid-answer) would run the route handler without a key. So this settles when the
 * reply has ended, and never when the connection closed first.
 */
async function halted(reply: FastifyReply): Promise<void> {
  await new Promise<void>((resolve) => reply.then(resolve, () => resolve()));
  if (!reply.sent) await new Promise<never>(() => {});
}

/** Answers a refusal with `onFailure` (or the default); a handler that sends nothing gets the default. */
async function refuse(onFailure: FailureHandler | undefined, failure: VerifyFailure, response: ProblemResponse, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (onFailure !== undefined) await onFailure(failure, request, reply, response);
  if (!reply.sent && !reply.raw.headersSent) sendProblem(reply, response);
  return halted(reply);
}

function checkOnFailure(options: unknown): FailureHandler | undefined {
  const onFailure = options !== null && typeof options === 'object' ? (options as { onFailure?: unknown }).onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') {
    throw tillError('INVALID_OPTIONS', 'fastify', 'onFailure must be a function');
  }
  return onFailure as FailureHandler | undefined;
}

/**
 * Verifies the API key of every request: `app.addHook('onRequest', apiKeyAuth())` (before the body
 * is parsed), or per route. On success `request.apiKey` holds the key (never its secret); on failure
 * the reply is 401, 403, 429 or 503 with a problem+json body, and the route handler never runs.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): TillHook {
  // Checked first: a bad option must fail before any default Till is made.
  const onFailure = checkOnFailure(options);
  const auth = createAuthenticator(options, 'fastify', ['onFailure']);
  const respond: Responder = (failure, request, reply) => refuse(onFailure, failure, auth.problem(failure), request, reply);
  // Guards after this hook answer like it; with default options that is their own default.
  const custom = onFailure !== undefined || options?.realm !== undefined ? respond : null;
  return async function tillApiKeyAuth(request, reply) {
    let result = auth.authenticate(request.raw, request, ipOf, custom);
    if (result instanceof Promise) result = await result;
    if (result === null) return;
    if (!result.valid) return respond(result, request, reply);
    request.apiKey = result.key;
    if (result.usage !== undefined) {
      request.apiKeyUsage = result.usage;
      const headers = auth.headers(result);
      if (headers !== null) setHeaders(reply, headers);
    }
  };
}

function scopeGuard(scopes: readonly unknown[], mode: 'all' | 'any'): TillHook {
  const check = createScopeCheck(scopes, mode, 'fastify');
  return async function tillRequireScopes(request, reply) {
    const refusal = check(request.raw, () => request.ip);
    if (refusal === null) return;
    if (refusal.settled !== null) await refusal.settled;
    const respond = refusal.respond as Responder | null;
    // Without apiKeyAuth() before it there is no key (and no custom handler): refuse with the default.
    return respond !== null ? respond(refusal.failure, request, reply) : refuse(undefined, refusal.failure, problemResponse(refusal.failure), request, reply);
  };
}

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): TillHook {
  return scopeGuard(scopes, 'all');
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): TillHook {
  return scopeGuard(scopes, 'any');
}

export interface RateLimitHookOptions extends RateLimitOptions<FastifyRequest> {
  /** Replaces the default 429 (or the 401 of `by: 'key'` without a key). */
  onFailure?: FailureHandler;
}

/**
 * Limits a route: `limit` requests per `window` per API key (default), per client IP (`request.ip`,
 * so the app's `trustProxy` setting decides what the client IP is) or per the value of a function.
 * Sets the `RateLimit` headers; refuses with 429, `Retry-After` and a problem+json body, and gives
 * back what the request was charged before it. Counts in the Till of the `apiKeyAuth()` before it;
 * on its own (`by: 'ip'` or a function), give it `{ till }`.
 */
export function rateLimit(options: RateLimitHookOptions): TillHook {
  const onFailure = checkOnFailure(options);
  const guard = createRateLimitGuard(options, 'fastify', ['onFailure']);
  return async function tillRateLimit(request, reply) {
    let verdict = guard.check(request.raw, request, ipOf);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict === null) return;
    if (verdict.ok) return setHeaders(reply, verdict.headers);
    return refuse(onFailure, verdict.failure, verdict.response, request, reply);
  };
}

export type { VerifiedKey, VerifyFailure, ProblemResponse, Usage, LimitState, RateLimitHeaderStyle } from '@till/core';
