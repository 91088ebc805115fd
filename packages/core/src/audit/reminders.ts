// The `key-expiring` alert rule's check: keys expiring within N days, read from the store's expiry index on a timer, each reminded of once.
import { tillMessage } from '../errors.js';
import type { KeyManager } from '../manage/manager.js';
import type { Logger } from '../util/logger.js';

const DAY = 86_400_000;

/** What a reminder tells the alerts: the key and its expiry. */
export type Remind = (keyId: string, expiresAt: number, at: number) => void;

export interface ExpiryReminders {
  /** Runs the check now (a check already running is waited for, then run again); resolves with the reminders sent. */
  check(): Promise<number>;
  /** Resolves when no check is running. */
  idle(): Promise<void>;
  stop(): void;
}

/**
 * Every `every` ms (and once at start), reads the keys expiring within `days` days from the expiry index
 * and claims each one's reminder in the store: only the process that claims it reminds (one reminder per
 * key and expiry however many processes run the rule, and none again after a restart on Redis). A check
 * that fails (the store down) is logged and tried again at the next tick; checks never overlap.
 */
export function startExpiryReminders(keys: KeyManager, days: number, every: number, logger: Logger, remind: Remind): ExpiryReminders {
  let running: Promise<number> | null = null;
  let failing = false;
  let warnedIncomplete = false;
  let stopped = false;

  const run = async (): Promise<number> => {
    let sent = 0;
    let cursor: string | undefined;
    do {
      const page = await keys.expiring({ within: days * DAY, limit: 1000, ...(cursor !== undefined && { cursor }) });
      if (!page.complete && !warnedIncomplete) {
        warnedIncomplete = true;
        logger.warn(
          tillMessage('alerts', 'key-expiring: the expiry index does not hold the keys written before it existed yet; run `till audit --reindex` once'),
        );
      }
      const claims = await Promise.all(page.keys.map((key) => keys.claimReminder(key.id, key.expiresAt!)));
      const at = Date.now();
      page.keys.forEach((key, i) => {
        // Claimed is sent, even if stop() came meanwhile: nobody else will send it.
        if (claims[i]) {
          sent++;
          remind(key.id, key.expiresAt!, at);
        }
      });
      cursor = page.cursor;
    } while (cursor !== undefined && !stopped);
    return sent;
  };

  const check = (): Promise<number> => {
    const previous = running ?? Promise.resolve(0);
    const next: Promise<number> = previous
      .catch(() => 0)
      .then(run)
      .then(
        (sent) => {
          if (failing) logger.warn(tillMessage('alerts', 'key-expiring: the expiry check works again'));
          failing = false;
          return sent;
        },
        (error: unknown) => {
          // Once per outage, not once per tick.
          if (!failing)
            logger.error(
              tillMessage('alerts', `key-expiring: the expiry check failed, tried again every tick: ${error instanceof Error ? error.message : String(error)}`),
            );
          failing = true;
          throw error;
        },
      )
      .finally(() => {
        if (running === next) running = null;
      });
    running = next;
    return next;
  };

  const tick = () => {
    // A tick while a check runs is skipped: the running one covers it.
    if (running === null && !stopped) check().catch(() => {});
  };
  const timer = setInterval(tick, every);
  timer.unref?.();
  setImmediate(tick).unref?.();

  return {
    check,
    async idle() {
      while (running !== null) await running.catch(() => {});
    },
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
