// @till/fastify: API key hooks for Fastify 5, the mapping of @till/core/http to Fastify.
import { createAdapter, type AuthOptions, type ProblemResponse, type RateLimitOptions, type Refusal, type Step } from '@till/core/http';
import type { Usage, VerifiedKey, VerifyFailure } from '@till/core';
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
 * Replaces the default response for a failure. `response` is what Till would send; return
 * `sendProblem(reply, response)` to send it after all, or `reply.code(...).send(...)` your own:
 * return (or await) the reply, as Fastify asks of async hooks, since one still being sent (by an
 * async onSend hook) when the handler returns looks unanswered. A handler that leaves the reply
 * unanswered gets the default response: a refusal never lets the request through.
 */
export type FailureHandler = (failure: VerifyFailure, request: FastifyRequest, reply: FastifyReply, response: ProblemResponse) => unknown;

export interface ApiKeyAuthOptions extends AuthOptions<FastifyRequest> {
  /** Replaces the default RFC 9457 response (also used by `requireScopes` after this hook). */
  onFailure?: FailureHandler;
}

const kit = createAdapter<FastifyRequest, FastifyReply, FailureHandler>({
  name: 'fastify',
  // The Node request, shared with Express and Koa middleware: one context per request whatever the framework.
  node: (request) => request.raw,
  // The client IP as Fastify sees it, by the app's `trustProxy` setting.
  ip: (request) => request.ip,
  getHeader: (reply, name) => reply.getHeader(name),
  setHeader: (reply, name, value) => void reply.header(name, value),
  holder: (request) => request,
});

/** Sends a problem response (as bytes, so that Fastify adds no charset to its content type). */
export function sendProblem(reply: FastifyReply, response: ProblemResponse): FastifyReply {
  kit.setHeaders(reply, response.headers);
  return reply.code(response.status).send(Buffer.from(JSON.stringify(response.body)));
}

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
async function refuse({ failure, response, onFailure }: Refusal<FailureHandler>, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (onFailure !== undefined) await onFailure(failure, request, reply, response);
  if (!reply.sent && !reply.raw.headersSent) sendProblem(reply, response);
  return halted(reply);
}

/** A step of the kit as an async Fastify hook. */
function hook(name: string, step: (request: FastifyRequest, reply: FastifyReply) => Step<FailureHandler>): TillHook {
  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    let refusal = step(request, reply);
    if (refusal instanceof Promise) refusal = await refusal;
    if (refusal !== null) return refuse(refusal, request, reply);
  };
  return Object.defineProperty(handler, 'name', { value: name });
}

/**
 * Verifies the API key of every request: `app.addHook('onRequest', apiKeyAuth())` (before the body
 * is parsed), or per route. On success `request.apiKey` holds the key (never its secret); on failure
 * the reply is 401, 403, 429 or 503 with a problem+json body, and the route handler never runs.
 */
export function apiKeyAuth(options?: ApiKeyAuthOptions): TillHook {
  return hook('tillApiKeyAuth', kit.apiKeyAuth(options));
}

/** Lets the request through only if its key holds every one of `scopes` (wildcards on the key count). */
export function requireScopes(...scopes: string[]): TillHook {
  return hook('tillRequireScopes', kit.scopeGuard(scopes, 'all'));
}

/** Lets the request through if its key holds at least one of `scopes`. */
export function requireAnyScope(...scopes: string[]): TillHook {
  return hook('tillRequireScopes', kit.scopeGuard(scopes, 'any'));
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
  return hook('tillRateLimit', kit.rateLimit(options));
}

export type { VerifiedKey, VerifyFailure, Usage, LimitState } from '@till/core';
export type { ProblemResponse, RateLimitHeaderStyle } from '@till/core/http';
