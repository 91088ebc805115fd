// Replica confirmation: WAIT after changes (`replicas`) and, one per event-loop turn, after charges (`chargesWait`).
import type { Cluster, Redis } from 'ioredis';
import { tillError, tillMessage, type TillError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { RedisClient } from './options.js';

export class Replicas {
  /** The WAIT that confirms the charges answered in this turn of the event loop, once it is sent. */
  private chargeWait: Promise<number> | undefined;
  /** Whether the last charges went unconfirmed (logged once per stretch, and once when it ends). */
  private chargesUnconfirmed = false;

  /** `count` replicas must confirm within `timeout` ms; 0: none (no WAIT). */
  constructor(
    private readonly client: RedisClient,
    private readonly count: number,
    private readonly timeout: number,
    private readonly logger: Logger,
  ) {}

  /**
   * With `replicas`: waits until that many replicas have this client's writes (WAIT, on every primary
   * of a Cluster at once: the one that took a change waits for its replicas, the others answer at
   * once), or rejects with NOT_REPLICATED (the changes stay made on the primary).
   */
  async confirmChanges(): Promise<void> {
    if (this.count === 0) return;
    const fewest = await this.wait();
    if (fewest < this.count) {
      throw tillError(
        'NOT_REPLICATED',
        'redis',
        `the change was made on the primary, but ${fewest} of ${this.count} replicas confirmed it within ${this.timeout} ms: a failover now could undo it`,
      );
    }
  }

  /**
   * Whether the charges answered in this turn are confirmed (`chargesWait`): null when they are, or
   * the NOT_REPLICATED error their requests are refused with. The first change of state is logged.
   */
  confirmCharges(): Promise<TillError | null> {
    return this.turnWait().then((acked) => {
      if (acked >= this.count) {
        if (this.chargesUnconfirmed) {
          this.chargesUnconfirmed = false;
          this.logger.warn(tillMessage('redis', 'charges are confirmed by replicas again (chargesWait): requests are admitted again'));
        }
        return null;
      }
      if (!this.chargesUnconfirmed) {
        this.chargesUnconfirmed = true;
        this.logger.warn(
          tillMessage(
            'redis',
            `charges are not confirmed by ${this.count} replica(s) within ${this.timeout} ms (${acked} did): requests that spend credits or limits are refused with 503 until they are (chargesWait)`,
          ),
        );
      }
      return tillError(
        'NOT_REPLICATED',
        'redis',
        `a charge was made on the primary, but ${acked} of ${this.count} replicas confirmed it within ${this.timeout} ms (chargesWait): refused and refunded`,
      );
    });
  }

  /**
   * One WAIT for the charges answered in this turn of the event loop: sent at the next
   * `setImmediate`, after every reply read in this turn, so one WAIT covers all their batches.
   */
  private turnWait(): Promise<number> {
    if (this.chargeWait === undefined) {
      this.chargeWait = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.chargeWait = undefined;
        return this.wait();
      });
    }
    return this.chargeWait;
  }

  /**
   * How many replicas have every write this client made so far: WAIT on the primary (on every primary
   * of a Cluster at once, the fewest answer), 0 when it fails.
   */
  private wait(): Promise<number> {
    const nodes = (this.client as Cluster).isCluster ? (this.client as Cluster).nodes('master') : [this.client as Redis];
    return Promise.all(nodes.map((node) => node.wait(this.count, this.timeout))).then(
      (acked) => Math.min(...acked.map(Number)),
      () => 0,
    );
  }
}
