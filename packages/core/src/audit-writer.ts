// Security events into the audit trail, off the request path: gathered in memory, folded, written in batches.
import type { AuditRecord, SecurityType } from './audit.js';
import { auditText, userAgentText } from './audit.js';
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';
import type { OutcomeCode } from './outcome.js';
import type { KeyStore } from './store/types.js';

export interface SecurityEvent {
  type: SecurityType;
  code: OutcomeCode;
  keyId?: string | null;
  ownerId?: string | null;
  ip?: string | undefined;
  userAgent?: unknown;
  detail?: string;
}

export interface AuditWriterOptions {
  /** Milliseconds between writes of gathered events. Default 1,000. */
  interval?: number;
  /** Most distinct events held between writes; more are counted in one `dropped` entry. Default 1,000. */
  maxPending?: number;
}

/**
 * Gathers security events and writes them to the store's trail every `interval`: the same event
 * (type, outcome, key, client, user agent) seen many times in one interval becomes one entry with a
 * `count`, so a flood of failures costs a bounded number of writes, never one per request. Never
 * throws into a request; a failed write is logged once per outage and its events are dropped.
 */
export class AuditWriter {
  private pending = new Map<string, { record: AuditRecord; count: number }>();
  private dropped = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private failing = false;
  private readonly interval: number;
  private readonly maxPending: number;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
    options: AuditWriterOptions = {},
  ) {
    this.interval = options.interval ?? 1000;
    this.maxPending = options.maxPending ?? 1000;
  }

  record(event: SecurityEvent): void {
    const ip = event.ip === undefined ? undefined : auditText(event.ip, 64) ?? undefined;
    const userAgent = userAgentText(event.userAgent);
    const signature = `${event.type}|${event.code}|${event.keyId ?? ''}|${ip ?? ''}|${userAgent ?? ''}|${event.detail ?? ''}`;
    const seen = this.pending.get(signature);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    if (this.pending.size >= this.maxPending) {
      this.dropped++;
      return;
    }
    this.pending.set(signature, {
      count: 1,
      record: {
        type: event.type,
        at: this.clock(),
        keyId: event.keyId ?? null,
        ownerId: event.ownerId ?? null,
        actor: null,
        reason: null,
        code: event.code,
        ...(ip !== undefined && { ip }),
        ...(userAgent !== undefined && { userAgent }),
        ...(event.detail !== undefined && { detail: event.detail }),
      },
    });
    if (this.timer === null) {
      this.timer = setInterval(() => void this.flush(), this.interval);
      this.timer.unref?.();
    }
  }

  /** Writes what was gathered; resolves when written (or dropped after a failure). */
  flush(): Promise<void> {
    const batch = [...this.pending.values()].map(({ record, count }) => (count === 1 ? record : { ...record, count }));
    this.pending = new Map();
    if (this.dropped > 0) {
      batch.push({ type: 'auth.failed', at: this.clock(), keyId: null, ownerId: null, actor: null, reason: null, detail: `${this.dropped} more events dropped: too many distinct events in one interval`, count: this.dropped });
      this.dropped = 0;
    }
    if (batch.length === 0) {
      if (this.timer !== null) {
        clearInterval(this.timer);
        this.timer = null;
      }
      return this.flushing;
    }
    this.flushing = this.flushing.then(() =>
      this.store.appendAudit(batch).then(
        () => {
          this.failing = false;
        },
        (error: unknown) => {
          if (!this.failing) this.logger.warn(`[till] [audit] security events could not be written and were dropped: ${error instanceof Error ? error.message : String(error)}`);
          this.failing = true;
        },
      ),
    );
    return this.flushing;
  }

  /** Writes what is left and stops the timer. */
  async close(): Promise<void> {
    await this.flush();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
