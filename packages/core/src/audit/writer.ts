// Security events into the audit trail, off the request path: gathered in memory, folded, written in batches.
import type { AuditRecord, SecurityType } from './trail.js';
import { auditText, userAgentText } from './trail.js';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { OutcomeCode } from '../verify/outcome.js';
import { PeriodicWriter } from '../util/batching.js';
import { tillError, tillMessage } from '../errors.js';
import type { KeyStore } from '../store/types.js';

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
  /**
   * Most entries one key gets per interval (one per client); the events of further clients are
   * counted in one entry without a client. Default 10.
   */
  perKey?: number;
  /**
   * Most entries one client gets per interval (one per key); its events naming further keys are
   * counted in one entry without a key. Default 10.
   */
  perClient?: number;
}

/**
 * Gathers security events and writes them to the store's trail every `interval`: the same event
 * (type, outcome, key, client) seen many times in one interval becomes one entry with a `count` (the
 * user agent of its first occurrence kept: varying it makes no new entry), and each key and each
 * client gets at most `perKey` / `perClient` entries per interval, the rest counted in one more. So a
 * flood of failures costs a bounded number of writes, never one per request, and its entries per key
 * and per client are bounded whatever it varies. Never throws into a request; a failed write is
 * logged once per outage and its events are dropped.
 */
export class AuditWriter extends PeriodicWriter {
  private gathered = new Map<string, { record: AuditRecord; count: number }>();
  /** Entries of each key and each client in this interval. */
  private perKeySeen = new Map<string, number>();
  private perClientSeen = new Map<string, number>();
  private dropped = 0;
  private readonly maxPending: number;
  private readonly perKey: number;
  private readonly perClient: number;

  constructor(
    private readonly store: KeyStore,
    private readonly clock: Clock,
    logger: Logger,
    options: AuditWriterOptions = {},
  ) {
    super(logger, options.interval ?? 1000);
    this.maxPending = options.maxPending ?? 1000;
    this.perKey = options.perKey ?? 10;
    this.perClient = options.perClient ?? 10;
    for (const [name, value] of [
      ['interval', options.interval ?? 1000],
      ['maxPending', this.maxPending],
      ['perKey', this.perKey],
      ['perClient', this.perClient],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw tillError('INVALID_OPTIONS', 'createTill', `auditEvents.${name} must be a positive integer`);
    }
  }

  record(event: SecurityEvent): void {
    const ip = event.ip === undefined ? undefined : (auditText(event.ip, 64) ?? undefined);
    const keyId = event.keyId ?? null;
    const detail = event.detail ?? '';
    const signature = `${event.type}|${event.code}|${keyId ?? ''}|${ip ?? ''}|${detail}`;
    const seen = this.gathered.get(signature);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    // Past its bound, a key's event from one more client is counted without the client, and a
    // client's event naming one more key without the key.
    // Events of no real key (malformed keys, unknown ids, blocked clients) are bounded together, per
    // type and outcome, as if of one key: a scan from many addresses is one of them.
    const bound = keyId === null || isUnknownId(event) ? `*${event.type}|${event.code}` : keyId;
    if (ip !== undefined && !this.admit(this.perKeySeen, bound, this.perKey)) {
      return this.gather(`${event.type}|${event.code}|${bound}|*|${detail}`, {
        ...event,
        ip: undefined,
        ...(bound !== keyId && { keyId: null, ownerId: null }),
        detail: joinDetail(event.detail, `from more than ${this.perKey} clients in one interval`),
      });
    }
    if (ip !== undefined && keyId !== null && !this.admit(this.perClientSeen, ip, this.perClient)) {
      return this.gather(`${event.type}|${event.code}|*|${ip}|${detail}`, {
        ...event,
        keyId: null,
        ownerId: null,
        detail: joinDetail(event.detail, `naming more than ${this.perClient} keys in one interval`),
      });
    }
    this.gather(signature, event);
  }

  /** Whether `name` may have one more entry of its own this interval (and counts it). */
  private admit(seen: Map<string, number>, name: string, max: number): boolean {
    const n = seen.get(name) ?? 0;
    if (n >= max) return false;
    seen.set(name, n + 1);
    return true;
  }

  private gather(signature: string, event: SecurityEvent): void {
    const seen = this.gathered.get(signature);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    if (this.gathered.size >= this.maxPending) {
      this.dropped++;
      return;
    }
    const ip = event.ip === undefined ? undefined : (auditText(event.ip, 64) ?? undefined);
    const userAgent = userAgentText(event.userAgent);
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
    this.perKeySeen = new Map();
    this.perClientSeen = new Map();
    if (this.dropped > 0) {
      batch.push({
        type: 'auth.failed',
        at: this.clock(),
        keyId: null,
        ownerId: null,
        actor: null,
        reason: null,
        detail: `${this.dropped} more events dropped: too many distinct events in one interval`,
        count: this.dropped,
      });
      this.dropped = 0;
    }
    if (batch.length === 0) {
      this.pause();
      return this.pending;
    }
    return this.enqueue(
      () => this.store.appendAudit(batch),
      () => {},
      tillMessage('audit', 'security events could not be written and were dropped'),
    );
  }
}

function joinDetail(detail: string | undefined, more: string): string {
  return detail === undefined ? more : `${detail}; ${more}`;
}

/** A failure naming an id that no key has (a wrong secret for a real one is `key.probed`). */
export function isUnknownId(event: { type: string; code?: string }): boolean {
  return event.type === 'auth.failed' && event.code === 'NOT_FOUND';
}
