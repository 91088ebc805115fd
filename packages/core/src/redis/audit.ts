// The audit trail on Redis: the store's two logs (changes, security events) and each key's own trail, written and read.
import { tillError } from '../errors.js';
import { isUnknownId } from '../audit/writer.js';
import { CHANGE_TYPES, normalizeQuery, matches, type AuditEntry, type AuditPage, type AuditQuery, type AuditRecord } from '../audit/trail.js';
import { encodeEntry, idBefore, mergeById, parseEntry, trailEntry } from './audit-codec.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';
import { identitySubject } from '../identity/record.js';

/** Most security events written in one script call. */
const EVENTS_PER_CALL = 200;

export class RedisAudit {
  /** `logCap`: most entries in each log; `trailCap`: in each key's trail, and in its list of events. */
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
    private readonly logCap: number,
    private readonly trailCap: number,
  ) {}

  /** Copies a change to the store's log, after the change (whose key's trail holds it already). */
  async copyToLog(audit: AuditRecord): Promise<void> {
    await this.commands.run(() => this.commands.client.tillLog(this.layout.changeLog, this.layout.securityLog, 1, this.logCap, encodeEntry(audit, true)));
  }

  /**
   * Security events: into the security log, in chunks of one script call each, and into each named
   * key's own list of events (one call per key). Each append is O(1) in Redis, and changes are kept
   * apart: a flood of events trims only events.
   */
  async append(entries: readonly AuditRecord[]): Promise<void> {
    const { client } = this.commands;
    const byKey = new Map<string, string[]>();
    for (const audit of entries) {
      // An unknown id has no trail to add to (asking costs a command per made-up key of a scan).
      if (audit.keyId !== null && !isUnknownId(audit) && /^[0-9A-Za-z]{16}$/.test(audit.keyId)) {
        const list = byKey.get(audit.keyId);
        if (list === undefined) byKey.set(audit.keyId, [trailEntry(audit)]);
        else list.push(trailEntry(audit));
      }
    }
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < entries.length; i += EVENTS_PER_CALL) {
      const chunk = entries.slice(i, i + EVENTS_PER_CALL).map((audit) => encodeEntry(audit, true));
      writes.push(this.commands.run(() => client.tillLog(this.layout.changeLog, this.layout.securityLog, 2, this.logCap, ...chunk)));
    }
    // One command per key: on Cluster each key's lists live in its own slot.
    for (const [id, list] of byKey) {
      for (let i = 0; i < list.length; i += EVENTS_PER_CALL) {
        const chunk = list.slice(i, i + EVENTS_PER_CALL);
        writes.push(this.commands.run(() => client.tillEvents(this.layout.events(id), this.layout.record(id), this.layout.trail(id), this.trailCap, ...chunk)));
      }
    }
    await Promise.all(writes);
  }

  /**
   * Reads the trail: a key's own trail when the query names a key (its changes, written with them,
   * and the security events that named it), the store's log otherwise. Times are the Redis server's:
   * an entry's `at` is its id's.
   */
  async read(query?: AuditQuery): Promise<AuditPage> {
    const q = normalizeQuery(query);
    if (q.cursor !== undefined && !/^\d{1,16}-\d{1,16}$/.test(q.cursor)) throw tillError('INVALID_ARGUMENT', 'audit', 'invalid cursor');
    if (q.keyId !== undefined) return this.readTrail(q.keyId, q);
    // An identity's changes: its own trail, written with each change (the log may have trimmed them).
    if (q.identityId !== undefined) return this.readTrail(identitySubject(q.identityId), q, null);
    const start = q.cursor !== undefined ? `(${q.cursor}` : String(Math.max(0, Math.floor(q.from)));
    const end = q.to >= Number.MAX_SAFE_INTEGER ? '+' : String(Math.max(0, Math.ceil(q.to) - 1));
    // Only the logs that can hold the types asked for; both, merged by id, otherwise.
    const wantsChanges = q.types === null || CHANGE_TYPES.some((t) => q.types!.has(t));
    const wantsEvents = q.types === null || [...q.types].some((t) => !(CHANGE_TYPES as readonly string[]).includes(t));
    const batch = Math.min(1000, q.limit + 1);
    const logs = [...(wantsChanges ? [this.layout.changeLog] : []), ...(wantsEvents ? [this.layout.securityLog] : [])];
    const readers = logs.map((key) => ({ key, start, rows: [] as Array<[string, string[]]>, done: false }));
    const entries: AuditEntry[] = [];
    for (;;) {
      for (const r of readers) {
        if (r.rows.length > 0 || r.done) continue;
        r.rows = (await this.commands.run(() => this.commands.client.xrange(r.key, r.start, end, 'COUNT', batch))) as Array<[string, string[]]>;
        if (r.rows.length < batch) r.done = true;
        if (r.rows.length > 0) r.start = `(${r.rows[r.rows.length - 1]![0]}`;
      }
      // The oldest head of the logs that still have rows.
      let next: { rows: Array<[string, string[]]> } | undefined;
      for (const r of readers) if (r.rows.length > 0 && (next === undefined || idBefore(r.rows[0]![0], next.rows[0]![0]))) next = r;
      if (next === undefined) return { entries };
      const [id, fields] = next.rows.shift()!;
      const i = fields.indexOf('e');
      const entry = i < 0 ? null : parseEntry(id, fields[i + 1], null);
      if (entry === null || !matches(entry, q)) continue;
      if (entries.length === q.limit) return { entries, cursor: entries[entries.length - 1]!.id };
      entries.push(entry);
    }
  }

  /** A key's own trail: its changes and its events (each at most its cap), merged, oldest first, filtered and paged like the log. */
  private async readTrail(subject: string, q: ReturnType<typeof normalizeQuery>, keyId: string | null = subject): Promise<AuditPage> {
    const [changes, events] = await Promise.all([this.readList(this.layout.trail(subject)), this.readList(this.layout.events(subject))]);
    const lines = mergeById(changes, events);
    const after = q.cursor === undefined ? null : q.cursor;
    const entries: AuditEntry[] = [];
    for (const line of lines) {
      const space = line.indexOf(' ');
      const entry = space < 0 ? null : parseEntry(line.slice(0, space), line.slice(space + 1), keyId);
      if (entry === null || !matches(entry, q)) continue;
      if (after !== null && !idBefore(after, entry.id)) continue;
      if (entries.length === q.limit) return { entries, cursor: entries[entries.length - 1]!.id };
      entries.push(entry);
    }
    return { entries };
  }

  /** A list of `<id> <json>` entries (a trail written by an earlier version may still be one string of lines). */
  private async readList(key: string): Promise<string[]> {
    const { client } = this.commands;
    const type = await this.commands.run(() => client.type(key));
    if (type === 'string') return ((await this.commands.run(() => client.get(key))) ?? '').split('\n').filter((l) => l !== '');
    if (type !== 'list') return [];
    return this.commands.run(() => client.lrange(key, 0, -1));
  }
}
