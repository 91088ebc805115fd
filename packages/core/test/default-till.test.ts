import { afterEach, describe, expect, it } from 'vitest';
import { defaultTill, resetDefaultTill } from '../src/till.js';
import { newClient, redisUrl } from '../../../test/helpers/redis.js';

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
    expect(warnings[0]).toMatch(/^\[till\] no REDIS_URL/);
  });

  it('uses Redis at REDIS_URL, loading ioredis only then', async () => {
    const till = defaultTill({ REDIS_URL: redisUrl(), TILL_PREFIX: 'envtest' }, { warn: () => {}, error: () => {} });
    expect(till.store.kind).toBe('redis');
    const { key, record } = await till.keys.create({ name: 'from env', scopes: ['a'] });
    expect(key.startsWith('envtest_')).toBe(true);
    expect(await till.verify(key)).toMatchObject({ valid: true });
    const client = newClient();
    expect(await client.exists(`till:{${record.id}}:k`)).toBe(1);
    // The default namespace is shared: remove exactly what this test wrote.
    await client.del(`till:{${record.id}}:k`);
    await client.zrem('till:idx:all', record.id);
    client.disconnect();
  });
});
