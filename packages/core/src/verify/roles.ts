// Role resolution for the verifier: the roles a key holds, read from the store once per cache TTL and
// dropped when a role changes (the store announces `role:<name>` as it does a key id), joined into the
// key's scopes before its cache entry is made, so `requireScopes` sees one scope list.
import type { KeyRecord } from '../store/record.js';
import type { RoleRecord } from '../store/role.js';
import type { KeyStore } from '../store/types.js';

/** A role as cached: the record (null: no such role) and the cache time it was read. */
interface CachedRole {
  readonly role: RoleRecord | null;
  readonly fetched: number;
}

/** Most roles cached; past it, the cache starts again (a deployment has a few dozen roles). */
const MAX_CACHED_ROLES = 1024;

export class RoleCache {
  private readonly roles = new Map<string, CachedRole>();
  /** Bumped by every drop: a read that began before a drop is not cached. */
  private generation = 0;

  constructor(
    private readonly store: KeyStore,
    private readonly ttl: number,
  ) {}

  /**
   * The roles of `names` (null for each that does not exist), from the cache while fresh at cache time
   * `at`, the others in one store read. `trusted` false (changes may go unheard): every one is read.
   */
  resolve(names: readonly string[], at: number, trusted: boolean, now: () => number): Promise<ReadonlyMap<string, RoleRecord | null>> {
    const found = new Map<string, RoleRecord | null>();
    const missing: string[] = [];
    for (const name of names) {
      const cached = trusted ? this.roles.get(name) : undefined;
      if (cached !== undefined && at - cached.fetched < this.ttl) found.set(name, cached.role);
      else missing.push(name);
    }
    if (missing.length === 0) return Promise.resolve(found);
    // A store without roles has none: a key naming some gets none of their scopes.
    if (typeof this.store.getRoles !== 'function') {
      for (const name of missing) found.set(name, null);
      return Promise.resolve(found);
    }
    const generation = this.generation;
    return this.store.getRoles(missing).then((roles) => {
      const fetched = now();
      if (this.roles.size + missing.length > MAX_CACHED_ROLES) this.roles.clear();
      missing.forEach((name, i) => {
        const role = roles[i] ?? null;
        found.set(name, role);
        if (generation === this.generation) this.roles.set(name, { role, fetched });
      });
      return found;
    });
  }

  /** Forgets one role (it changed), or all of them (null). */
  drop(name: string | null): void {
    this.generation++;
    if (name === null) this.roles.clear();
    else this.roles.delete(name);
  }
}

/**
 * Every scope a holder of these role lists gets from them, joined with `own` (a key's own grants):
 * sorted and without duplicates. `holders` is the key's list, and any other that applies (an owner's):
 * a role named by any of them counts. A role that does not exist grants nothing.
 */
export function expandScopes(own: readonly string[], holders: ReadonlyArray<readonly string[]>, roles: ReadonlyMap<string, RoleRecord | null>): string[] {
  const all = new Set(own);
  for (const names of holders) {
    for (const name of names) {
      const role = roles.get(name);
      if (role) for (const scope of role.scopes) all.add(scope);
    }
  }
  return [...all].sort();
}

/**
 * A key's record with the scopes of its roles, and of its identity's roles (`identityRoles`), joined to
 * its own (the record as the verifier caches it).
 */
export function withRoleScopes(record: KeyRecord, roles: ReadonlyMap<string, RoleRecord | null>, identityRoles: readonly string[] = []): KeyRecord {
  return { ...record, scopes: expandScopes(record.scopes, [record.roles, identityRoles], roles) };
}
