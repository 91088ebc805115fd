// An identity's limit and credits are exact across processes: 4 worker processes (the testkit's
// identity-worker, on the BUILT packages) x 50 concurrent clients verify 10 keys of one identity, far
// more often than the identity allows. On a single Redis each charge (key and identity together) is one
// script; on the test Redis Cluster the identity is reserved first and refunded when the key refuses.
// Either way exactly the identity's limit is admitted, and its credits never go below 0. Key ids only in
// any output: never a full key.
import { fork, type ChildProcess } from 'node:child_process';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { processScript } from '@till/testkit/process-script';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { startCluster, type RunningCluster } from '@till/testkit/redis-cluster';

const WORKER = processScript('identity-worker');
const WORKERS = 4;
const CLIENTS = 50;
const ROUNDS = 8;
const TOTAL = WORKERS * CLIENTS * ROUNDS;
const KEYS = 10;
const LIMIT = 1_000;
const CREDITS = 700;

interface Worker {
  readonly child: ChildProcess;
}

interface Ran {
  readonly codes: Record<string, number>;
  readonly storeErrors: number;
  readonly fallbacks: number;
}

function startWorker(env: NodeJS.ProcessEnv, started: ChildProcess[]): Promise<Worker> {
  const child = fork(WORKER, [], { env, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  started.push(child);
  return new Promise<Worker>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('[identity] worker not ready within 20 s')), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`[identity] worker exited before it was ready (${signal ?? code})`));
    });
    child.on('message', (message: { type?: string }) => {
      if (message?.type !== 'ready') return;
      clearTimeout(timer);
      resolve({ child });
    });
  });
}

async function stopWorkers(children: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      if (child.connected) child.send({ type: 'close' });
      else child.kill('SIGKILL');
      const timer = setTimeout(() => child.kill('SIGKILL'), 1_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** Every worker runs CLIENTS clients at once over `keys`; the outcomes of all of them, summed. */
async function hammer(workers: readonly Worker[], keys: readonly string[]): Promise<Ran> {
  const replies = await Promise.all(
    workers.map(
      (w) =>
        new Promise<Ran>((resolve, reject) => {
          const req = Math.random();
          const timer = setTimeout(() => reject(new Error('[identity] a worker did not finish within 60 s')), 60_000);
          const onMessage = (message: Ran & { type?: string; req?: number }) => {
            if (message?.type !== 'ran' || message.req !== req) return;
            clearTimeout(timer);
            w.child.off('message', onMessage);
            resolve(message);
          };
          w.child.on('message', onMessage);
          w.child.send({ type: 'run', req, keys, rounds: ROUNDS, clients: CLIENTS });
        }),
    ),
  );
  const codes: Record<string, number> = {};
  for (const r of replies) for (const [code, n] of Object.entries(r.codes)) codes[code] = (codes[code] ?? 0) + n;
  return { codes, storeErrors: replies.reduce((a, r) => a + r.storeErrors, 0), fallbacks: replies.reduce((a, r) => a + r.fallbacks, 0) };
}

function describeExactness(label: string, setup: () => Promise<{ store: () => RedisStore; env: NodeJS.ProcessEnv; cleanup: () => Promise<void> }>) {
  describe(`an identity's limit and credits are exact across ${WORKERS} processes x ${CLIENTS} clients on ${label}`, () => {
    const children: ChildProcess[] = [];
    let workers: Worker[] = [];
    let till: Till;
    let cleanup: (() => Promise<void>) | undefined;

    afterAll(async () => {
      await stopWorkers(children);
      await till?.close();
      await cleanup?.();
    });

    it(`starts ${WORKERS} workers`, async () => {
      const made = await setup();
      cleanup = made.cleanup;
      till = createTill({ store: made.store(), logger: silentLogger, usage: false, auditEvents: false, closeStore: true });
      workers = await Promise.all(Array.from({ length: WORKERS }, () => startWorker(made.env, children)));
      expect(new Set(workers.map((w) => w.child.pid)).size).toBe(WORKERS);
    }, 60_000);

    it(`admits exactly ${LIMIT} of ${TOTAL} requests over ${KEYS} keys of an identity limited to ${LIMIT} per hour`, async () => {
      const identity = await till.identities.create({ name: 'exact limit', limits: [{ name: 'per-hour', limit: LIMIT, window: '1h' }] });
      const keys: string[] = [];
      for (let i = 0; i < KEYS; i++) keys.push((await till.keys.create({ name: `key ${i}`, scopes: [], identityId: identity.id })).key);
      const ran = await hammer(workers, keys);
      console.log(`[identity] ${label}: limit ${LIMIT}/h over ${KEYS} keys: ${JSON.stringify(ran.codes)}`);
      expect(ran.codes).toEqual({ VALID: LIMIT, RATE_LIMITED: TOTAL - LIMIT });
      expect(ran.storeErrors).toBe(0);
      expect(ran.fallbacks).toBe(0);
    }, 90_000);

    it(`admits exactly ${CREDITS} requests on an identity with ${CREDITS} credits, none refused by a key's own limit among them, and leaves it at 0`, async () => {
      const identity = await till.identities.create({ name: 'exact credits', credits: { remaining: CREDITS } });
      const keys: string[] = [];
      // Each key's own limit refuses some requests the identity would admit: those must not spend its credits.
      for (let i = 0; i < KEYS; i++)
        keys.push((await till.keys.create({ name: `key ${i}`, scopes: [], identityId: identity.id, limits: [{ name: 'own', limit: 60, window: '1h' }] })).key);
      const ran = await hammer(workers, keys);
      console.log(`[identity] ${label}: ${CREDITS} credits over ${KEYS} keys of 60/h each: ${JSON.stringify(ran.codes)}`);
      // At most 10 keys x 60 admitted by the keys' own limits, all within the identity's 700 credits (on
      // Cluster a reservation held while its key refused may turn a request away for a moment: fewer, never more).
      const first = ran.codes.VALID ?? 0;
      expect(first).toBeLessThanOrEqual(KEYS * 60);
      expect(first).toBeGreaterThan(0);
      expect(ran.storeErrors).toBe(0);
      // A request the key refused spent none of the identity's credits: exactly the rest is left.
      const more: string[] = [];
      for (let i = 0; i < KEYS; i++) more.push((await till.keys.create({ name: `more ${i}`, scopes: [], identityId: identity.id })).key);
      const rest = await hammer(workers, more);
      console.log(`[identity] ${label}: the rest of the credits: ${JSON.stringify(rest.codes)}`);
      expect(rest.codes).toEqual({ VALID: CREDITS - first, USAGE_EXCEEDED: TOTAL - (CREDITS - first) });
      const last = await till.verify(more[0]!);
      expect(last.code).toBe('USAGE_EXCEEDED');
      if (!last.valid) expect(last.usage?.credits).toBe(0);
    }, 90_000);
  });
}

describeExactness('a single Redis', async () => {
  const namespace = uniqueNamespace();
  const admin = newClient();
  return {
    store: () => new RedisStore({ client: newClient(), namespace, closeClient: true }),
    env: { ...process.env, REDIS_URL: redisUrl(), TILL_NAMESPACE: namespace },
    cleanup: async () => {
      await deleteNamespace(admin, namespace);
      admin.disconnect();
    },
  };
});

describeExactness('the test Redis Cluster', async () => {
  const cluster: RunningCluster = await startCluster();
  const namespace = uniqueNamespace();
  const clients: Cluster[] = [];
  return {
    store: () => {
      const client = new Cluster([...cluster.nodes], { redisOptions: { maxRetriesPerRequest: 1 }, clusterRetryStrategy: () => 100 });
      client.on('error', () => {});
      clients.push(client);
      return new RedisStore({ client, namespace });
    },
    env: { ...process.env, TILL_NAMESPACE: namespace, TILL_CLUSTER_NODES: JSON.stringify(cluster.nodes) },
    cleanup: async () => {
      for (const c of clients) c.disconnect();
      await cluster.stop();
    },
  };
});
