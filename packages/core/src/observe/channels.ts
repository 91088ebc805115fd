// Till's diagnostics channels: every name, and the shape of every message, a subscriber can rely on.
//
// Till publishes on `node:diagnostics_channel` only while a channel has subscribers: the request path
// pays one boolean read per channel, builds no message and reads no clock otherwise. Metrics, alerts,
// `till.events` and OpenTelemetry tracing all subscribe here; nothing wraps or patches a store.
//
//   import { subscribe } from 'node:diagnostics_channel';
//   subscribe('till:verify', (message) => console.log(message.code, message.keyId, message.duration));
//
// Every message names the Till it came from (`till`, the Till's `name`), so an application with two
// can tell them apart. No message holds a key, a secret or a hash: key ids are public. A subscriber
// that throws is reported by Node as an uncaught exception (that is diagnostics_channel's contract):
// catch inside it.
import { channel, tracingChannel } from 'node:diagnostics_channel';
import type { ChargeOutcome } from '../limits/rules.js';
import type { AsyncMethod } from '../store/types.js';
import type { OutcomeCode } from '../verify/outcome.js';

/** The names Till publishes under. `store` is a tracing channel: its events are `tracing:till:store:start`, `:end`, `:asyncStart`, `:asyncEnd`, `:error`. */
export const TILL_CHANNELS = {
  /** Each `verify()` once it has an answer: a {@link VerifyMessage}. */
  verify: 'till:verify',
  /** Each request the middleware authenticates or a guard refuses, as it saw it (client address included): a {@link RequestMessage}. */
  request: 'till:request',
  /** Each charge against rate limits or credits once it is answered: a {@link LimitMessage}. */
  limit: 'till:limit',
  /** Each event of `till.events` (fallbacks, blocked clients, ...): a {@link EventMessage}. */
  event: 'till:event',
  /** Each call to the store, traced: a {@link StoreCallContext}. */
  store: 'till:store',
} as const;

// What `till.events` listeners get (and, with `till`, what `till:request` and `till:event` carry).

/** One verification's outcome, as the middleware saw it. Never the key: its public id at most. */
export interface VerificationEvent {
  readonly code: OutcomeCode;
  /** The key's id when the key parsed (for NOT_FOUND too: an id is public). */
  readonly keyId: string | null;
  /**
   * True for a NOT_FOUND whose id is a real key's with a wrong secret: probing of that id (the client
   * got the very answer an unknown id gets).
   */
  readonly probe?: true;
  readonly ip?: string;
  readonly userAgent?: string;
  /** Credits left after the request, when the key has credits. */
  readonly credits?: number | null;
  readonly at: number;
}

export type VerificationListener = (event: VerificationEvent) => void;

/** Every event Till emits. Ids are public key ids; no event ever holds a key, a secret or a hash. */
export type TillEvent =
  /** The store stopped answering rate-limit charges: limits now count in this process only. */
  | { readonly type: 'limits.fallback'; readonly store: string; readonly reason: string }
  /** The store answers charges again: limits are shared again. */
  | { readonly type: 'limits.restored'; readonly store: string }
  /** A client failed authentication too often and is refused until `until` (epoch ms). */
  | { readonly type: 'client.blocked'; readonly ip: string; readonly until: number; readonly failures: number }
  /** A rate-limit guard ran twice for one request; the second run was not charged. */
  | { readonly type: 'guard.repeated'; readonly name: string }
  /**
   * The store could not subscribe to key changes (a Redis user without the channel, say): cached keys
   * are not trusted, and every verification reads the store until it can.
   */
  | { readonly type: 'invalidations.failed'; readonly store: string; readonly reason: string }
  /** The subscription to key changes is confirmed again after a failure. */
  | { readonly type: 'invalidations.restored'; readonly store: string }
  /** A role was defined, or its scopes replaced (through this Till's `roles`). */
  | { readonly type: 'role.defined'; readonly name: string; readonly scopes: readonly string[]; readonly version: number }
  /** A role was deleted; `keys` still held it (a forced deletion). */
  | { readonly type: 'role.deleted'; readonly name: string; readonly keys: number }
  /** An identity was created, updated or deleted through `till.identities` (its audit entry says how). */
  | {
      readonly type: 'identity.created' | 'identity.updated' | 'identity.deleted';
      readonly identityId: string;
      readonly actor: string | null;
      /** For a forced deletion: how many keys still named the identity. */
      readonly keys?: number;
    };

export type TillEventType = TillEvent['type'];
export type TillEventListener = (event: TillEvent) => void;

/** One verification's answer. */
export interface VerifyMessage {
  /** The name of the Till that verified (`createTill({ name })`). */
  readonly till: string;
  readonly code: OutcomeCode;
  /** The key's public id when the answer names one (never for NOT_FOUND: an unknown id may be anyone's noise). */
  readonly keyId: string | null;
  /** Whether the key was answered from this process's cache, without reading the store. */
  readonly cacheHit: boolean;
  /** Whether a valid key was accepted from the stale window while the store was unreachable. */
  readonly stale: boolean;
  /** Milliseconds from the call to the answer. */
  readonly duration: number;
}

/** One request's authentication as the middleware saw it (what `till.events.onVerification` listeners get), and its Till. */
export type RequestMessage = VerificationEvent & { readonly till: string };

/** One event of `till.events`, and its Till. */
export type EventMessage = TillEvent & { readonly till: string };

/** One charge against rate limits (and a key's credits). */
export interface LimitMessage {
  readonly till: string;
  /** Whose limits: a key id, or another subject such as `ip:203.0.113.7`. */
  readonly subject: string;
  /** Names of the limits charged, in order (the key's, the middleware's, then its identity's; empty when only credits were). */
  readonly limits: readonly string[];
  /** Credits the request spends (0 when none). */
  readonly cost: number;
  /**
   * The store's answer: `OK` (admitted), `RATE_LIMITED`, `USAGE_EXCEEDED`, `NOT_FOUND` and `CHANGED` (the
   * key is gone or changed: judged again), or `UNAVAILABLE` (the store could not charge it).
   */
  readonly outcome: ChargeOutcome | 'NOT_FOUND' | 'CHANGED' | 'UNAVAILABLE';
  readonly admitted: boolean;
  /** Whether it was counted in this process because the store was unreachable (limits are then per process). */
  readonly fallback: boolean;
  /** Milliseconds from the charge to its answer. */
  readonly duration: number;
}

/** The store methods whose calls are traced. */
export type StoreMethod = AsyncMethod;

/**
 * One store call, the context object of every event of the `till:store` tracing channel. `ok`,
 * `duration` and (on failure) `error` are set before `asyncEnd` (and `error`) are published; the
 * call's arguments and result are left out (they hold records and their hashes).
 */
export interface StoreCallContext {
  readonly till: string;
  /** The store's kind: `memory`, `redis`. */
  readonly store: string;
  readonly method: StoreMethod;
  ok?: boolean;
  duration?: number;
  error?: unknown;
}

export const verifyChannel = channel(TILL_CHANNELS.verify);
export const requestChannel = channel(TILL_CHANNELS.request);
export const limitChannel = channel(TILL_CHANNELS.limit);
export const eventChannel = channel(TILL_CHANNELS.event);
export const storeChannel = tracingChannel<unknown, StoreCallContext>(TILL_CHANNELS.store);
