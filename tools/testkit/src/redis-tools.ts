// Redis chores shared by the test setup, the suites and the benchmarks (no vitest: plain node loads its build).
import { Redis } from 'ioredis';

/** Whether a Redis answers PING at `url` within about a second. */
export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Deletes every Redis key under `namespace`. */
export async function deleteNamespace(client: Redis, namespace: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await client.del(...keys);
  } while (cursor !== '0');
}

/**
 * Where a single Redis holds the state of a subject's rate limit `bucket` (see packages/core/src/redis/layout.ts):
 * each hash of limit states under `namespace` whose field names it, with that field's value and the hash's
 * time to live (ms).
 */
export async function limitStates(
  client: Redis,
  namespace: string,
  subject: string,
  bucket: string,
): Promise<Array<{ hash: string; state: string; pttl: number }>> {
  const field = `{${subject}}${bucket}`;
  const found: Array<{ hash: string; state: string; pttl: number }> = [];
  let cursor = '0';
  do {
    const [next, hashes] = await client.scan(cursor, 'MATCH', `${namespace}rl:*`, 'COUNT', 500);
    cursor = next;
    for (const hash of hashes) {
      const state = await client.hget(hash, field);
      if (state !== null) found.push({ hash, state, pttl: await client.pttl(hash) });
    }
  } while (cursor !== '0');
  return found;
}
