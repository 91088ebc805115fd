// Security events into the audit trail, off the request path: gathered in memory, folded, written in batches.
import type { AuditRecord, SecurityType } from './audit.js';
import { auditText, userAgentText } from './audit.js';
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';
import type { OutcomeCode } from './outcome.js';
import { PeriodicWriter } from './batching.js';
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
export class AuditWriter extends PeriodicWriter {
  private gathered = new Map<string, { record: AuditRecord; count: number }>();
  private dropped = 0;
  private readonly maxPending: number;

  constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    logger: Logger,
    options: AuditWriterOptions = {},
  ) {
    super(logger, options.interval ?? 1000);
    this.maxPending = options.maxPending ?? 1000;
  }

  record(event: SecurityEvent): void {
    const ip = event.ip === undefined ? undefined : auditText(event.ip, 64) ?? undefined;
    const userAgent = userAgentText(event.userAgent);
    const signature = `${event.type}|${event.code}|${event.keyId ?? ''}|${ip ?? ''}|${userAgent ?? ''}|${event.detail ?? ''}`;
    const seen = this.gathered.get(signature);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    if (this.gathered.size >= this.maxPending) {
      this.dropped++;
      return;
    }
    this.gathered.set(signature, {
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
    this.schedule();
  }

  /** Writes what was gathered; resolves when written (or dropped after a failure). */
  override flush(): Promise<void> {
    const batch = [...this.gathered.values()].map(({ record, count }) => (count === 1 ? record : { ...record, count }));
    this.gathered = new Map();
    if (this.dropped > 0) {
      batch.push({ type: 'auth.failed', at: this.clock(), keyId: null, ownerId: null, actor: null, reason: null, detail: `${this.dropped} more events dropped: too many distinct events in one interval`, count: this.dropped });
      this.dropped = 0;
    }
    if (batch.length === 0) {
      this.pause();
      return this.pending;
    }
    return this.enqueue(() => this.store.appendAudit(batch), () => {}, '[till] [audit] security events could not be written and were dropped');
  }
}
