// Roles: named scope bundles keys hold, resolved at verification (cached, dropped on change in every
// process), managed with audit entries and events, on the memory store and on Redis.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { TillError } from '../src/errors.js';
import { RedisStore } from '../src/redis/index.js';
import { MemoryStore } from '../src/store/memory.js';
import type { KeyStore } from '../src/store/types.js';
import { createTill, type Till } from '../src/till.js';
import type { TillEvent } from '../src/audit/events.js';

const scopesOf = async (till: Till, key: string) => {
  const result = await till.verify(key);
  if (!result.valid) throw new Error(`key refused: ${result.code}`);
  return result.key.scopes;
};

describe('till.roles on the memory store', () => {
  it('defines, reads, lists and replaces roles, each change in the audit trail and the events', async () => {
    const till = createTill({ actor: 'admin' });
    const events: TillEvent[] = [];
    till.events.on((event) => events.push(event));
    const made = await till.roles.define('reporting', ['reports:read', 'exports:*', 'reports:read']);
    expect(made).toMatchObject({ name: 'reporting', scopes: ['exports:*', 'reports:read'], version: 1 });
    expect(await till.roles.get('reporting')).toEqual(made);
    expect(await till.roles.get('nobody')).toBeNull();
    // The same scopes again: nothing changes, nothing is written.
    expect(await till.roles.define('reporting', ['exports:*', 'reports:read'])).toEqual(made);
    const next = await till.roles.define('reporting', ['reports:read'], { actor: 'cli:alice', reason: 'no exports' });
    expect(next).toMatchObject({ version: 2, scopes: ['reports:read'], createdAt: made.createdAt });
    await till.roles.define('billing', ['invoices:*']);
    expect((await till.roles.list()).map((r) => r.name)).toEqual(['billing', 'reporting']);
    const { entries } = await till.keys.audit({ types: ['role.defined', 'role.deleted'] });
    expect(entries.map((e) => [e.type, e.actor, e.reason, e.detail])).toEqual([
      ['role.defined', 'admin', null, 'role reporting: exports:* reports:read'],
      ['role.defined', 'cli:alice', 'no exports', 'role reporting: reports:read (was: exports:* reports:read)'],
      ['role.defined', 'admin', null, 'role billing: invoices:*'],
    ]);
    expect(events.filter((e) => e.type.startsWith('role.'))).toEqual([
      { type: 'role.defined', name: 'reporting', scopes: ['exports:*', 'reports:read'], version: 1 },
      { type: 'role.defined', name: 'reporting', scopes: ['reports:read'], version: 2 },
      { type: 'role.defined', name: 'billing', scopes: ['invoices:*'], version: 1 },
    ]);
    await till.close();
  });

  it('joins a key’s roles into its scopes at verification, so required scopes see them; keys copy roles on rotation', async () => {
    const till = createTill();
    await till.roles.define('reporting', ['reports:read', 'exports:*']);
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['users:read'], roles: ['reporting'] });
    expect(record.roles).toEqual(['reporting']);
    expect(record.scopes).toEqual(['users:read']);
    expect(await scopesOf(till, key)).toEqual(['exports:*', 'reports:read', 'users:read']);
    expect((await till.verify(key, { scopes: ['exports:csv', 'users:read'] })).valid).toBe(true);
    expect((await till.verify(key, { scopes: ['reports:write'] })).code).toBe('INSUFFICIENT_SCOPE');
    // Cached: answered synchronously, roles included.
    const cached = till.verify(key, { scopes: ['reports:read'] });
    expect(cached).not.toBeInstanceOf(Promise);
    const rotated = await till.keys.rotate(record.id);
    expect(rotated.record.roles).toEqual(['reporting']);
    expect(await scopesOf(till, rotated.key)).toContain('exports:*');
    await till.close();
  });

  it('a role change reaches cached keys at once: wider, narrower, and in another Till on the same store', async () => {
    const store = new MemoryStore();
    const a = createTill({ store });
    const b = createTill({ store });
    await a.roles.define('ops', ['deploy:read']);
    const { key } = await a.keys.create({ name: 'k', scopes: [], roles: ['ops'] });
    const other = await a.keys.create({ name: 'plain', scopes: ['x'] });
    expect(await scopesOf(b, key)).toEqual(['deploy:read']);
    expect(await scopesOf(b, other.key)).toEqual(['x']);
    await a.roles.define('ops', ['deploy:read', 'deploy:write']);
    expect(await scopesOf(a, key)).toEqual(['deploy:read', 'deploy:write']);
    expect(await scopesOf(b, key)).toEqual(['deploy:read', 'deploy:write']);
    // A key without the role keeps its cache entry.
    expect(b.verify(other.key)).not.toBeInstanceOf(Promise);
    await a.roles.define('ops', ['deploy:read']);
    expect((await b.verify(key, { scopes: ['deploy:write'] })).code).toBe('INSUFFICIENT_SCOPE');
    await a.close();
    await b.close();
  });

  it('updates a key’s roles (null removes them) and refuses a role that is not defined, saying which', async () => {
    const till = createTill();
    await till.roles.define('a', ['x:read']);
    await till.roles.define('b', ['y:read']);
    const { key, record } = await till.keys.create({ name: 'k', scopes: [], roles: ['a'] });
    await expect(till.keys.create({ name: 'k', scopes: [], roles: ['a', 'nope', 'zzz'] })).rejects.toThrow(/no role named nope, zzz: define it first/);
    await expect(till.keys.update(record.id, { roles: ['ghost'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await till.keys.update(record.id, { roles: ['b', 'a', 'b'] })).roles).toEqual(['a', 'b']);
    expect(await scopesOf(till, key)).toEqual(['x:read', 'y:read']);
    expect((await till.keys.update(record.id, { roles: null })).roles).toEqual([]);
    expect(await scopesOf(till, key)).toEqual([]);
    await till.close();
  });

  it('refuses to delete a role keys hold, saying how many, unless forced; forced, they lose its scopes at once', async () => {
    const till = createTill();
    const events: TillEvent[] = [];
    till.events.on((event) => events.push(event));
    await till.roles.define('reporting', ['reports:read']);
    const first = await till.keys.create({ name: 'one', scopes: [], roles: ['reporting'] });
    await till.keys.create({ name: 'two', scopes: [], roles: ['reporting'] });
    const revoked = await till.keys.create({ name: 'gone', scopes: [], roles: ['reporting'] });
    await till.keys.revoke(revoked.record.id);
    expect(await scopesOf(till, first.key)).toEqual(['reports:read']);
    const refused = await till.roles.delete('reporting').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TillError);
    expect(refused).toMatchObject({ code: 'ROLE_IN_USE' });
    expect((refused as Error).message).toMatch(/role reporting is held by 2 keys/);
    expect(await till.roles.get('reporting')).not.toBeNull();
    const deleted = await till.roles.delete('reporting', { force: true, reason: 'retired' });
    expect(deleted).toMatchObject({ role: { name: 'reporting' }, keys: 2 });
    expect(await scopesOf(till, first.key)).toEqual([]);
    expect((await till.keys.get(first.record.id))?.roles).toEqual(['reporting']);
    await expect(till.roles.delete('reporting')).rejects.toMatchObject({ code: 'ROLE_NOT_FOUND' });
    const unused = await till.roles.define('unused', ['a']);
    expect(await till.roles.delete('unused')).toEqual({ role: unused, keys: 0 });
    const { entries } = await till.keys.audit({ types: ['role.deleted'] });
    expect(entries.map((e) => [e.reason, e.detail])).toEqual([
      ['retired', 'role reporting: reports:read (forced: held by 2 keys)'],
      [null, 'role unused: a'],
    ]);
    expect(events.filter((e) => e.type === 'role.deleted')).toEqual([
      { type: 'role.deleted', name: 'reporting', keys: 2 },
      { type: 'role.deleted', name: 'unused', keys: 0 },
    ]);
    await till.close();
  });

  it('fuzz: role names, scopes and key role lists are accepted or refused with INVALID_ARGUMENT, never anything else', async () => {
    const till = createTill({ auditEvents: false, usage: false });
    const nameLike = fc.oneof(
      fc.string({ maxLength: 70 }),
      fc.string({ unit: fc.constantFrom(...'abcxyz019_.-:*A '), minLength: 1, maxLength: 70 }),
      fc.anything(),
    );
    const scopeLike = fc.oneof(
      fc.array(fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('a:read', 'b:*', '*', 'x:y:z')), { maxLength: 5 }),
      fc.anything(),
    );
    await fc.assert(
      fc.asyncProperty(nameLike, scopeLike, async (name, scopes) => {
        try {
          const role = await till.roles.define(name as string, scopes as string[]);
          expect(role.name).toBe(name);
          expect(role.scopes.length).toBeGreaterThan(0);
          const { record } = await till.keys.create({ name: 'fuzz', scopes: [], roles: [role.name] });
          expect(record.roles).toEqual([role.name]);
        } catch (error) {
          expect(error).toBeInstanceOf(TillError);
          expect((error as TillError).code).toBe('INVALID_ARGUMENT');
          expect((error as TillError).message.length).toBeLessThan(400);
        }
        try {
          await till.keys.create({ name: 'fuzz', scopes: [], roles: name as never });
        } catch (error) {
          expect(error).toBeInstanceOf(TillError);
          expect((error as TillError).code).toBe('INVALID_ARGUMENT');
        }
        for (const call of [() => till.roles.get(name as string), () => till.roles.delete(name as string, scopes as never)]) {
          try {
            await call();
          } catch (error) {
            expect(error).toBeInstanceOf(TillError);
            expect(['INVALID_ARGUMENT', 'ROLE_NOT_FOUND', 'ROLE_IN_USE']).toContain((error as TillError).code);
          }
        }
      }),
      { numRuns: 400 },
    );
    await till.close();
  });

  it('a store without roles says so, and a key there cannot hold any', async () => {
    const store: KeyStore = new MemoryStore();
    for (const name of ['saveRole', 'removeRole', 'getRoles', 'listRoles']) Object.defineProperty(store, name, { value: undefined });
    const till = createTill({ store });
    await expect(till.roles.define('a', ['x'])).rejects.toMatchObject({ code: 'INVALID_OPTIONS', message: expect.stringMatching(/keeps no roles/) });
    await expect(till.keys.create({ name: 'k', scopes: [], roles: ['a'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await till.close();
  });
});

describe('roles on Redis, across processes', () => {
  const namespace = uniqueNamespace();
  const clients = [newClient(), newClient()];
  afterAll(async () => {
    await deleteNamespace(clients[0]!, namespace);
    for (const c of clients) c.disconnect();
  });

  it('a role change reaches another process’s cached keys, and a forced deletion takes the scopes away there too', async () => {
    const a = createTill({ store: new RedisStore({ client: clients[0]!, namespace }) });
    const b = createTill({ store: new RedisStore({ client: clients[1]!, namespace }) });
    await a.roles.define('reporting', ['reports:read']);
    const { key } = await a.keys.create({ name: 'k', scopes: ['own'], roles: ['reporting'] });
    expect(await scopesOf(b, key)).toEqual(['own', 'reports:read']);
    // Cached in b (and b's subscription confirmed by then: it heard nothing yet that it needed).
    await waitFor(() => b.verify(key) instanceof Promise === false, 5000);
    await a.roles.define('reporting', ['reports:read', 'reports:write']);
    expect(
      await waitFor(async () => {
        const r = await b.verify(key, { scopes: ['reports:write'] });
        return r.valid;
      }, 5000),
    ).toBe(true);
    await a.roles.delete('reporting', { force: true });
    expect(
      await waitFor(async () => {
        const r = await b.verify(key, { scopes: ['reports:read'] });
        return r.code === 'INSUFFICIENT_SCOPE';
      }, 5000),
    ).toBe(true);
    expect(await scopesOf(b, key)).toEqual(['own']);
    await a.close();
    await b.close();
  });
});
