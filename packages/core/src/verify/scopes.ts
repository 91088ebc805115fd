// Scopes like `users:read`; a key may hold `users:*` or `*`. Routes require concrete scopes.
import { tillError } from '../errors.js';

const SEGMENT = '[A-Za-z0-9_.-]+';
const SCOPE_RE = new RegExp(`^${SEGMENT}(?::${SEGMENT})*$`);
const GRANT_RE = new RegExp(`^(?:\\*|${SEGMENT}(?::${SEGMENT})*(?::\\*)?)$`);
export const MAX_SCOPE_LENGTH = 128;
export const MAX_SCOPES = 256;

/** Whether `scope` can be required by a route: segments of A-Z a-z 0-9 _ . - joined by `:`. */
export function isValidScope(scope: unknown): scope is string {
  return typeof scope === 'string' && scope.length <= MAX_SCOPE_LENGTH && SCOPE_RE.test(scope);
}

/** Whether `scope` can be granted to a key: a valid scope, `*`, or a valid scope followed by `:*`. */
export function isValidGrant(scope: unknown): scope is string {
  return typeof scope === 'string' && scope.length <= MAX_SCOPE_LENGTH && GRANT_RE.test(scope);
}

export function isWildcard(grant: string): boolean {
  return grant === '*' || grant.endsWith(':*');
}

/** Checks a list of grants for a key and returns it sorted and without duplicates. */
export function normalizeGrants(scopes: unknown, where: string): string[] {
  if (!Array.isArray(scopes)) throw tillError('INVALID_ARGUMENT', where, `scopes must be an array of strings`);
  if (scopes.length > MAX_SCOPES) throw tillError('INVALID_ARGUMENT', where, `at most ${MAX_SCOPES} scopes`);
  for (const s of scopes) {
    if (!isValidGrant(s)) {
      throw tillError(
        'INVALID_ARGUMENT',
        where,
        `invalid scope ${JSON.stringify(String(s).slice(0, 64))}: use segments of A-Z a-z 0-9 _ . - joined by ":", optionally ending in ":*", or "*"`,
      );
    }
  }
  return [...new Set(scopes as string[])].sort();
}

/** Checks scopes that a route requires (no wildcards there). */
export function normalizeRequired(scopes: readonly unknown[], where: string): string[] {
  if (scopes.length === 0) throw tillError('INVALID_OPTIONS', where, `name at least one scope`);
  for (const s of scopes) {
    if (!isValidScope(s)) {
      throw tillError(
        'INVALID_OPTIONS',
        where,
        `invalid required scope ${JSON.stringify(String(s).slice(0, 64))}: routes require concrete scopes like "users:read" (wildcards belong to keys)`,
      );
    }
  }
  return [...new Set(scopes as string[])];
}

/**
 * A compiled view of a key's grants that answers `has(scope)` without scanning strings twice. Kept
 * small, since every cached key holds one: the grant list itself when it has no wildcard (a key has a
 * few scopes; comparing them beats hashing), a Set only for long lists.
 */
export class ScopeSet {
  private readonly all: boolean;
  private readonly list: readonly string[];
  private readonly set: ReadonlySet<string> | null;
  private readonly prefixes: readonly string[];

  constructor(grants: readonly string[]) {
    this.all = grants.includes('*');
    let prefixes: string[] | null = null;
    for (const g of grants) if (g.endsWith(':*')) (prefixes ??= []).push(g.slice(0, -1));
    this.prefixes = prefixes ?? NONE;
    const exact = prefixes === null ? grants : grants.filter((g) => !g.endsWith(':*'));
    this.set = exact.length > SET_ABOVE ? new Set(exact) : null;
    this.list = this.set === null ? exact : NONE;
  }

  has(scope: string): boolean {
    if (this.all) return true;
    if (this.set !== null) {
      if (this.set.has(scope)) return true;
    } else {
      for (const g of this.list) if (g === scope) return true;
    }
    for (const p of this.prefixes) if (scope.startsWith(p)) return true;
    return false;
  }

  hasAll(scopes: readonly string[]): boolean {
    for (const s of scopes) if (!this.has(s)) return false;
    return true;
  }

  hasAny(scopes: readonly string[]): boolean {
    for (const s of scopes) if (this.has(s)) return true;
    return false;
  }
}

const NONE: readonly string[] = Object.freeze([]);
/** Grant lists longer than this get a Set. */
const SET_ABOVE = 8;

const compiled = new WeakMap<readonly string[], ScopeSet>();

/** The ScopeSet of a grant list; lists shared between records (see record.ts) share one. */
export function scopeSetOf(grants: readonly string[]): ScopeSet {
  let set = compiled.get(grants);
  if (set === undefined) {
    set = new ScopeSet(grants);
    compiled.set(grants, set);
  }
  return set;
}

/** Whether grants satisfy the required scopes: all of them, or (mode 'any') at least one. */
export function scopesSatisfy(grants: readonly string[], required: readonly string[], mode: 'all' | 'any' = 'all'): boolean {
  // A misspelt mode must not become "any": refused, never read as the weaker check.
  if (mode !== 'all' && mode !== 'any')
    throw tillError('INVALID_ARGUMENT', 'scopes', `mode must be "all" or "any"; got ${JSON.stringify(String(mode).slice(0, 20))}`);
  const set = new ScopeSet(grants);
  return mode === 'all' ? set.hasAll(required) : set.hasAny(required);
}
