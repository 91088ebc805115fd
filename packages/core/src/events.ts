// In-process events: what Till tells the application about itself while it runs.

/** Every event Till emits. Ids are public key ids; no event ever holds a key, a secret or a hash. */
export type TillEvent =
  /** The store stopped answering rate-limit charges: limits now count in this process only. */
  | { readonly type: 'limits.fallback'; readonly store: string; readonly reason: string }
  /** The store answers charges again: limits are shared again. */
  | { readonly type: 'limits.restored'; readonly store: string }
  /** A client failed authentication too often and is refused until `until` (epoch ms). */
  | { readonly type: 'client.blocked'; readonly ip: string; readonly until: number; readonly failures: number }
  /** A rate-limit guard ran twice for one request; the second run was not charged. */
  | { readonly type: 'guard.repeated'; readonly name: string };

export type TillEventType = TillEvent['type'];
export type TillEventListener = (event: TillEvent) => void;

/** A small synchronous emitter: a listener that throws is reported to `onError`, never to the request. */
export class TillEvents {
  private readonly listeners = new Set<TillEventListener>();

  constructor(private readonly onError: (error: unknown) => void = () => {}) {}

  /** Listens to every event; returns the unsubscribe. */
  on(listener: TillEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: TillEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.onError(error);
      }
    }
  }
}
