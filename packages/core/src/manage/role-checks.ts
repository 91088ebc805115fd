// The key manager's check that the roles a key is given exist: a misspelt role would otherwise grant
// nothing, silently, and the key's holder would learn of it only from a 403.
import { tillError } from '../errors.js';
import type { KeyStore } from '../store/types.js';

/** Rejects with INVALID_ARGUMENT naming the roles that are not defined (or the store keeps none). */
export async function assertRolesExist(store: KeyStore, names: readonly string[], where: 'keys' | 'identities' = 'keys'): Promise<void> {
  if (names.length === 0) return;
  if (typeof store.getRoles !== 'function') {
    throw tillError('INVALID_ARGUMENT', where, `this store (${store.kind}) keeps no roles: ${where === 'keys' ? 'a key' : 'an identity'} cannot hold any`);
  }
  const roles = await store.getRoles(names);
  const missing = names.filter((_, i) => !roles[i]);
  if (missing.length > 0) {
    throw tillError('INVALID_ARGUMENT', where, `no role named ${missing.join(', ')}: define it first (till.roles.define(name, scopes), or till roles define)`);
  }
}
