// The live events stream: audit entries as Server-Sent Events, read from the store's trail.
//
// The stream tails the trail rather than listening to this process's `till.events`: the refusals that
// matter happen in the app's processes, which may be many and other than the console's (`till
// console` runs on its own), and every one of them writes its security events to the trail in the
// store. An entry is on the stream about a second after it happened (the audit writer's batch)
// plus the poll interval. The trail has no secret and no digest, so neither has the stream.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AUDIT_TYPES, type AuditEntry, type AuditType, OUTCOME_CODES, SECURITY_TYPES, type Till } from '@till/core';
import { API_HEADERS } from './respond.js';
import type { Query } from './input.js';
import { badRequest } from './respond.js';

export interface EventsFilter {
  types: ReadonlySet<AuditType>;
  keyId?: string;
  ownerId?: string;
  code?: string;
}

export const EVENTS_QUERY = ['types', 'keyId', 'ownerId', 'code', 'since'];

/** The filter a stream's query asks for; security events only unless `types` says otherwise. */
export function eventsFilter(query: Query): { filter: EventsFilter; since: number | undefined } {
  const types = query.types('types') ?? [...SECURITY_TYPES];
  const code = query.text('code', 40);
  if (code !== undefined && !(OUTCOME_CODES as readonly string[]).includes(code)) throw badRequest(`code must be one of: ${OUTCOME_CODES.join(', ')}.`);
  const keyId = query.text('keyId');
  const ownerId = query.text('ownerId');
  return {
    filter: { types: new Set(types), ...(keyId !== undefined && { keyId }), ...(ownerId !== undefined && { ownerId }), ...(code !== undefined && { code }) },
    since: query.time('since'),
  };
}

function passes(entry: AuditEntry, f: EventsFilter): boolean {
  if (!f.types.has(entry.type)) return false;
  if (f.keyId !== undefined && entry.keyId !== f.keyId) return false;
  if (f.ownerId !== undefined && entry.ownerId !== f.ownerId) return false;
  return f.code === undefined || entry.code === f.code;
}

const ENTRY_ID = /^\d{1,16}-\d{1,16}$/;

export interface StreamOptions {
  /** How often the trail is read. */
  pollInterval: number;
  /**
   * Whether the key that opened the stream may still read it, asked before every read: a stream
   * outlives its sign-in, and a revoked, disabled, expired or narrowed key must stop receiving.
   */
  allowed: () => Promise<boolean>;
  /** How often a comment keeps idle connections (and proxies) open. */
  heartbeat: number;
}

/**
 * Streams the entries that pass `filter`, from `since` (default: now) or after the `Last-Event-ID` a
 * reconnecting browser sends, until the client goes away. Each event's id is the entry's, so a
 * reconnection resumes where it stopped.
 */
export function streamEvents(
  till: Till,
  req: IncomingMessage,
  res: ServerResponse,
  filter: EventsFilter,
  since: number | undefined,
  options: StreamOptions,
): void {
  const last = req.headers['last-event-id'];
  let cursor: string | undefined = typeof last === 'string' && ENTRY_ID.test(last) ? last : undefined;
  const from = since ?? Date.now();
  // Which logs the store reads: only the security log unless changes are asked for.
  const wantsChanges = [...filter.types].some((t) => !(SECURITY_TYPES as readonly string[]).includes(t));
  const types: readonly AuditType[] = wantsChanges ? AUDIT_TYPES : SECURITY_TYPES;
  res.statusCode = 200;
  for (const [name, value] of Object.entries(API_HEADERS)) res.setHeader(name, value);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('connection', 'keep-alive');
  // Proxies that buffer answers (nginx) would hold the events back.
  res.setHeader('x-accel-buffering', 'no');
  res.flushHeaders();
  res.write(`retry: 2000\n: till console events\n\n`);

  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const beat = setInterval(() => res.write(': ping\n\n'), options.heartbeat);
  beat.unref();
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    if (timer !== undefined) clearTimeout(timer);
  };
  req.once('close', close);
  res.once('close', close);

  const poll = async (): Promise<void> => {
    try {
      if (!(await options.allowed())) {
        res.write('event: signed-out\ndata: {}\n\n');
        close();
        res.end();
        return;
      }
      // Every page there is now: a burst is sent whole, not one page per interval.
      for (let pages = 0; pages < 20 && !closed; pages++) {
        const page = await till.keys.audit(cursor === undefined ? { from, types, limit: 500 } : { cursor, types, limit: 500 });
        for (const entry of page.entries) {
          cursor = entry.id;
          if (passes(entry, filter)) res.write(`id: ${entry.id}\nevent: audit\ndata: ${JSON.stringify(entry)}\n\n`);
        }
        if (page.cursor === undefined) break;
      }
    } catch (error) {
      // The store is down or slow: said on the stream, and tried again at the next poll.
      if (!closed)
        res.write(
          `event: unavailable\ndata: ${JSON.stringify({ detail: error instanceof Error ? error.message.replace(/^(?:\[[^\]]*\]\s*)+/, '').slice(0, 200) : 'store error' })}\n\n`,
        );
    }
    if (!closed) {
      timer = setTimeout(() => void poll(), options.pollInterval);
      timer.unref();
    }
  };
  void poll();
}

export { AUDIT_TYPES };
