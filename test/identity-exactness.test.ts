// An identity's limit and credits are exact across processes: 4 Express worker processes (the testkit's
// identity-worker, on the BUILT packages) each get 50 concurrent keep-alive clients sending 10 keys of
// one identity, far more often than the identity allows. On a single Redis each charge (key and identity together) is one
// script; on the test Redis Cluster the identity is reserved first and refunded when the key refuses.
// Either way exactly the identity's limit is admitted, and its credits never go below 0. Key ids only in
// any output: never a full key.
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
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
  readonly index: number;
  readonly child: ChildProcess;
  readonly port: number;
  readonly agent: Agent;
}

interface Ran {
  readonly codes: Record<string, number>;
  /** Credits left reported by admitted requests (null: none). */
  readonly credits: Array<number | null>;
}

function startWorker(index: number, env: NodeJS.ProcessEnv, started: ChildProcess[]): Promise<Worker> {
  // execArgv [] : this process runs under vitest, whose flags must not reach plain node workers.
  const child = fork(WORKER, [], { env: { ...env, TILL_WORKER_INDEX: String(index) }, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  started.push(child);
  return new Promise<Worker>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`[identity] worker ${index} not ready within 20 s`)), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`[identity] worker ${index} exited before it was ready (${signal ?? code})`));
    });
    child.on('message', (message: { type?: string; port?: number }) => {
      if (message?.type !== 'ready') return;
      clearTimeout(timer);
      resolve({ index, child, port: message.port!, agent: new Agent({ keepAlive: true, maxSockets: CLIENTS }) });
    });
  });
}

/** GET / from one worker with `key` as a bearer token: its status and code (`OK` for a 200). Errors name the worker, never the key. */
function get(worker: Worker, key: string): Promise<{ code: string; credits: number | null }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: worker.port, path: '/', method: 'GET', agent: worker.agent, headers: { authorization: `Bearer ${key}` }, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          let body: { code?: unknown; credits?: unknown };
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
          } catch {
            return reject(new Error(`[identity] worker ${worker.index} answered ${res.statusCode} with a body that is not JSON`));
          }
          resolve({
            code: res.statusCode === 200 ? 'OK' : `${res.statusCode} ${String(body.code)}`,
            credits: typeof body.credits === 'number' ? body.credits : null,
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`[identity] a request to worker ${worker.index} took over 10 s`)));
    req.on('error', reject);
    req.end();
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

/** CLIENTS clients at every worker at once, each sending ROUNDS requests one after the other, the keys taken in turn. */
async function hammer(workers: readonly Worker[], keys: readonly string[]): Promise<Ran> {
  let next = 0;
  const replies = (
    await Promise.all(
      workers.map((w) =>
        Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            const out: Array<{ code: string; credits: number | null }> = [];
            for (let i = 0; i < ROUNDS; i++) out.push(await get(w, keys[next++ % keys.length]!));
            return out;
          }),
        ),
      ),
    )
  ).flat(2);
  const codes: Record<string, number> = {};
  for (const r of replies) codes[r.code] = (codes[r.code] ?? 0) + 1;
  return { codes, credits: replies.filter((r) => r.code === 'OK').map((r) => r.credits) };
}

/** Every worker's counters: a fallback to per-process limits or a store error would void exactness. */
function stats(workers: readonly Worker[]): Promise<Array<{ fallbacks: number; storeErrors: number }>> {
  return Promise.all(
    workers.map(
      (w) =>
        new Promise<{ fallbacks: number; storeErrors: number }>((resolve, reject) => {
          const req = Math.random();
          const timer = setTimeout(() => reject(new Error(`[identity] worker ${w.index} did not answer stats`)), 5_000);
          const onMessage = (message: { type?: string; req?: number; fallbacks: number; storeErrors: number }) => {
            if (message?.type !== 'stats' || message.req !== req) return;
            clearTimeout(timer);
            w.child.off('message', onMessage);
            resolve(message);
          };
          w.child.on('message', onMessage);
          w.child.send({ type: 'stats', req });
        }),
    ),
  );
}

function describeExactness(
  label: string,
  oneScript: boolean,
  setup: () => Promise<{ store: () => RedisStore; env: NodeJS.ProcessEnv; cleanup: () => Promise<void> }>,
) {
  describe(`an identity's limit and credits are exact across ${WORKERS} processes x ${CLIENTS} clients on ${label}`, () => {
    const children: ChildProcess[] = [];
    let workers: Worker[] = [];
    let till: Till;
    let cleanup: (() => Promise<void>) | undefined;

    afterAll(async () => {
      for (const w of workers) w.agent.destroy();
      await stopWorkers(children);
      await till?.close();
      await cleanup?.();
    });

    it(`starts ${WORKERS} workers`, async () => {
      const made = await setup();
      cleanup = made.cleanup;
      till = createTill({ store: made.store(), logger: silentLogger, usage: false, auditEvents: false, closeStore: true });
      workers = await Promise.all(Array.from({ length: WORKERS }, (_, i) => startWorker(i, made.env, children)));
      expect(new Set(workers.map((w) => w.child.pid)).size).toBe(WORKERS);
    }, 60_000);

    it(`admits exactly ${LIMIT} of ${TOTAL} requests over ${KEYS} keys of an identity limited to ${LIMIT} per hour`, async () => {
      const identity = await till.identities.create({ name: 'exact limit', limits: [{ name: 'per-hour', limit: LIMIT, window: '1h' }] });
      const keys: string[] = [];
      for (let i = 0; i < KEYS; i++) keys.push((await till.keys.create({ name: `key ${i}`, scopes: [], identityId: identity.id })).key);
      const ran = await hammer(workers, keys);
      console.log(`[identity] ${label}: limit ${LIMIT}/h over ${KEYS} keys: ${JSON.stringify(ran.codes)}`);
      expect(ran.codes).toEqual({ OK: LIMIT, '429 RATE_LIMITED': TOTAL - LIMIT });
      for (const s of await stats(workers)) expect(s).toMatchObject({ fallbacks: 0, storeErrors: 0 });
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
      const first = ran.codes.OK ?? 0;
      expect(first).toBeLessThanOrEqual(KEYS * 60);
      expect(first).toBeGreaterThan(0);
      // A request the key refused spent none of the identity's credits: exactly the rest is left.
      const more: string[] = [];
      for (let i = 0; i < KEYS; i++) more.push((await till.keys.create({ name: `more ${i}`, scopes: [], identityId: identity.id })).key);
      const rest = await hammer(workers, more);
      console.log(`[identity] ${label}: the rest of the credits: ${JSON.stringify(rest.codes)}`);
      expect(rest.codes).toEqual({ OK: CREDITS - first, '429 USAGE_EXCEEDED': TOTAL - (CREDITS - first) });
      const counts = [...ran.credits, ...rest.credits].sort((a, b) => a! - b!);
      if (oneScript) {
        // One script per charge: each admission saw its own count, down to 0.
        expect(counts).toEqual(Array.from({ length: CREDITS }, (_, i) => i));
      } else {
        // A reservation given back may let a later admission see a count an earlier one saw: never below 0.
        expect(counts[0]).toBe(0);
        expect(counts.every((c) => c !== null && c >= 0 && c < CREDITS)).toBe(true);
      }
      for (const s of await stats(workers)) expect(s).toMatchObject({ fallbacks: 0, storeErrors: 0 });
      const last = await till.verify(more[0]!);
      expect(last.code).toBe('USAGE_EXCEEDED');
      if (!last.valid) expect(last.usage?.credits).toBe(0);
    }, 90_000);
  });
}

describeExactness('a single Redis', true, async () => {
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

describeExactness('the test Redis Cluster', false, async () => {
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
