import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/redis/index.js';
import { TillError } from '../src/errors.js';
import { deleteNamespace, newClient, uniqueNamespace } from '../../../test/helpers/redis.js';
import { describeStoreConformance, sampleRecord } from './store-conformance.js';

describeStoreConformance('redis', async () => {
  const namespace = uniqueNamespace();
  const clients = [newClient(), newClient()];
  return {
    stores: async () => [new RedisStore({ client: clients[0]!, namespace }), new RedisStore({ client: clients[1]!, namespace })],
    cleanup: async () => {
      await deleteNamespace(clients[0]!, namespace);
      for (const c of clients) c.disconnect();
    },
  };
});

describe('RedisStore specifics', () => {
  const namespace = uniqueNamespace();
  const client = newClient();
  afterAll(async () => {
    await deleteNamespace(client, namespace);
    client.disconnect();
  });

  it('keeps each record under its {id} hash tag, and the id in the indexes', async () => {
    const store = new RedisStore({ client, namespace });
    const record = sampleRecord({ ownerId: 'acme' });
    await store.insert(record);
    expect(await client.exists(`${namespace}{${record.id}}:k`)).toBe(1);
    expect(store.recordKey(record.id)).toBe(`${namespace}{${record.id}}:k`);
    expect(await client.zscore(`${namespace}idx:all`, record.id)).toBe(String(record.createdAt));
    expect(await client.zscore(`${namespace}idx:owner:acme`, record.id)).toBe(String(record.createdAt));
  });

  it('reports a corrupt record as a store error, not as a key', async () => {
    const store = new RedisStore({ client, namespace });
    const record = sampleRecord();
    await client.set(`${namespace}{${record.id}}:k`, '{"id":1}');
    await expect(store.get(record.id)).rejects.toMatchObject({ code: 'STORE_ERROR' });
  });

  it('checks its options', () => {
    expect(() => new RedisStore({} as never)).toThrow(TillError);
    expect(() => new RedisStore({ client, namespace: 'a{b}' })).toThrow(/braces/);
    expect(() => new RedisStore({ client, commandTimeout: 0 })).toThrow(/commandTimeout/);
  });
});
