// One serving process for test/identity-exactness.test.ts (started with child_process.fork): an Express 5
// server on 127.0.0.1, port 0, whose GET / is apiKeyAuth() alone, on the BUILT packages (@till/core,
// @till/core/redis and @till/express from dist), on a single Redis (REDIS_URL) or a Redis Cluster
// (TILL_CLUSTER_NODES, JSON [{ host, port }]), shared with every other worker under TILL_NAMESPACE. An
// admitted request answers 200 with { worker, credits } (credits left after its charge). Over IPC it sends
// { type: 'ready', port } once listening, and answers { type: 'stats' } with what could break exactness
// without showing in a response (rate limits that fell back to per-process counting, store errors).
// Keys never pass through here except in request headers, and are never printed.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Cluster, Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';

const env = process.env;
const index = Number(env.TILL_WORKER_INDEX ?? 0);
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

const app = express();
app.disable('x-powered-by');
app.get('/', apiKeyAuth({ till, bruteForce: false }), (req: Request, res: Response) => res.json({ worker: index, credits: req.apiKeyUsage?.credits ?? null }));
// Anything thrown gets a 500 with a code the test cannot mistake for an admission or a refusal.
app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
  res.status(500).json({ code: 'WORKER_ERROR', message: error instanceof Error ? error.message : String(error) });
});
const server = createServer({ keepAliveTimeout: 30_000 }, app);

const send = (message: object) => {
  if (process.connected) process.send?.(message);
};

process.on('message', async (message: { type?: string; req?: number } | null | undefined) => {
  if (message?.type === 'stats') send({ type: 'stats', req: message.req, fallbacks, storeErrors: till.verifier.stats.storeErrors });
  else if (message?.type === 'close') {
    server.closeAllConnections?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await till.close().catch(() => {});
    await store.close().catch(() => {});
    client.disconnect();
    process.exit(0);
  }
});

// Never outlive the parent, nor run unbounded.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), Number(env.TILL_WORKER_MAX_LIFETIME ?? 120_000)).unref();

await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
send({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
