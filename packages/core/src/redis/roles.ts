// Roles on Redis: one hash of name to JSON in the change log's slot, so that one script compares the
// version, writes the role, logs the change and announces it (atomic on a single Redis and on Cluster).
import { tillError, type TillError } from '../errors.js';
import type { AuditRecord } from '../audit/trail.js';
import { decodeRole, encodeRole, roleMessage, type RoleRecord } from '../store/role.js';
import { encodeEntry } from './audit-codec.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';

export class RedisRoles {
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
    /** The change log's length cap. */
    private readonly logCap: number,
    private readonly notAnnounced: (what: string, why: string | undefined) => TillError,
  ) {}

  private get client() {
    return this.commands.client;
  }

  save(role: RoleRecord, expectedVersion: number | null, audit?: AuditRecord): Promise<boolean> {
    return this.change(role.name, encodeRole(role), expectedVersion ?? '', audit);
  }

  remove(name: string, expectedVersion: number, audit?: AuditRecord): Promise<boolean> {
    return this.change(name, '', expectedVersion, audit);
  }

  /** One script: the role, its entry in the change log and the announcement (see ROLE_SCRIPT). */
  private async change(name: string, json: string, expectedVersion: number | '', audit: AuditRecord | undefined): Promise<boolean> {
    const { layout } = this;
    const [result, announced, why] = await this.commands.run(() =>
      this.client.tillRole(
        layout.roles,
        layout.changeLog,
        layout.securityLog,
        name,
        json,
        expectedVersion,
        layout.channel,
        roleMessage(name),
        this.logCap,
        audit === undefined ? '' : encodeEntry(audit, true),
      ),
    );
    if (result !== 1) return false;
    if (announced === 0) throw this.notAnnounced(`role ${name}`, why);
    return true;
  }

  async get(names: readonly string[]): Promise<Array<RoleRecord | null>> {
    if (names.length === 0) return [];
    const rows = await this.commands.run(() => this.client.hmget(this.layout.roles, ...names));
    return rows.map((json, i) => (json === null ? null : this.decode(names[i]!, json)));
  }

  async list(): Promise<RoleRecord[]> {
    const all = await this.commands.run(() => this.client.hgetall(this.layout.roles));
    return Object.keys(all)
      .sort()
      .map((name) => this.decode(name, all[name]!));
  }

  private decode(name: string, json: string): RoleRecord {
    try {
      return decodeRole(json);
    } catch (cause) {
      throw tillError('STORE_ERROR', 'redis', `role ${name} is corrupt`, { cause });
    }
  }
}
