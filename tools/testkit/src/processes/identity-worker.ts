// One process for test/identity-exactness.test.ts (started with child_process.fork): a Till on the BUILT
// packages, on a single Redis (REDIS_URL) or a Redis Cluster (TILL_CLUSTER_NODES, JSON [{ host, port }]),
// shared with every other worker under TILL_NAMESPACE. Asked { type: 'run', keys, rounds, clients }, it
// runs `clients` concurrent clients, each verifying `rounds` times, the keys taken in turn, and answers
// { type: 'ran', codes } (how many of each outcome) and the verifier's store errors. Keys arrive over IPC
// only and are never printed.
import { Cluster, Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';

const env = process.env;
const namespace = env.TILL_NAMESPACE;
if (!namespace || typeof process.send !== 'function') {
  console.error('[identity-worker] start me with fork() and TILL_NAMESPACE set');
  process.exit(2);
}
const nodes = env.TILL_CLUSTER_NODES ? (JSON.parse(env.TILL_CLUSTER_NODES) as Array<{ host: string; port: number }>) : null;
const client =
  nodes === null
    ? new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 })
    : new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 }, clusterRetryStrategy: () => 100 });
client.on('error', () => {});
const store = new RedisStore({ client, namespace });
const till = createTill({ store, logger: silentLogger, usage: false, auditEvents: false });
let fallbacks = 0;
till.events.on((event) => {
  if (event.type === 'limits.fallback') fallbacks++;
});

const send = (message: object) => {
  if (process.connected) process.send?.(message);
};

async function run(keys: readonly string[], rounds: number, clients: number): Promise<Record<string, number>> {
  const codes: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < rounds; i++) {
        const key = keys[next++ % keys.length]!;
        const result = await till.verify(key);
        codes[result.code] = (codes[result.code] ?? 0) + 1;
      }
    }),
  );
  return codes;
}

process.on('message', async (message: { type?: string; req?: number; keys?: string[]; rounds?: number; clients?: number } | null | undefined) => {
  if (message?.type === 'run') {
    const codes = await run(message.keys ?? [], message.rounds ?? 1, message.clients ?? 1);
    send({ type: 'ran', req: message.req, codes, storeErrors: till.verifier.stats.storeErrors, fallbacks });
  } else if (message?.type === 'close') {
    await till.close().catch(() => {});
    await store.close().catch(() => {});
    client.disconnect();
    process.exit(0);
  }
});

process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), Number(env.TILL_WORKER_MAX_LIFETIME ?? 120_000)).unref();

await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
send({ type: 'ready', pid: process.pid });
