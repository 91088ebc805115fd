// An identity's allowlist and roles apply to every key of the identity, beside the key's own, and a
// change to either reaches every process's cache.
import { afterAll, describe, expect, it } from 'vitest';
import { createTill, type Till } from '../src/index.js';
import { MemoryStore } from '../src/store/memory.js';
import { RedisStore } from '../src/redis/index.js';
import type { KeyStore } from '../src/store/types.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

const clients: Array<ReturnType<typeof newClient>> = [];
const namespaces: string[] = [];

afterAll(async () => {
  for (const [i, client] of clients.entries()) {
    await deleteNamespace(client, namespaces[i]!);
    client.disconnect();
  }
});

/** Two stores that share their data, as two processes do: the second one hears the first's changes. */
const backends: Array<[string, () => [KeyStore, KeyStore]]> = [
  [
    'memory',
    () => {
      const store = new MemoryStore();
      return [store, store];
    },
  ],
  [
    'redis',
    () => {
      const namespace = uniqueNamespace();
      const made = [newClient(), newClient()];
      for (const client of made) {
        clients.push(client);
        namespaces.push(namespace);
      }
      return [new RedisStore({ client: made[0]!, namespace }), new RedisStore({ client: made[1]!, namespace })];
    },
  ],
];

describe.each(backends)('an identity’s allowlist and roles on the %s store', (_kind, makeStores) => {
  const tills: Till[] = [];
  afterAll(async () => {
    for (const till of tills) await till.close();
  });
  const pair = (): { admin: Till; served: Till } => {
    const [a, b] = makeStores();
    const admin = createTill({ store: a, auditEvents: false, usage: false, actor: 'test' });
    const served = createTill({ store: b, auditEvents: false, usage: false });
    tills.push(admin, served);
    return { admin, served };
  };

  it('refuses an address outside the identity’s list, and outside the key’s own when both are set', async () => {
    const { admin, served } = pair();
    await admin.identities.create({ id: 'office', name: 'Office', allowedIps: ['198.51.100.0/24', '2001:db8::/32'] });
    const { key: free } = await admin.keys.create({ name: 'free', scopes: ['a:read'], identityId: 'office' });
    const { key: narrow } = await admin.keys.create({ name: 'narrow', scopes: ['a:read'], identityId: 'office', allowedIps: ['198.51.100.0/25'] });
    expect((await served.verify(free, { ip: '198.51.100.200' })).code).toBe('VALID');
    expect((await served.verify(free, { ip: '::ffff:198.51.100.7' })).code).toBe('VALID');
    expect((await served.verify(free, { ip: '2001:db8::1' })).code).toBe('VALID');
    expect((await served.verify(free, { ip: '203.0.113.1' })).code).toBe('IP_NOT_ALLOWED');
    // No address known: refused, never let through.
    expect((await served.verify(free)).code).toBe('IP_NOT_ALLOWED');
    // Both lists apply: the key's narrows the identity's.
    expect((await served.verify(narrow, { ip: '198.51.100.5' })).code).toBe('VALID');
    expect((await served.verify(narrow, { ip: '198.51.100.200' })).code).toBe('IP_NOT_ALLOWED');
    // The identity's list lifted by another process: heard, and the key is used from anywhere.
    await admin.identities.update('office', { allowedIps: [] });
    expect(await waitFor(async () => (await served.verify(free, { ip: '203.0.113.1' })).code === 'VALID', 5000)).toBe(true);
    expect((await served.verify(narrow, { ip: '198.51.100.200' })).code).toBe('IP_NOT_ALLOWED');
  });

  it('gives every key of the identity its roles’ scopes; a change to the identity’s roles or to a role reaches the cache', async () => {
    const { admin, served } = pair();
    await admin.roles.define('reporting', ['reports:read']);
    await admin.roles.define('billing', ['invoices:read']);
    await admin.identities.create({ id: 'acme', name: 'Acme', roles: ['reporting'] });
    const { key, record } = await admin.keys.create({ name: 'bi', scopes: ['users:read'], identityId: 'acme', roles: ['billing'] });
    const first = await served.verify(key, { scopes: ['reports:read', 'invoices:read', 'users:read'] });
    expect(first.code).toBe('VALID');
    expect(first.valid && first.key.scopes).toEqual(['invoices:read', 'reports:read', 'users:read']);
    // The role redefined: its new scopes replace the old for the identity's keys.
    await admin.roles.define('reporting', ['reports:list']);
    expect(await waitFor(async () => (await served.verify(key, { scopes: ['reports:read'] })).code === 'INSUFFICIENT_SCOPE', 5000)).toBe(true);
    expect((await served.verify(key, { scopes: ['reports:list'] })).code).toBe('VALID');
    // The identity's roles taken away: the key keeps its own role and scopes only.
    await admin.identities.update('acme', { roles: [] });
    expect(await waitFor(async () => (await served.verify(key, { scopes: ['reports:list'] })).code === 'INSUFFICIENT_SCOPE', 5000)).toBe(true);
    expect((await served.verify(key, { scopes: ['invoices:read', 'users:read'] })).code).toBe('VALID');
    expect((await admin.keys.get(record.id))?.scopes).toEqual(['users:read']);
  });

  it('refuses an undefined role on an identity, and a role deletion while an identity holds it, saying so', async () => {
    const { admin } = pair();
    await admin.roles.define('support', ['tickets:read']);
    // TillErrors, each with its code and a message that says why.
    const refused = (code: string, message: RegExp) => ({ name: 'TillError', code, message: expect.stringMatching(message) });
    await expect(admin.identities.create({ id: 'ghosts', name: 'Ghosts', roles: ['ghost'] })).rejects.toMatchObject(
      refused('INVALID_ARGUMENT', /no role named ghost/),
    );
    expect(await admin.identities.get('ghosts')).toBeNull();
    await admin.identities.create({ id: 'helpdesk', name: 'Helpdesk', roles: ['support'] });
    await expect(admin.identities.update('helpdesk', { roles: ['support', 'ghost'] })).rejects.toMatchObject(refused('INVALID_ARGUMENT', /./));
    expect((await admin.identities.get('helpdesk'))?.roles).toEqual(['support']);
    await expect(admin.roles.delete('support')).rejects.toMatchObject(refused('ROLE_IN_USE', /held by 1 identity/));
    await expect(admin.identities.update('helpdesk', { allowedIps: ['198.51.100.5/24'] })).rejects.toMatchObject(
      refused('INVALID_ARGUMENT', /host bits are set/),
    );
  });
});
