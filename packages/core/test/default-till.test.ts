import { afterEach, describe, expect, it } from 'vitest';
import { defaultTill, resetDefaultTill } from '../src/till.js';
import { TillError } from '../src/errors.js';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';

describe('defaultTill', () => {
  afterEach(async () => {
    await resetDefaultTill();
  });

  it('uses the memory store without REDIS_URL, warning once', async () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => warnings.push(m), error: () => {} };
    const till = defaultTill({}, logger);
    expect(till.store.kind).toBe('memory');
    expect(defaultTill({}, logger)).toBe(till);
    await resetDefaultTill();
    defaultTill({}, logger);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^\[till\] \[defaultTill\] no REDIS_URL/);
  });

  it('uses Redis at REDIS_URL, loading ioredis only then, under TILL_NAMESPACE', async () => {
    // A namespace of its own, not the shared default `till:`: nothing another run or test holds.
    const namespace = uniqueNamespace();
    const client = newClient();
    try {
      const till = defaultTill({ REDIS_URL: redisUrl(), TILL_PREFIX: 'envtest', TILL_NAMESPACE: namespace }, { warn: () => {}, error: () => {} });
      expect(till.store.kind).toBe('redis');
      const { key, record } = await till.keys.create({ name: 'from env', scopes: ['a'] });
      expect(key.startsWith('envtest_')).toBe(true);
      expect(await till.verify(key)).toMatchObject({ valid: true });
      expect(await client.exists(`${namespace}{${record.id}}:k`)).toBe(1);
      expect(await client.exists(`till:{${record.id}}:k`)).toBe(0);
    } finally {
      await resetDefaultTill();
      await deleteNamespace(client, namespace);
      client.disconnect();
    }
  });

  it('reports a Redis store it cannot make from the environment, refuses calls with why, and closes what it opened', async () => {
    const errors: string[] = [];
    const till = defaultTill({ REDIS_URL: redisUrl(), TILL_NAMESPACE: 'bad{namespace}' }, { warn: () => {}, error: (m) => errors.push(m) });
    expect(till.store.kind).toBe('redis');
    const failure = await till.keys.create({ name: 'never', scopes: ['a'] }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TillError);
    expect(failure).toMatchObject({ code: 'INVALID_OPTIONS', message: expect.stringMatching(/^\[till\] \[redis\] namespace must be/) });
    expect(errors).toEqual([(failure as TillError).message]);
    await resetDefaultTill();
  });
});
