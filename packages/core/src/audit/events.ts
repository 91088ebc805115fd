// In-process events: what Till tells the application about itself while it runs.
import type { Channel } from 'node:diagnostics_channel';
import {
  eventChannel,
  requestChannel,
  type EventMessage,
  type RequestMessage,
  type TillEvent,
  type TillEventListener,
  type VerificationEvent,
  type VerificationListener,
} from '../observe/channels.js';

export type { TillEvent, TillEventType, TillEventListener, VerificationEvent, VerificationListener } from '../observe/channels.js';

/** Names made for Tills and emitters not given one: one count per process, whichever build (ESM, CommonJS) makes them. */
const COUNT = Symbol.for('till.instances');

/** A name no other Till of this process has by default: `till-1`, `till-2`, ... */
export function newTillName(): string {
  const global = globalThis as { [COUNT]?: number };
  global[COUNT] = (global[COUNT] ?? 0) + 1;
  return `till-${global[COUNT]}`;
}

/**
 * A Till's events, carried by the `till:event` and `till:request` diagnostics channels: `emit` publishes
 * there, and `on` and `onVerification` subscribe there to the messages of this Till (`till`), so that
 * metrics, alerts, tracing and an application's own subscribers all hear one stream. Delivery is
 * synchronous; a listener that throws is reported to `onError`, never to the request.
 */
export class TillEvents {
  /** The name the messages carry: the Till's name. */
  readonly till: string;
  private readonly listeners = new Set<TillEventListener>();
  private readonly outcomes = new Set<VerificationListener>();

  constructor(
    private readonly onError: (error: unknown) => void = () => {},
    till: string = newTillName(),
  ) {
    this.till = till;
  }

  /** Whether anyone listens to verification outcomes (of any Till): when not, the request path builds no event. */
  get observed(): boolean {
    return requestChannel.hasSubscribers;
  }

  /** Listens to every event; returns the unsubscribe. */
  on(listener: TillEventListener): () => void {
    return this.listen(eventChannel, this.listeners, this.hearEvent, listener);
  }

  /** Listens to every verification outcome (every request through `apiKeyAuth()` and the guards). */
  onVerification(listener: VerificationListener): () => void {
    return this.listen(requestChannel, this.outcomes, this.hearOutcome, listener);
  }

  emit(event: TillEvent): void {
    if (eventChannel.hasSubscribers) eventChannel.publish({ ...event, till: this.till });
  }

  emitVerification(event: VerificationEvent): void {
    if (requestChannel.hasSubscribers) requestChannel.publish({ ...event, till: this.till });
  }

  // One subscription per channel while this emitter has listeners on it, none otherwise: an emitter
  // nobody listens to is not held by the channel.
  private listen<L>(on: Channel, listeners: Set<L>, hear: (message: unknown) => void, listener: L): () => void {
    if (listeners.size === 0) on.subscribe(hear);
    listeners.add(listener);
    return () => {
      if (listeners.delete(listener) && listeners.size === 0) on.unsubscribe(hear);
    };
  }

  private readonly hearEvent = (message: unknown): void => {
    if ((message as EventMessage).till !== this.till) return;
    const { till: _, ...event } = message as EventMessage;
    this.deliver(this.listeners, event as TillEvent);
  };

  private readonly hearOutcome = (message: unknown): void => {
    if ((message as RequestMessage).till !== this.till) return;
    const { till: _, ...event } = message as RequestMessage;
    this.deliver(this.outcomes, event);
  };

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
