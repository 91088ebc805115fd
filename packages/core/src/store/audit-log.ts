// A bounded, in-memory audit trail: the memory store's, with the same ids, order and filters as Redis's.
import { CHANGE_TYPES, normalizeQuery, matches, type AuditEntry, type AuditPage, type AuditQuery, type AuditRecord } from '../audit/trail.js';
import { tillError } from '../errors.js';

/** Entry ids are `<ms>-<seq>`, like Redis stream ids: increasing, unique within the log. */
function parseId(id: string): [number, number] | null {
  const m = /^(\d{1,16})-(\d{1,16})$/.exec(id);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function after(id: string, cursor: [number, number]): boolean {
  const [ms, seq] = parseId(id)!;
  return ms > cursor[0] || (ms === cursor[0] && seq > cursor[1]);
}

/** Entries of one kind, oldest first, keeping the newest `max` (trimmed in chunks, not per append). */
class Bounded {
  entries: AuditEntry[] = [];
  constructor(private readonly max: number) {}

  push(entry: AuditEntry): void {
    this.entries.push(entry);
    if (this.entries.length > this.max + Math.max(16, this.max >> 3)) this.entries = this.entries.slice(-this.max);
  }

  /** The kept entries from index `from` on (the array may hold a few past the cap until trimmed). */
  get start(): number {
    return Math.max(0, this.entries.length - this.max);
  }
}

/**
 * Changes and security events are kept apart, each with its own cap, so that a flood of refusals can
 * never push a key's change history out; they share one id sequence, so reads merge them in order.
 */
export class MemoryAuditLog {
  private readonly changes: Bounded;
  private readonly events: Bounded;
  private lastMs = 0;
  private seq = 0;

  constructor(maxLength: number) {
    this.changes = new Bounded(maxLength);
    this.events = new Bounded(maxLength);
  }

  /** Appends, giving each entry an id from its time; keeps the newest `maxLength` of its kind. */
  append(record: AuditRecord): AuditEntry {
    // Ids follow the entry's time, but never go backwards (a clock that steps back keeps order).
    const ms = Math.max(this.lastMs, Math.floor(record.at));
    this.seq = ms === this.lastMs ? this.seq + 1 : 0;
    this.lastMs = ms;
    const entry = Object.freeze({ id: `${ms}-${this.seq}`, ...structuredClone(record) });
    (isChange(record.type) ? this.changes : this.events).push(entry);
    return entry;
  }

  read(query?: AuditQuery): AuditPage {
    const q = normalizeQuery(query);
    const cursor = q.cursor === undefined ? null : parseId(q.cursor);
    if (q.cursor !== undefined && cursor === null) throw tillError('INVALID_ARGUMENT', 'audit', 'invalid cursor');
    const a = this.changes.entries;
    const b = this.events.entries;
    let i = this.changes.start;
    let j = this.events.start;
    const out: AuditEntry[] = [];
    // The two kinds merged by id, oldest first.
    while (i < a.length || j < b.length) {
      const takeA = j >= b.length || (i < a.length && !after(a[i]!.id, parseId(b[j]!.id)!));
      const entry = takeA ? a[i++]! : b[j++]!;
      if (cursor !== null && !after(entry.id, cursor)) continue;
      if (!matches(entry, q)) continue;
      if (out.length === q.limit) return { entries: out, cursor: out[out.length - 1]!.id };
      out.push(entry);
    }
    return { entries: out };
  }
}

const CHANGES: ReadonlySet<string> = new Set(CHANGE_TYPES);

function isChange(type: string): boolean {
  return CHANGES.has(type);
}
