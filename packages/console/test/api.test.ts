// The admin API on Express and real Redis: every route refuses a request without a key, with a key
// that holds neither till:read nor till:admin, and (for changes) with a read-only key, and nothing
// changes then; each route does what it says with an admin key; bad input is a 400 problem; no
// answer but create and rotate ever holds a key, and none holds a digest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@till/testkit/wait';
import { type Harness, startHarness, storedDigests } from './harness.js';

let h: Harness;
let target: string;

beforeAll(async () => {
  h = await startHarness();
  target = (await h.till.keys.create({ name: 'target', scopes: ['orders:read'], ownerId: 'team-a', expiresIn: '90d' })).record.id;
});
afterAll(async () => {
  await h?.close();
});

/** Every route of the API, with a body that an admin key would get a 2xx for. */
const routes = (id: string): Array<{ method: string; path: string; body?: unknown; changes: boolean }> => [
  { method: 'GET', path: '/console/api/session', changes: false },
  { method: 'GET', path: '/console/api/keys', changes: false },
  { method: 'GET', path: '/console/api/keys?q=target&status=active&limit=5', changes: false },
  { method: 'POST', path: '/console/api/keys', body: { name: 'made', scopes: ['a:b'] }, changes: true },
  { method: 'GET', path: `/console/api/keys/${id}`, changes: false },
  { method: 'PATCH', path: `/console/api/keys/${id}`, body: { name: 'renamed' }, changes: true },
  { method: 'POST', path: `/console/api/keys/${id}/disable`, body: {}, changes: true },
  { method: 'POST', path: `/console/api/keys/${id}/enable`, body: {}, changes: true },
  { method: 'POST', path: `/console/api/keys/${id}/rotate`, body: { grace: '1h' }, changes: true },
  { method: 'POST', path: `/console/api/keys/${id}/revoke`, body: { reason: 'test' }, changes: true },
  { method: 'GET', path: `/console/api/keys/${id}/usage?days=7`, changes: false },
  { method: 'GET', path: `/console/api/audit?keyId=${id}`, changes: false },
  { method: 'GET', path: '/console/api/report', changes: false },
  { method: 'GET', path: '/console/api/events', changes: false },
];

/** What a refused request must leave as it was: the target key, the number of keys, the changes in the trail. */
async function state(): Promise<string> {
  const keys = await h.till.store.list({ limit: 1000 });
  const changes = await h.till.keys.audit({
    types: ['key.created', 'key.updated', 'key.rotated', 'key.revoked', 'key.disabled', 'key.enabled', 'key.deleted'],
    limit: 1000,
  });
  return JSON.stringify({ target: await h.till.store.get(target), count: keys.keys.length, changes: changes.entries.length });
}

describe('authorization', () => {
  for (const who of ['none', 'malformed', 'outsider', 'reader'] as const) {
    it(`every route, ${who === 'none' ? 'without a key' : `with a ${who} key`}: refused where it must be, and nothing changes`, async () => {
      const before = await state();
      const key = who === 'none' ? null : who === 'malformed' ? 'till_not-a-key' : who === 'outsider' ? h.outsider : h.reader;
      for (const route of routes(target)) {
        if (route.path.endsWith('/events') && who === 'reader') continue; // a stream: its grant is checked in events.test.ts
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

  it('a key in a cookie is no key: the console reads headers only', async () => {
    const answer = await h.call('GET', '/console/api/keys', { key: null, headers: { cookie: `key=${h.admin}; till=${h.admin}` } });
    expect(answer.status).toBe(401);
  });

  it('the session route says what the key may do', async () => {
    expect((await h.call('GET', '/console/api/session')).json).toMatchObject({ name: 'admin', canChange: true });
    expect((await h.call('GET', '/console/api/session', { key: h.reader })).json).toMatchObject({ name: 'reader', canChange: false });
  });
});

describe('with an admin key', () => {
  it('creates a key (the full key once), shows, updates, disables, enables, rotates and revokes it, each in the trail with the acting key', async () => {
    const adminId = h.admin.slice(h.admin.lastIndexOf('_') + 1, h.admin.lastIndexOf('_') + 17);
    const created = await h.call('POST', '/console/api/keys', {
      body: {
        name: 'billing',
        scopes: ['invoices:read'],
        ownerId: 'team-b',
        expiresIn: '30d',
        metadata: { tier: 'gold' },
        limits: [{ name: 'per-second', limit: 10, window: '1s' }],
        credits: { remaining: 100 },
        reason: 'new customer',
      },
    });
    expect(created.status).toBe(201);
    expect(created.json.key).toMatch(/^till_/);
    const id = created.json.record.id as string;
    expect(created.json.record).toMatchObject({ name: 'billing', status: 'active', ownerId: 'team-b' });
    expect(created.json.record.hash).toBeUndefined();

    const shown = await h.call('GET', `/console/api/keys/${id}`);
    expect(shown.json).toMatchObject({ id, status: 'active', creditsLeft: 100, lastUsedAt: null });
    expect(shown.text).not.toContain(created.json.key);

    expect(
      (await h.call('PATCH', `/console/api/keys/${id}`, { body: { scopes: ['invoices:read', 'invoices:write'], setMetadata: { region: 'eu' } } })).json,
    ).toMatchObject({
      scopes: ['invoices:read', 'invoices:write'],
      metadata: { tier: 'gold', region: 'eu' },
    });
    expect((await h.call('POST', `/console/api/keys/${id}/disable`, { body: { reason: 'investigating' } })).json.status).toBe('disabled');
    expect((await h.call('GET', '/orders', { key: created.json.key })).status).toBe(401);
    expect((await h.call('POST', `/console/api/keys/${id}/enable`)).json.status).toBe('active');
    expect((await h.call('GET', '/orders', { key: created.json.key })).status).toBe(200);

    const rotated = await h.call('POST', `/console/api/keys/${id}/rotate`, { body: { grace: '1h', reason: 'yearly' } });
    expect(rotated.status).toBe(201);
    expect(rotated.json.key).toMatch(/^till_/);
    expect(rotated.json.previous).toMatchObject({ id, rotatedTo: rotated.json.record.id });
    expect((await h.call('GET', '/orders', { key: rotated.json.key })).status).toBe(200);

    const revoked = await h.call('POST', `/console/api/keys/${rotated.json.record.id}/revoke`, { body: { reason: 'leaked' } });
    expect(revoked.status).toBe(200);
    expect(revoked.json.revoked.map((k: { id: string }) => k.id).sort()).toEqual([id, rotated.json.record.id].sort());
    expect((await h.call('GET', '/orders', { key: rotated.json.key })).status).toBe(401);
    expect((await h.call('GET', '/orders', { key: created.json.key })).status).toBe(401);

    const trail = await h.call('GET', `/console/api/audit?keyId=${id}&types=key.created,key.updated,key.disabled,key.enabled,key.rotated,key.revoked`);
    expect(trail.json.entries.map((e: { type: string }) => e.type)).toEqual([
      'key.created',
      'key.updated',
      'key.disabled',
      'key.enabled',
      'key.rotated',
      'key.revoked',
    ]);
    for (const entry of trail.json.entries) expect(entry.actor).toBe(`console:${adminId}`);
    expect(trail.json.entries[0].reason).toBe('new customer');
  });

  it('refuses changes a key cannot take with 409, and unknown keys with 404', async () => {
    const { record } = await h.till.keys.create({ name: 'gone', scopes: ['a'] });
    await h.till.keys.revoke(record.id);
    for (const action of ['disable', 'enable', 'rotate']) {
      const answer = await h.call('POST', `/console/api/keys/${record.id}/${action}`);
      expect([action, answer.status, answer.json.code]).toEqual([action, 409, 'KEY_REVOKED']);
    }
    const unknown = 'AAAAAAAAAAAAAAAA';
    for (const [method, path] of [
      ['GET', `/console/api/keys/${unknown}`],
      ['GET', `/console/api/keys/${unknown}/usage`],
      ['PATCH', `/console/api/keys/${unknown}`],
      ['POST', `/console/api/keys/${unknown}/revoke`],
    ] as const) {
      const answer = await h.call(method, path, method === 'PATCH' ? { body: { name: 'x' } } : {});
      expect([path, answer.status]).toEqual([path, 404]);
    }
  });

  it('answers bad input with a 400 problem', async () => {
    const bad: Array<[string, string, { body?: unknown; raw?: string; type?: string }]> = [
      ['POST', '/console/api/keys', { raw: '{"name":' }],
      ['POST', '/console/api/keys', { raw: '[1,2]' }],
      ['POST', '/console/api/keys', { body: { name: 'x' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: ['bad scope!'] } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], admin: true } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], expiresIn: '5000' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], expiresAt: 'soon' } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], credits: { remaining: -1 } } }],
      ['POST', '/console/api/keys', { body: { name: 'x', scopes: [], limits: [{ name: 'a', limit: 0, window: '1s' }] } }],
      ['PATCH', `/console/api/keys/${target}`, { body: {} }],
      ['PATCH', `/console/api/keys/${target}`, { body: { disabled: true } }],
      ['POST', `/console/api/keys/${target}/rotate`, { body: { grace: 'forever' } }],
      ['POST', `/console/api/keys/${target}/revoke`, { body: { chain: 'yes' } }],
      ['GET', '/console/api/keys/not-an-id', {}],
      ['GET', '/console/api/keys?limit=0', {}],
      ['GET', '/console/api/keys?limit=20&limit=30', {}],
      ['GET', '/console/api/keys?status=sleeping', {}],
      ['GET', '/console/api/keys?cursor=bm90IGpzb24', {}],
      ['GET', '/console/api/keys?sort=name', {}],
      ['GET', `/console/api/keys/${target}/usage?days=1000`, {}],
      ['GET', '/console/api/audit?types=key.exploded', {}],
      ['GET', '/console/api/audit?cursor=abc', {}],
      ['GET', '/console/api/audit?from=yesterday', {}],
      ['GET', '/console/api/report?unusedFor=soon', {}],
      ['GET', '/console/api/events?code=NOPE', {}],
      ['GET', '/console/api/%E0%A4%A', {}],
    ];
    const before = await h.till.store.get(target);
    for (const [method, path, o] of bad) {
      const answer = await h.call(method, path, o);
      expect([method, path, answer.status]).toEqual([method, path, 400]);
      expect(answer.headers.get('content-type')).toBe('application/problem+json');
      expect(answer.json).toMatchObject({ status: 400, type: expect.stringMatching(/^urn:till:problem:/) });
    }
    expect(await h.till.store.get(target)).toEqual(before);
    expect((await h.call('POST', '/console/api/keys', { raw: 'name=x', type: 'application/x-www-form-urlencoded' })).status).toBe(415);
    expect((await h.call('POST', '/console/api/keys', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }) })).status).toBe(413);
    expect((await h.call('DELETE', `/console/api/keys/${target}`)).status).toBe(405);
    expect((await h.call('GET', '/console/api/nothing')).status).toBe(404);
  });

  it('lists, searches and pages keys without skipping or repeating one', async () => {
    for (let i = 0; i < 12; i++) await h.till.keys.create({ name: `page-${i}${i % 3 === 0 ? '-blue' : ''}`, scopes: ['p'] });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const answer = await h.call('GET', `/console/api/keys?q=page-&limit=5${cursor ? `&cursor=${cursor}` : ''}`);
      expect(answer.status).toBe(200);
      seen.push(...answer.json.keys.map((k: { name: string }) => k.name));
      cursor = answer.json.cursor;
    } while (cursor !== undefined);
    // The store's order (creation time; keys made in one millisecond in any order), each key once.
    const whole = await h.call('GET', '/console/api/keys?q=page-&limit=200');
    expect(whole.json.cursor).toBeUndefined();
    expect(seen).toEqual(whole.json.keys.map((k: { name: string }) => k.name));
    expect([...seen].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `page-${i}${i % 3 === 0 ? '-blue' : ''}`).sort());
    const blue = await h.call('GET', '/console/api/keys?q=BLUE');
    expect(blue.json.keys.map((k: { name: string }) => k.name).sort()).toEqual(['page-0-blue', 'page-3-blue', 'page-6-blue', 'page-9-blue']);
    const revoked = await h.call('GET', '/console/api/keys?status=revoked&limit=200');
    expect(revoked.json.keys.every((k: { status: string }) => k.status === 'revoked')).toBe(true);
  });

  it("gives a key's usage by day and outcome, and its last use", async () => {
    const { key, record } = await h.till.keys.create({ name: 'used', scopes: ['orders:read'] });
    expect((await h.call('GET', '/orders', { key })).status).toBe(200);
    expect((await h.call('GET', '/orders', { key })).status).toBe(200);
    await h.till.keys.disable(record.id);
    expect((await h.call('GET', '/orders', { key })).status).toBe(401);
    expect(
      await waitFor(async () => {
        const usage = (await h.call('GET', `/console/api/keys/${record.id}/usage?days=2`)).json;
        return usage.days[0]?.counts.VALID === 2 && usage.days[0]?.counts.DISABLED === 1 && typeof usage.lastUsedAt === 'number';
      }, 5000),
    ).toBe(true);
  });

  it("gives the audit report with each finding's fix", async () => {
    await h.till.keys.create({ name: 'wild', scopes: ['*'] });
    const report = await h.call('GET', '/console/api/report?rotationAge=90d');
    expect(report.status).toBe(200);
    const wild = report.json.findings.find((f: { name: string; kind: string }) => f.name === 'wild' && f.kind === 'wildcard-scope');
    expect(wild).toMatchObject({ action: expect.any(String), docs: expect.stringContaining('#') });
  });
});

describe('no secrets', () => {
  it('no answer holds a digest, and only create and rotate answers hold a key', async () => {
    const digests = await storedDigests(h.till);
    expect(digests.length).toBeGreaterThan(5);
    expect(h.answers.length).toBeGreaterThan(50);
    for (const { text, mayHoldKey } of h.answers) {
      for (const digest of digests) expect(text).not.toContain(digest);
      if (!mayHoldKey) expect(text).not.toMatch(/till_[0-9A-Za-z]{44}/);
    }
  });
});
