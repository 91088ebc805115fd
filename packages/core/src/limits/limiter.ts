// Charges requests to the store's limits, falling back to per-process limits while the store is down.
import type { Clock } from '../util/clock.js';
import { TillError, tillMessage } from '../errors.js';
import type { TillEvents } from '../audit/events.js';
import { LocalBuckets } from './buckets.js';
import { limitChannel } from '../observe/channels.js';
import { publishCharge } from '../observe/publish.js';
import type { Logger } from '../util/logger.js';
import type { ConsumeRequest, ConsumeResult, KeyStore } from '../store/types.js';

/** The charge could not be made: the store is down and the request spends credits, or it failed. */
export const UNAVAILABLE = 'UNAVAILABLE';

export class Limiter {
  private readonly local = new LocalBuckets();
  /** Results of charges made in this process while the store was down: their refunds go there too. */
  private readonly localResults = new WeakSet<object>();
  private degraded = false;

  constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    private readonly events: TillEvents,
    /** Told once per outage that limits count per process. */
    private readonly logger?: Pick<Logger, 'warn'>,
  ) {}

  /**
   * Charges a request. While the store is unreachable, rate limits count in this process (each
   * process then admits up to the full limit: limits stay bounded, not shared) and a `limits.fallback`
   * event says so; credits cannot be counted apart from the store, so a request that spends credits
   * gets UNAVAILABLE (503), never a free pass. Each answer is published on `till:limit` while someone subscribes.
   */
  consume(request: Omit<ConsumeRequest, 'now'>, spendsCredits: boolean, fallback = true): Promise<ConsumeResult | typeof UNAVAILABLE> {
    const charged = this.charge(request, spendsCredits, fallback);
    return limitChannel.hasSubscribers ? publishCharge(this.events.till, request, charged, (result) => this.localResults.has(result)) : charged;
  }

  private charge(request: Omit<ConsumeRequest, 'now'>, spendsCredits: boolean, fallback: boolean): Promise<ConsumeResult | typeof UNAVAILABLE> {
    const now = this.clock();
    let pending: Promise<ConsumeResult>;
    try {
      pending = this.store.consume({ ...request, now });
    } catch (error) {
      pending = Promise.reject(error);
    }
    return pending.then(
      (result) => {
        if (this.degraded) {
          this.degraded = false;
          this.events.emit({ type: 'limits.restored', store: this.store.kind });
        }
        return result;
      },
      (error: unknown) => {
        if (!(error instanceof TillError && error.code === 'STORE_UNAVAILABLE')) return UNAVAILABLE;
        if (!this.degraded) {
          this.degraded = true;
          this.logger?.warn(
            tillMessage(
              'limits',
              `the ${this.store.kind} store is unreachable: rate limits count in this process only until it returns; requests that spend credits get 503`,
            ),
          );
          this.events.emit({ type: 'limits.fallback', store: this.store.kind, reason: error.message });
        }
        // Without the store, a charge that spends credits cannot be made; one that needs no local stand-in (it has one of its own) is not.
        if (spendsCredits || !fallback) return UNAVAILABLE;
        const local = this.local.consume(request.subject, request.limits, null, this.clock());
        this.localResults.add(local);
        return local;
      },
    );
  }

  /**
   * Undoes a charge that was admitted (`result` is what `consume` answered), where it was made: a
   * later guard refused the request, and a refused request spends nothing. Limits get back what it
   * used as of now (exactly what they would hold had it never been charged); credits get back its
   * cost, unless they were set anew since.
   */
  refund(request: Omit<ConsumeRequest, 'now'>, result: ConsumeResult): Promise<void> {
    const now = this.clock();
    if (this.localResults.has(result)) {
      this.local.refund(request.subject, request.limits, null, now);
      return Promise.resolve();
    }
    if (this.store.refund === undefined) return Promise.resolve();
    try {
      return this.store.refund({ ...request, now });
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
