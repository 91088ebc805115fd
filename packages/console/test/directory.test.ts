// Identities and roles through the admin API on Express and real Redis: every route refuses a
// request without a key, with a key that holds neither till:read nor till:admin, and (for changes)
// with a read-only key, and nothing changes then; an admin key goes through their lifecycle, each
// change in the trail as the acting key; bad input is a 400 problem; keys take and show an identity,
// roles and networks; no answer holds a key or a digest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness, storedDigests } from './harness.js';

let h: Harness;
let adminId: string;

beforeAll(async () => {
  h = await startHarness();
  adminId = h.admin.slice(h.admin.lastIndexOf('_') + 1, h.admin.lastIndexOf('_') + 17);
  await h.till.roles.define('support', ['tickets:read']);
  await h.till.identities.create({ id: 'acme', name: 'Acme', credits: { remaining: 50 }, roles: ['support'] });
});
afterAll(async () => {
  await h?.close();
});

/** Every identity and role route, with a body that an admin key would get a 2xx for. */
const ROUTES: Array<{ method: string; path: string; body?: unknown; changes: boolean }> = [
  { method: 'GET', path: '/console/api/identities', changes: false },
  { method: 'GET', path: '/console/api/identities?limit=5', changes: false },
  { method: 'POST', path: '/console/api/identities', body: { id: 'made', name: 'Made' }, changes: true },
  { method: 'GET', path: '/console/api/identities/acme', changes: false },
  { method: 'PATCH', path: '/console/api/identities/acme', body: { name: 'Acme Corp' }, changes: true },
  { method: 'DELETE', path: '/console/api/identities/acme', body: { force: true }, changes: true },
  { method: 'GET', path: '/console/api/roles', changes: false },
  { method: 'GET', path: '/console/api/roles/support', changes: false },
  { method: 'PUT', path: '/console/api/roles/support', body: { scopes: ['tickets:write'] }, changes: true },
  { method: 'PUT', path: '/console/api/roles/fresh', body: { scopes: ['a:b'] }, changes: true },
  { method: 'DELETE', path: '/console/api/roles/support', body: { force: true }, changes: true },
];

/** What a refused request must leave as it was: every identity, every role, the changes in the trail. */
async function state(): Promise<string> {
  const [identities, roles, changes] = await Promise.all([
    h.till.identities.list({ limit: 1000 }),
    h.till.roles.list(),
    h.till.keys.audit({ types: ['identity.created', 'identity.updated', 'identity.deleted', 'role.defined', 'role.deleted'], limit: 1000 }),
  ]);
  return JSON.stringify({ identities: identities.identities, roles, changes: changes.entries.length });
}

describe('authorization', () => {
  for (const who of ['none', 'malformed', 'outsider', 'reader'] as const) {
    it(`every identity and role route, ${who === 'none' ? 'without a key' : `with a ${who} key`}: refused where it must be, and nothing changes`, async () => {
      const before = await state();
      const key = who === 'none' ? null : who === 'malformed' ? 'till_not-a-key' : who === 'outsider' ? h.outsider : h.reader;
      for (const route of ROUTES) {
        const answer = await h.call(route.method, route.path, { key, ...(route.body !== undefined && { body: route.body }) });
        const expected = who === 'none' || who === 'malformed' ? 401 : who === 'outsider' || route.changes ? 403 : 200;
        expect([route.method, route.path, answer.status]).toEqual([route.method, route.path, expected]);
        if (expected !== 200) {
          expect(answer.headers.get('content-type')).toBe('application/problem+json');
          expect(answer.json.status).toBe(expected);
        }
      }
      expect(await state()).toBe(before);
    });
  }

  it('a read-only key sees identities and roles', async () => {
    const shown = await h.call('GET', '/console/api/identities/acme', { key: h.reader });
    expect(shown.json).toMatchObject({ id: 'acme', name: 'Acme', keyCount: 0, creditsLeft: 50, roles: ['support'] });
    const role = await h.call('GET', '/console/api/roles/support', { key: h.reader });
    expect(role.json).toMatchObject({ name: 'support', scopes: ['tickets:read'], holders: { keys: 0, identities: 1 } });
  });
});

describe('with an admin key', () => {
  it('defines a role, creates an identity, gives keys both, and deletes them only when asked to force, each change in the trail with the acting key', async () => {
    const defined = await h.call('PUT', '/console/api/roles/billing', { body: { scopes: ['invoices:read'], reason: 'new team' } });
    expect([defined.status, defined.json]).toMatchObject([201, { name: 'billing', scopes: ['invoices:read'], version: 1 }]);
    const redefined = await h.call('PUT', '/console/api/roles/billing', { body: { scopes: ['invoices:read', 'invoices:write'] } });
    expect([redefined.status, redefined.json]).toMatchObject([200, { scopes: ['invoices:read', 'invoices:write'], version: 2 }]);
    expect((await h.call('GET', '/console/api/roles')).json.roles.map((r: { name: string }) => r.name)).toEqual(expect.arrayContaining(['billing', 'support']));

    const created = await h.call('POST', '/console/api/identities', {
      body: {
        id: 'globex',
        name: 'Globex',
        metadata: { plan: 'pro' },
        credits: { remaining: 10 },
        limits: [{ name: 'rps', limit: 5, window: '1s' }],
        reason: 'signed up',
      },
    });
    expect([created.status, created.json]).toMatchObject([201, { id: 'globex', name: 'Globex', metadata: { plan: 'pro' } }]);
    const drawn = await h.call('POST', '/console/api/identities', { body: { name: 'No id given' } });
    expect(drawn.json.id).toMatch(/^id_/);
    const updated = await h.call('PATCH', '/console/api/identities/globex', {
      body: { name: 'Globex Inc', allowedIps: ['203.0.113.0/24'], roles: ['billing'], reason: 'renamed' },
    });
    expect([updated.status, updated.json]).toMatchObject([200, { name: 'Globex Inc', allowedIps: ['203.0.113.0/24'], roles: ['billing'], version: 2 }]);

    // A key of the identity, with roles and networks of its own: the views show them.
    const key = await h.call('POST', '/console/api/keys', {
      body: { name: 'globex-key', scopes: ['orders:read'], identityId: 'globex', roles: ['billing'], allowedIps: ['198.51.100.7'] },
    });
    expect(key.status).toBe(201);
    expect(key.json.record).toMatchObject({ identityId: 'globex', roles: ['billing'], allowedIps: ['198.51.100.7/32'] });
    const id = key.json.record.id as string;
    expect((await h.call('GET', `/console/api/keys/${id}`)).json).toMatchObject({ identityId: 'globex', roles: ['billing'] });
    const listed = await h.call('GET', '/console/api/keys?q=globex-key');
    expect(listed.json.keys[0]).toMatchObject({ identityId: 'globex', roles: ['billing'], allowedIps: ['198.51.100.7/32'] });
    const ofGlobex = await h.call('GET', '/console/api/keys?identityId=globex');
    expect(ofGlobex.json.keys.map((k: { id: string }) => k.id)).toEqual([id]);
    const globexTrail = await h.call('GET', '/console/api/audit?identityId=globex');
    expect(globexTrail.json.entries.map((e: { type: string }) => e.type)).toEqual(['identity.created', 'identity.updated']);
    const shown = await h.call('GET', '/console/api/identities/globex');
    expect(shown.json).toMatchObject({ id: 'globex', keyCount: 1, creditsLeft: 10 });
    expect((await h.call('GET', '/console/api/roles/billing')).json.holders).toEqual({ keys: 1, identities: 1 });

    const inUse = await h.call('DELETE', '/console/api/identities/globex', { body: { reason: 'churned' } });
    expect([inUse.status, inUse.json.code]).toEqual([409, 'IDENTITY_IN_USE']);
    expect(inUse.json.detail).toContain('1 key');
    const roleInUse = await h.call('DELETE', '/console/api/roles/billing');
    expect([roleInUse.status, roleInUse.json.code]).toEqual([409, 'ROLE_IN_USE']);
    expect(roleInUse.json.detail).toContain('1 key and 1 identity');

    // Moving the key out and taking the role from it and the identity: deletions then need no force.
    const moved = await h.call('PATCH', `/console/api/keys/${id}`, { body: { identityId: null, roles: null, allowedIps: null } });
    expect(moved.json).toMatchObject({ identityId: null, roles: [], allowedIps: [] });
    expect((await h.call('PATCH', '/console/api/identities/globex', { body: { roles: [] } })).status).toBe(200);
    expect((await h.call('DELETE', '/console/api/roles/billing', { body: { reason: 'unused' } })).json).toMatchObject({
      deleted: { name: 'billing' },
      keys: 0,
    });
    expect((await h.call('GET', '/console/api/roles/billing')).status).toBe(404);
    const deleted = await h.call('DELETE', '/console/api/identities/globex', { body: { reason: 'churned' } });
    expect([deleted.status, deleted.json]).toMatchObject([200, { deleted: { id: 'globex' }, keys: 0 }]);
    expect((await h.call('GET', '/console/api/identities/globex')).status).toBe(404);

    const trail = await h.call('GET', '/console/api/audit?types=identity.created,identity.updated,identity.deleted,role.defined,role.deleted&limit=1000');
    const mine = trail.json.entries.filter((e: { actor: string | null }) => e.actor === `console:${adminId}`);
    expect(mine.map((e: { type: string }) => e.type)).toEqual([
      'role.defined',
      'role.defined',
      'identity.created',
      'identity.created',
      'identity.updated',
      'identity.updated',
      'role.deleted',
      'identity.deleted',
    ]);
    expect(mine.map((e: { reason: string | null }) => e.reason)).toEqual(['new team', null, 'signed up', null, 'renamed', null, 'unused', 'churned']);
  });

  it('deletes an identity and a role still in use with force', async () => {
    await h.call('PUT', '/console/api/roles/ops', { body: { scopes: ['ops:*'] } });
    await h.call('POST', '/console/api/identities', { body: { id: 'initech', name: 'Initech', roles: ['ops'] } });
    const key = await h.call('POST', '/console/api/keys', { body: { name: 'initech-key', scopes: [], identityId: 'initech', roles: ['ops'] } });
    expect(key.status).toBe(201);
    const role = await h.call('DELETE', '/console/api/roles/ops', { body: { force: true, reason: 'retired' } });
    expect([role.status, role.json.keys]).toEqual([200, 1]);
    const identity = await h.call('DELETE', '/console/api/identities/initech', { body: { force: true } });
    expect([identity.status, identity.json.keys]).toEqual([200, 1]);
    expect((await h.call('GET', '/orders', { key: key.json.key })).status).toBe(401);
  });

  it('pages identities by cursor without skipping or repeating one', async () => {
    for (let i = 0; i < 7; i++) await h.till.identities.create({ id: `page-${i}`, name: `Page ${i}` });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const answer = await h.call('GET', `/console/api/identities?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(answer.status).toBe(200);
      expect(answer.json.identities.length).toBeLessThanOrEqual(3);
      seen.push(...answer.json.identities.map((i: { id: string }) => i.id));
      cursor = answer.json.cursor;
    } while (cursor !== undefined);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(Array.from({ length: 7 }, (_, i) => `page-${i}`)));
  });

  it('answers unknown identities and roles with 404, and bad input with a 400 problem (never 500), changing nothing', async () => {
    for (const [method, path, body] of [
      ['GET', '/console/api/identities/nobody', undefined],
      ['PATCH', '/console/api/identities/nobody', { name: 'x' }],
      ['DELETE', '/console/api/identities/nobody', undefined],
      ['GET', '/console/api/roles/nothing', undefined],
      ['DELETE', '/console/api/roles/nothing', undefined],
    ] as const) {
      const answer = await h.call(method, path, body === undefined ? {} : { body });
      expect([method, path, answer.status]).toEqual([method, path, 404]);
    }
    const before = await state();
    const bad: Array<[string, string, { body?: unknown; raw?: string }]> = [
      ['GET', '/console/api/identities?limit=0', {}],
      ['GET', '/console/api/identities?limit=1&limit=2', {}],
      ['GET', '/console/api/identities?cursor=bm90IGEgY3Vyc29y', {}],
      ['GET', '/console/api/identities?q=acme', {}],
      ['GET', '/console/api/identities/acme?x=1', {}],
      ['GET', '/console/api/identities/%7Bbad%7D', {}],
      ['GET', `/console/api/identities/${'a'.repeat(65)}`, {}],
      ['GET', '/console/api/identities/-acme', {}],
      ['POST', '/console/api/identities', { raw: '{"name":' }],
      ['POST', '/console/api/identities', { body: {} }],
      ['POST', '/console/api/identities', { body: { name: 'x', owner: 'me' } }],
      ['POST', '/console/api/identities', { body: { id: 'has space', name: 'x' } }],
      ['POST', '/console/api/identities', { body: { name: 'x', allowedIps: ['not-an-ip'] } }],
      ['POST', '/console/api/identities', { body: { name: 'x', allowedIps: 'any' } }],
      ['POST', '/console/api/identities', { body: { name: 'x', roles: ['BAD ROLE'] } }],
      ['POST', '/console/api/identities', { body: { name: 'x', credits: { remaining: -1 } } }],
      ['POST', '/console/api/identities', { body: { name: 'x', limits: [{ name: 'a', limit: 0, window: '1s' }] } }],
      ['POST', '/console/api/identities', { body: { name: 'x', metadata: [] } }],
      ['PATCH', '/console/api/identities/acme', { body: {} }],
      ['PATCH', '/console/api/identities/acme', { body: { id: 'other' } }],
      ['PATCH', '/console/api/identities/acme', { body: { name: 7 } }],
      ['DELETE', '/console/api/identities/acme', { body: { force: 'yes' } }],
      ['DELETE', '/console/api/identities/acme', { body: { cascade: true } }],
      ['GET', '/console/api/roles?limit=5', {}],
      ['GET', '/console/api/roles/Not%20A%20Role', {}],
      ['GET', '/console/api/roles/support?holders=1', {}],
      ['PUT', '/console/api/roles/support', { body: {} }],
      ['PUT', '/console/api/roles/support', { body: { scopes: 'tickets:read' } }],
      ['PUT', '/console/api/roles/support', { body: { scopes: ['bad scope!'] } }],
      ['PUT', '/console/api/roles/support', { body: { scopes: ['a'], name: 'other' } }],
      ['PUT', '/console/api/roles/UPPER', { body: { scopes: ['a'] } }],
      ['DELETE', '/console/api/roles/support', { body: { force: 1 } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], allowedIps: ['300.1.1.1'] } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], roles: 'support' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], roles: ['No Role'] } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], identityId: 5 } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], identityId: '{acme}' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], identityId: 'nobody' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], roles: ['undefined-role'] } }],
      ['PATCH', '/console/api/keys/AAAAAAAAAAAAAAAA', { body: { allowedIps: [7] } }],
      ['GET', '/console/api/keys?identityId=%7Bacme%7D', {}],
      ['GET', '/console/api/audit?identityId=', {}],
    ];
    for (const [method, path, o] of bad) {
      const answer = await h.call(method, path, o);
      expect([method, path, JSON.stringify(o), answer.status]).toEqual([method, path, JSON.stringify(o), 400]);
      expect(answer.headers.get('content-type')).toBe('application/problem+json');
      expect(answer.json).toMatchObject({ status: 400, type: expect.stringMatching(/^urn:till:problem:/) });
    }
    expect(await state()).toBe(before);
    // A key moved to an identity that does not exist: bad input, with the code that says why.
    const { record } = await h.till.keys.create({ name: 'stays', scopes: [] });
    const moved = await h.call('PATCH', `/console/api/keys/${record.id}`, { body: { identityId: 'nobody' } });
    expect([moved.status, moved.json.code]).toEqual([400, 'IDENTITY_NOT_FOUND']);
    expect((await h.till.keys.get(record.id))?.identityId).toBeNull();
    const taken = await h.call('POST', '/console/api/identities', { body: { id: 'acme', name: 'Again' } });
    expect([taken.status, taken.json.code]).toEqual([409, 'IDENTITY_EXISTS']);
    expect((await h.call('POST', '/console/api/identities/acme')).status).toBe(405);
    expect((await h.call('POST', '/console/api/roles/support')).status).toBe(405);
  });
});

describe('no secrets', () => {
  it('no answer holds a digest, and only key create answers hold a key', async () => {
    const digests = await storedDigests(h.till);
    expect(h.answers.length).toBeGreaterThan(50);
    for (const { text, mayHoldKey } of h.answers) {
      for (const digest of digests) expect(text).not.toContain(digest);
      if (!mayHoldKey) expect(text).not.toMatch(/till_[0-9A-Za-z]{44}/);
    }
  });
});
