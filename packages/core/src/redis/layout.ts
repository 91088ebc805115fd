// The Redis keys and the channel of one namespace: where each piece of the store's data lives.

/**
 * Layout, with `till:` as the namespace:
 * - `till:{<id>}:audit`: the key's change trail, a list of `<id> <json>` entries, oldest first, capped,
 *   written in the script that makes each change; `till:{<id>}:events`: the security events that named
 *   the key, a list of its own (capped apart: a flood of refusals never pushes a change out).
 * - `till:audit`: the log of every change, a stream; `till:audit:security{till:audit}`: the log of
 *   security events, a stream in the same slot (its hash tag is the first one's whole name), so one
 *   script gives both one id sequence.
 * - `till:{<id>}:k`: the record as compact JSON, `version` first (all a rate-limit charge reads of it);
 *   `till:{<id>}:cr` the live credit count (of the key, or of a rotation chain whose first key it is: every
 *   key of a chain is drawn in that key's slot); `till:{<id>}:rl:<bucket>` the state of each rate limit (a
 *   GCRA debt, expiring once drained); `till:{<id>}:u:<day>` the day's usage counts.
 *   Everything about one key shares the `{<id>}` hash tag so one script can read and change it
 *   atomically on a single Redis and on Cluster alike.
 * - `till:usage:last`: every key's last use, a sorted set scored by time, read by audits.
 * - `till:idx:all`, `till:idx:owner:<owner>`: sorted sets of ids scored by creation time, read by
 *   admin paths only. They live in other slots, so they are written beside the record, not with it:
 *   the index is written first, so a crash between the two leaves an entry that `list` skips,
 *   never a key that `list` cannot find.
 * - `till:invalidate`: the channel on which every change publishes the id.
 * - `till:{<tag>}:exp`, `till:{<tag>}:exp:sent`: the expiry index, one shard per Cluster slot, in the slot
 *   of the keys it holds (`<tag>` is a hash tag of that slot), so the script that changes a record
 *   changes its entry too; `till:exp:shards` names the shards in use, `till:exp:indexed` marks the index
 *   as built over keys written before it existed. See expiry.ts.
 * - `till:roles{till:audit}`: every role, a hash of name to JSON, in the change log's slot, so one script
 *   changes a role and logs the change; a role change publishes `role:<name>` on the channel.
 * - Identities: an identity is a subject of its own, `identity:<id>`, so its record (`till:{identity:<id>}:k`),
 *   its credits (`:cr`), its limits (`:rl:<bucket>`) and its trail (`:audit`) share one hash tag, as a key's
 *   do. `till:idx:identities` orders identities by creation; `till:idx:identity:<id>` the keys of each
 *   (written beside the key record, like the owner index).
 */
export class Layout {
  /** The log of every change (a stream). */
  readonly changeLog: string;
  /** The log of security events: in the change log's slot (its hash tag is that key's whole name). */
  readonly securityLog: string;
  /** Every key's last use. */
  readonly lastUsed: string;
  /** Where every change publishes the id. */
  readonly channel: string;
  /** Every role (a hash), in the change log's slot. */
  readonly roles: string;

  constructor(private readonly ns: string) {
    this.changeLog = `${ns}audit`;
    this.securityLog = `${ns}audit:security{${ns}audit}`;
    this.lastUsed = `${ns}usage:last`;
    this.channel = `${ns}invalidate`;
    this.roles = `${ns}roles{${ns}audit}`;
  }

  /** The prefix of every Redis key of a subject (a key id, or another subject of limits). */
  tag(subject: string): string {
    return `${this.ns}{${subject}}:`;
  }

  record(id: string): string {
    return `${this.tag(id)}k`;
  }

  /** The live credit count of a key, or of a rotation chain whose first key is `account`. */
  credits(account: string): string {
    return `${this.tag(account)}cr`;
  }

  trail(id: string): string {
    return `${this.tag(id)}audit`;
  }

  events(id: string): string {
    return `${this.tag(id)}events`;
  }

  /** The state of one rate limit of a subject. */
  limit(subject: string, bucket: string): string {
    return `${this.tag(subject)}rl:${bucket}`;
  }

  /** A key's usage counts of one day (`YYYY-MM-DD`). */
  usageDay(id: string, day: string): string {
    return `${this.tag(id)}u:${day}`;
  }

  /** The index of every identity. */
  get identities(): string {
    return `${this.ns}idx:identities`;
  }

  /** The index of an identity's keys. */
  identityKeys(identityId: string): string {
    return `${this.ns}idx:identity:${identityId}`;
  }

  /** The index of every key, or of one owner's. */
  index(ownerId: string | null): string {
    return ownerId === null ? `${this.ns}idx:all` : `${this.ns}idx:owner:${ownerId}`;
  }

  /** The expiry index's shard of the slot of hash tag `tag`. */
  expiries(tag: string): string {
    return `${this.ns}{${tag}}:exp`;
  }

  /** Beside it: the expiry each key's reminder was claimed for. */
  reminded(tag: string): string {
    return `${this.ns}{${tag}}:exp:sent`;
  }

  /** The tags of the expiry index's shards in use. */
  get expiryShards(): string {
    return `${this.ns}exp:shards`;
  }

  /** Set once the expiry index holds every key written before it existed. */
  get expiryIndexed(): string {
    return `${this.ns}exp:indexed`;
  }
}
