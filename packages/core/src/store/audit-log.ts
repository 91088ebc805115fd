// A bounded, in-memory audit trail: the memory store's, with the same ids, order and filters as Redis's.
import { normalizeQuery, matches, type AuditEntry, type AuditPage, type AuditQuery, type AuditRecord } from '../audit.js';
import { TillError } from '../errors.js';

/** Entry ids are `<ms>-<seq>`, like Redis stream ids: increasing, unique within the log. */
function parseId(id: string): [number, number] | null {
  const m = /^(\d{1,16})-(\d{1,16})$/.exec(id);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function after(id: string, cursor: [number, number]): boolean {
  const [ms, seq] = parseId(id)!;
  return ms > cursor[0] || (ms === cursor[0] && seq > cursor[1]);
}

export class MemoryAuditLog {
  private entries: AuditEntry[] = [];
  private lastMs = 0;
  private seq = 0;

  constructor(private readonly maxLength: number) {}

  /** Appends, giving each entry an id from its time; keeps the newest `maxLength`. */
  append(record: AuditRecord): AuditEntry {
    // Ids follow the entry's time, but never go backwards (a clock that steps back keeps order).
    const ms = Math.max(this.lastMs, Math.floor(record.at));
    this.seq = ms === this.lastMs ? this.seq + 1 : 0;
    this.lastMs = ms;
    const entry = Object.freeze({ id: `${ms}-${this.seq}`, ...structuredClone(record) });
    this.entries.push(entry);
    // Trimmed in chunks: one splice per many appends, not one shift per append.
    if (this.entries.length > this.maxLength + Math.max(16, this.maxLength >> 3)) this.entries = this.entries.slice(-this.maxLength);
    return entry;
  }

  read(query?: AuditQuery): AuditPage {
    const q = normalizeQuery(query);
    const cursor = q.cursor === undefined ? null : parseId(q.cursor);
    if (q.cursor !== undefined && cursor === null) throw new TillError('INVALID_ARGUMENT', '[till] [audit] invalid cursor');
    const start = Math.max(0, this.entries.length - this.maxLength);
    const out: AuditEntry[] = [];
    for (let i = start; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (cursor !== null && !after(entry.id, cursor)) continue;
      if (!matches(entry, q)) continue;
      if (out.length === q.limit) return { entries: out, cursor: out[out.length - 1]!.id };
      out.push(entry);
    }
    return { entries: out };
  }
}
