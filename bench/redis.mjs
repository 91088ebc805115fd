// The Redis of the benchmarks: the machine's own (REDIS_URL, 127.0.0.1 only) in a key namespace of the
// run's own, or a throwaway redis-server; a run bounded in time that always stops and cleans up.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, redisAnswers } from '@till/testkit/redis-tools';

/** The per-key limit of the benchmarks that charge one: never reached during a run. */
export const NEVER_REACHED = 1_000_000_000;

const LOCAL = ['127.0.0.1', 'localhost', '[::1]'];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}

/** A redis-server of the run's own on a free loopback port, without persistence: { url, stop }. */
export async function ownRedis() {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
    throw new Error('[bench] redis-server not found: install Redis 7 (Debian: apt-get install redis-server) or set REDIS_URL');
  }
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 200 && !(await redisAnswers(url)); i++) await new Promise((r) => setTimeout(r, 25));
  return { url, host: `127.0.0.1:${port}`, own: true, stop: async () => void child.kill('SIGTERM') };
}

/**
 * The Redis of a benchmark: REDIS_URL (on this machine only) or 127.0.0.1:6379, else (with `orOwn`) a
 * throwaway one; a key namespace of the run's own, an admin client, and the server's version.
 */
export async function benchRedis(name, { orOwn = false } = {}) {
  const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  const { hostname, host } = new URL(url);
  if (!LOCAL.includes(hostname)) throw new Error(`[bench] ${name} runs against a Redis on this machine only, not ${hostname}`);
  let redis = { url, host, own: false, stop: async () => {} };
  if (!(await redisAnswers(url))) {
    if (!orOwn) throw new Error(`[bench] no Redis answers at ${host}: start one (redis-server) or set REDIS_URL`);
    redis = await ownRedis();
  }
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
 * A run bounded in time: `cleanup()` (once, however often called) runs `stop`, deletes the keys under
 * `namespace`, closes `admin` and stops a Redis of the run's own, resolving to how many keys it found and
 * left; after `seconds` the run is stopped that way and the process exits with 1. Clear `deadline` when done.
 */
export function boundedRun({ name, envName, seconds, redis, admin, namespace, stop }) {
  let cleaned;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await stop();
      const found = await keysUnder(admin, namespace).catch(() => null);
      await deleteNamespace(admin, namespace).catch(() => {});
      const left = await keysUnder(admin, namespace).catch(() => null);
      admin.disconnect();
      await redis.stop();
      return { found, left };
    })());
  const deadline = setTimeout(() => {
    console.error(`[bench] ${name} did not finish within ${seconds} s (${envName}): stopping`);
    cleanup().finally(() => process.exit(1));
  }, seconds * 1000);
  deadline.unref();
  return { cleanup, deadline };
}

/** A Till on the machine's Redis, in the run's namespace, with its defaults; what closes it goes onto `closers`. */
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
