// `till identities` and `till keys create --identity`, run as the built binary against a real Redis.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { assertBuilt, runTill, type Run } from './harness.js';

const namespace = uniqueNamespace();
let client: Redis;
let till: Till;

const till$ = (...args: string[]) => runTill(['--namespace', namespace, ...args], { REDIS_URL: redisUrl() });
const parse = <T = Record<string, unknown>>(run: Run): T => JSON.parse(run.stdout) as T;

beforeAll(() => {
  assertBuilt();
  client = newClient();
  till = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger, usage: false, auditEvents: false });
});

afterAll(async () => {
  await till.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

describe('till identities', () => {
  it('creates, shows, lists, updates and deletes an identity, with --json; keys join it with --identity', async () => {
    // An identity's roles must be defined, as a key's must.
    await till.roles.define('reporting', ['reports:read']);
    const created = await till$(
      'identities',
      'create',
      'acme',
      '--name',
      'Acme Corp',
      '--rate',
      'per-minute=100/1m',
      '--credits',
      '50',
      '--refill',
      '50/30d',
      '--allow-ip',
      '203.0.113.0/24',
      '--role',
      'reporting',
      '--json',
    );
    expect(created.code).toBe(0);
    const { identity } = parse<{ identity: Record<string, unknown> }>(created);
    expect(identity).toMatchObject({ id: 'acme', name: 'Acme Corp', allowedIps: ['203.0.113.0/24'], roles: ['reporting'], version: 1 });
    expect(await till.identities.get('acme')).toMatchObject({ limits: [{ name: 'per-minute', limit: 100, window: 60_000 }] });

    const key = await till$('keys', 'create', '--name', 'ci', '--scope', 'deploy:read', '--identity', 'acme', '--expires', '30d', '--json');
    expect(key.code).toBe(0);
    const { record } = parse<{ record: { id: string; identityId: string } }>(key);
    expect(record.identityId).toBe('acme');

    const shown = await till$('identities', 'show', 'acme');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/keys\s+1/);
    expect(shown.stdout).toMatch(/credits\s+50 left, topped up to 50 every 30d/);
    // A request with the key, from the identity's network, spends one of the identity's credits.
    expect((await till.verify(parse<{ key: string }>(key).key, { ip: '203.0.113.7' })).code).toBe('VALID');
    expect(parse<{ keys: number; credits: number }>(await till$('identities', 'show', 'acme', '--json'))).toMatchObject({ keys: 1, credits: 49 });
    const listed = parse<{ identities: Array<{ id: string }> }>(await till$('identities', 'list', '--json'));
    expect(listed.identities.map((i) => i.id)).toEqual(['acme']);
    expect((await till$('keys', 'list', '--identity', 'acme', '--json')).stdout).toContain(record.id);

    const updated = parse<{ identity: { version: number; credits: unknown; roles: string[] } }>(
      await till$('identities', 'update', 'acme', '--credits', 'none', '--role', 'none', '--json'),
    );
    expect(updated.identity).toMatchObject({ version: 2, credits: null, roles: [] });

    const refused = await till$('identities', 'delete', 'acme', '--yes');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('still has 1 key');
    const deleted = await till$('identities', 'delete', 'acme', '--force', '--yes', '--json', '--reason', 'customer left');
    expect(deleted.code).toBe(0);
    expect(parse<{ keys: number }>(deleted).keys).toBe(1);
    expect(await till.identities.get('acme')).toBeNull();
    const trail = await till.keys.audit({ identityId: 'acme' });
    expect(trail.entries.map((e) => [e.type, e.actor?.startsWith('cli:') ?? false])).toEqual([
      ['identity.created', true],
      ['identity.updated', true],
      ['identity.deleted', true],
    ]);
  });

  it('refuses bad input with exit 1 and a clear line, before or at the store', async () => {
    const cases: Array<[string[], string]> = [
      [['identities', 'create', 'bad{id', '--name', 'x'], 'invalid identity id'],
      [['identities', 'create', 'ok-id', '--name', 'x', '--allow-ip', 'not-an-ip'], 'invalid IP range "not-an-ip"'],
      [['identities', 'create', 'ok-id', '--name', 'x', '--role', 'Bad Role'], 'invalid role name "Bad Role"'],
      [['identities', 'create', 'ok-id', '--name', 'x', '--rate', 'nope'], 'invalid --rate'],
      [['identities', 'show', 'missing'], 'no identity missing'],
      [['identities', 'update', 'missing', '--name', 'x'], 'no identity missing'],
      [['identities', 'delete', 'missing', '--yes'], 'no identity missing'],
      [['keys', 'create', '--name', 'k', '--scope', 'a:read', '--identity', 'missing'], 'no identity missing'],
    ];
    for (const [args, message] of cases) {
      const run = await till$(...args);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr, args.join(' ')).toContain(message);
    }
    const nothing = await till$('identities', 'update', 'x');
    expect(nothing.code).toBe(2);
  });
});
