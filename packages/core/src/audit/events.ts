// In-process events: what Till tells the application about itself while it runs.
import type { OutcomeCode } from '../verify/outcome.js';

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
  | { readonly type: 'invalidations.restored'; readonly store: string };

export type TillEventType = TillEvent['type'];
export type TillEventListener = (event: TillEvent) => void;

/** A small synchronous emitter: a listener that throws is reported to `onError`, never to the request. */
export class TillEvents {
  private readonly listeners = new Set<TillEventListener>();
  private readonly outcomes = new Set<VerificationListener>();

  constructor(private readonly onError: (error: unknown) => void = () => {}) {}

  /** Whether anyone listens to verification outcomes: when not, the request path builds no event. */
  get observed(): boolean {
    return this.outcomes.size > 0;
  }

  /** Listens to every event; returns the unsubscribe. */
  on(listener: TillEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listens to every verification outcome (every request through `apiKeyAuth()` and the guards). */
  onVerification(listener: VerificationListener): () => void {
    this.outcomes.add(listener);
    return () => this.outcomes.delete(listener);
  }

  emit(event: TillEvent): void {
    this.deliver(this.listeners, event);
  }

  emitVerification(event: VerificationEvent): void {
    this.deliver(this.outcomes, event);
  }

  private deliver<E>(listeners: ReadonlySet<(event: E) => void>, event: E): void {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        this.onError(error);
      }
    }
  }
}
