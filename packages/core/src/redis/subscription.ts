// The invalidation subscription: listeners, SUBSCRIBE on every connection with retry backoff, and whether messages may be lost.
import type { InvalidationListener, SubscriptionListener } from '../store/types.js';
import type { RedisClient } from './options.js';

/** Delays between tries of a SUBSCRIBE that Redis refused (doubling from the first to the last). */
const RESUBSCRIBE_MIN_MS = 250;
const RESUBSCRIBE_MAX_MS = 30_000;

export class Subscription {
  private readonly listeners = new Set<InvalidationListener>();
  private readonly statusListeners = new Set<SubscriptionListener>();
  private subscribed = false;
  /** Whether the subscription is confirmed and its connection up: see lost(). */
  private heard = false;
  private detach: (() => void) | undefined;
  private subscriber: RedisClient | undefined;
  private readonly ownsSubscriber: boolean;

  /** `subscriber` undefined: a duplicate of `client`, made on the first listener and closed by close(). */
  constructor(
    private readonly client: RedisClient,
    subscriber: RedisClient | undefined,
    private readonly channel: string,
  ) {
    this.subscriber = subscriber;
    this.ownsSubscriber = subscriber === undefined;
  }

  /** Adds a listener (subscribing on the first); returns its removal. */
  listen(listener: InvalidationListener, onStatus?: SubscriptionListener): () => void {
    this.listeners.add(listener);
    if (onStatus !== undefined) this.statusListeners.add(onStatus);
    if (!this.subscribed) this.subscribe();
    return () => {
      this.listeners.delete(listener);
      if (onStatus !== undefined) this.statusListeners.delete(onStatus);
    };
  }

  /**
   * Whether changes made elsewhere may be going unheard: the store was asked to listen, and its
   * subscription is not confirmed right now (not yet, refused, or its connection dropped).
   */
  lost(): boolean {
    return this.subscribed && !this.heard;
  }

  /** Drops every listener and unsubscribes; disconnects the subscriber if it made it. */
  close(): void {
    this.listeners.clear();
    this.statusListeners.clear();
    this.subscribed = false;
    this.detach?.();
    this.detach = undefined;
    if (this.subscriber && this.ownsSubscriber) {
      const sub = this.subscriber;
      this.subscriber = undefined;
      sub.disconnect();
    }
  }

  private subscribe(): void {
    this.subscribed = true;
    this.heard = false;
    const sub = (this.subscriber ??= this.client.duplicate() as RedisClient);
    const onMessage = (channel: string, id: string) => {
      if (channel === this.channel) this.emit(id);
    };
    sub.on('message', onMessage);
    // Subscribed on every (re)connection, and only once Redis confirms it are cached records
    // trusted (and dropped, as of that moment: anything cached before, at start or during an
    // outage, may have missed its message). A SUBSCRIBE that Redis refuses (an ACL without the
    // channel) is reported and tried again with a growing delay while the connection stays up.
    let retry: ReturnType<typeof setTimeout> | undefined;
    let delay = RESUBSCRIBE_MIN_MS;
    const confirm = () => {
      clearTimeout(retry);
      sub.subscribe(this.channel).then(
        () => {
          delay = RESUBSCRIBE_MIN_MS;
          this.heard = true;
          this.status(null);
          this.emit(null);
        },
        (error: unknown) => {
          if (!this.subscribed || sub.status !== 'ready') return; // tried again on the next connection
          this.status(error instanceof Error ? error : new Error(String(error)));
          retry = setTimeout(confirm, delay);
          retry.unref?.();
          delay = Math.min(delay * 2, RESUBSCRIBE_MAX_MS);
        },
      );
    };
    // From the moment the connection drops, messages can be missed: the verifier reads through to
    // the store (or, with Redis down, serves its stale window) until the subscription is confirmed.
    const onDown = () => {
      this.heard = false;
    };
    // Reconnection is ioredis's job; an unhandled 'error' event would crash the process.
    const onError = () => {};
    sub.on('ready', confirm);
    sub.on('close', onDown);
    sub.on('error', onError);
    // A subscriber the store made follows the application's client: once that client has ended for
    // good (its quit() or disconnect(), or ioredis gave up on it), the store can read nothing, and its
    // own connection must not hold the process open; when the client connects again, so does it.
    const owned = this.ownsSubscriber;
    const onClientEnd = () => {
      if (sub.status !== 'end') sub.disconnect();
    };
    const onClientReady = () => {
      if (sub.status === 'end') sub.connect().catch(() => {});
    };
    if (owned) {
      this.client.on('end', onClientEnd);
      this.client.on('ready', onClientReady);
    }
    if (sub.status === 'ready') confirm();
    // A client made with lazyConnect (and its duplicate) waits for a first command; a subscriber
    // that never connected would never hear a revocation.
    else if (sub.status === 'wait') sub.connect().catch(() => {});
    this.detach = () => {
      clearTimeout(retry);
      this.heard = false;
      sub.off('message', onMessage);
      sub.off('ready', confirm);
      sub.off('close', onDown);
      sub.off('error', onError);
      if (owned) {
        this.client.off('end', onClientEnd);
        this.client.off('ready', onClientReady);
      }
      sub.unsubscribe(this.channel).catch(() => {});
    };
  }

  private status(error: Error | null): void {
    for (const listener of this.statusListeners) {
      try {
        listener(error);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private emit(id: string | null): void {
    for (const listener of this.listeners) listener(id);
  }
}
