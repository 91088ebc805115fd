// One verifying process of a deployment, for packages/core/test/revocation.test.ts and bench/revocation.mjs (started by
// revocation-cluster.ts with child_process.fork). It loads the BUILT packages (@till/core and
// @till/core/redis from dist: vitest's aliases do not reach child processes), shares one Redis through a
// RedisStore, and verifies keys when asked over IPC. Asked to watch a key, it reports the first moment it
// refuses the key with the expected code, found by whichever comes first:
// - a store.onInvalidate listener added AFTER the verifier's own (so it runs right after the eviction),
//   which verifies the key at once;
// - a 1 ms setInterval loop that verifies every watched key.
// Times are CLOCK_MONOTONIC in ms (process.hrtime), one clock for every process of the machine.
// Full keys arrive over IPC and are never printed: messages carry key ids only.
import { Redis } from 'ioredis';
import { createTill, silentLogger, type VerifyOptions, type VerifyResult } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { answerRequests, send } from './worker-ipc.js';

const env = process.env;
const name = env.TILL_WORKER_NAME ?? `till-worker-${process.pid}`;
const namespace = env.TILL_NAMESPACE;
if (!namespace || typeof process.send !== 'function') {
  console.error('[revocation-worker] start me with fork() and TILL_NAMESPACE set');
  process.exit(2);
}
const reconnectDelay = Number(env.TILL_RECONNECT_DELAY ?? 50);
const cacheTtl = Number(env.TILL_CACHE_TTL ?? 60_000);
const pollInterval = Number(env.TILL_POLL_INTERVAL ?? 1);
const now = () => Number(process.hrtime.bigint()) / 1e6;

// The subscriber the store makes is client.duplicate(), so it carries the same connection name: the
// parent finds this worker's subscription in CLIENT LIST by that name.
const client = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: 1,
  connectionName: name,
  retryStrategy: () => reconnectDelay,
});
client.on('error', () => {});
const store = new RedisStore({ client, namespace });
const till = createTill({ store, cache: { ttl: cacheTtl, negativeTtl: cacheTtl }, logger: silentLogger });

/** A key whose refusal is awaited: the first answer with code `expect`, and whether a verification is in flight. */
type Watch = { key: string; expect: string; options: VerifyOptions | undefined; pending: boolean };
type Via = 'listener' | 'poll';

/** id -> full key (never printed). */
const keys = new Map<string, string>();
/** id -> { key, expect, options, pending } for keys whose refusal is awaited. */
const watches = new Map<string, Watch>();
/** What the invalidation channel told this process: ids heard, and how many "drop everything" (null). */
const heard = { ids: new Map<string, number>(), flushes: 0, lastFlushAt: null as number | null };

const isPromise = <T>(value: T | Promise<T>): value is Promise<T> => typeof (value as { then?: unknown } | undefined)?.then === 'function';

function settle(id: string, watch: Watch, result: VerifyResult, via: Via) {
  if (watches.get(id) !== watch || result.code !== watch.expect) return;
  const at = now();
  watches.delete(id);
  if (watches.size === 0) stopPolling();
  send({ type: 'refused', id, code: result.code, at, via });
}

function check(id: string, via: Via) {
  const watch = watches.get(id);
  if (watch === undefined || watch.pending) return;
  const result = till.verify(watch.key, watch.options);
  if (!isPromise(result)) return settle(id, watch, result, via);
  watch.pending = true;
  result.then((r) => {
    watch.pending = false;
    settle(id, watch, r, via);
  });
}

// The verifier must be subscribed before the listener below, so that listeners, which run in the order
// they subscribed, find the id already evicted. It subscribes when created, or (in later versions) on
// its first verification: one throwaway verification covers both.
till.verify('');
store.onInvalidate((id) => {
  if (id === null) {
    heard.flushes++;
    heard.lastFlushAt = now();
    for (const watched of watches.keys()) check(watched, 'listener');
  } else {
    heard.ids.set(id, (heard.ids.get(id) ?? 0) + 1);
    check(id, 'listener');
  }
});

let poller: NodeJS.Timeout | undefined;
function startPolling() {
  poller ??= setInterval(() => {
    for (const id of watches.keys()) check(id, 'poll');
  }, pollInterval);
}
function stopPolling() {
  if (poller !== undefined) clearInterval(poller);
  poller = undefined;
}

// Baseline for the benchmark: a plain SUBSCRIBE on its own connection, answering each PUBLISH.
let ping: Redis | undefined;
if (env.TILL_PING_CHANNEL) {
  ping = client.duplicate({ connectionName: `${name}-ping` });
  ping.on('error', () => {});
  ping.on('message', (channel, message) => {
    const at = now();
    if (channel === env.TILL_PING_CHANNEL) send({ type: 'ping', seq: Number(message), at });
  });
  await ping.subscribe(env.TILL_PING_CHANNEL);
}

async function close() {
  stopPolling();
  await till.close();
  await store.close();
  ping?.disconnect();
  client.disconnect();
}

const handlers = {
  keys({ keys: list }: { keys: ReadonlyArray<{ id: string; key: string }> }) {
    for (const { id, key } of list) keys.set(id, key);
    return { count: keys.size };
  },
  /** Verifies each id once; `cached` tells whether the answer came from memory (synchronous). */
  async verify({ ids, options }: { ids: readonly string[]; options?: VerifyOptions }) {
    const results: Record<string, { code: string; cached: boolean }> = {};
    for (const id of ids) {
      const result = till.verify(keys.get(id)!, options);
      const cached = !isPromise(result);
      results[id] = { code: (cached ? result : await result).code, cached };
    }
    return { results };
  },
  watch({ id, expect, options }: { id: string; expect: string; options?: VerifyOptions }) {
    if (!keys.has(id)) throw new Error(`unknown key id ${id}`);
    watches.set(id, { key: keys.get(id)!, expect, options, pending: false });
    startPolling();
    return {};
  },
  unwatch({ id }: { id: string }) {
    watches.delete(id);
    if (watches.size === 0) stopPolling();
    return {};
  },
  heard() {
    return { ids: Object.fromEntries(heard.ids), flushes: heard.flushes, lastFlushAt: heard.lastFlushAt };
  },
  stats() {
    return { ...till.verifier.stats };
  },
  time() {
    return { at: now() };
  },
  async close() {
    await close();
    setImmediate(() => process.exit(0));
    return {};
  },
};

answerRequests(handlers);

// Never outlive the parent, nor run unbounded.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), Number(env.TILL_WORKER_MAX_LIFETIME ?? 300_000)).unref();

await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
send({ type: 'ready', name, pid: process.pid });
