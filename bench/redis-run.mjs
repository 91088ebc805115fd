// What the benchmarks that use the machine's Redis share: finding it, and a bounded run that always
// stops its servers and deletes its keys.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, redisAnswers } from '@till/testkit/redis-tools';

/** The Redis at REDIS_URL (default 127.0.0.1:6379), which must be on this machine and answer. */
export async function redisUrlOrFail(bench) {
  const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  const { hostname, host } = new URL(url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) throw new Error(`[bench] ${bench} runs against a Redis on this machine only, not ${hostname}`);
  if (!(await redisAnswers(url))) throw new Error(`[bench] no Redis answers at ${host}: start one (redis-server) or set REDIS_URL`);
  return { url, host };
}

/**
 * The Redis of a `bench:<name>` run: its address (see redisUrlOrFail), a key prefix of the run's own,
 * an admin client that cleans it up (see boundedRun), and the server's version for the results.
 */
export async function benchRedis(name) {
  const redis = await redisUrlOrFail(`bench:${name}`);
  const namespace = `till-bench:${name}:${randomBytes(6).toString('hex')}:`;
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  admin.on('error', () => {});
  const version = /redis_version:(\S+)/.exec(String(await admin.info('server')))?.[1] ?? '?';
  return { redis, namespace, admin, version };
}

async function keysUnder(admin, namespace) {
  let n = 0;
  for await (const batch of admin.scanStream({ match: `${namespace}*`, count: 500 })) n += batch.length;
  return n;
}

/**
 * A run bounded in time: `cleanup()` (once, however often called) runs `stop`, then deletes the keys
 * under `namespace` and closes `admin`, resolving to how many keys it found and left; after `seconds`
 * the run is stopped that way and the process exits with code 1. Clear `deadline` when done.
 */
export function boundedRun({ bench, envName, seconds, admin, namespace, stop }) {
  let cleaned;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await stop();
      const found = await keysUnder(admin, namespace).catch(() => null);
      await deleteNamespace(admin, namespace).catch(() => {});
      const left = await keysUnder(admin, namespace).catch(() => null);
      admin.disconnect();
      return { found, left };
    })());
  const deadline = setTimeout(() => {
    console.error(`[bench] ${bench} did not finish within ${seconds} s (${envName}): stopping`);
    cleanup().finally(() => process.exit(1));
  }, seconds * 1000);
  deadline.unref();
  return { cleanup, deadline };
}

/**
 * A benchmark server's Till on the machine's Redis, in the run's namespace, with its defaults; what
 * closes it goes onto `closers`.
 */
export function tillOnRedis(redisUrl, namespace, closers) {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const store = new RedisStore({ client, namespace });
  const till = createTill({ store, logger: silentLogger });
  closers.push(async () => {
    await till.close();
    await store.close();
    client.disconnect();
  });
  return till;
}
