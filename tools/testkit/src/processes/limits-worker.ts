// One serving process for test/limits-exactness.test.ts (started with child_process.fork): an Express 5
// server on 127.0.0.1, port 0, that verifies keys with the BUILT packages (@till/core, @till/core/redis
// and @till/express from dist: vitest's aliases do not reach child processes) through a RedisStore
// shared with every other worker. Routes:
// - GET /own:   apiKeyAuth() alone: the key's own limits and credits;
// - GET /tight: apiKeyAuth({ limits: [tight] }): the same plus a middleware limit `tight` of
//   TILL_TIGHT_LIMIT per hour, counted per key in the same atomic step.
// An admitted request answers 200 with { worker, credits } (credits left after its charge, from
// req.apiKeyUsage). Over IPC it sends { type: 'ready', port } once listening, and answers { type:
// 'stats' } with what could break exactness without showing in a response: rate limits that fell back
// to per-process counting (limits.fallback events) and store errors. Keys never pass through here
// except in request headers, and are never printed.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';

const env = process.env;
const index = Number(env.TILL_WORKER_INDEX ?? 0);
const namespace = env.TILL_NAMESPACE;
if (!namespace || typeof process.send !== 'function') {
  console.error('[limits-worker] start me with fork() and TILL_NAMESPACE set');
  process.exit(2);
}
const tight = Number(env.TILL_TIGHT_LIMIT ?? 40);

const client = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1, connectionName: `till-limits-${process.pid}-${index}` });
client.on('error', () => {});
const store = new RedisStore({ client, namespace });
const till = createTill({ store, logger: silentLogger });
const events = { fallback: 0, restored: 0 };
till.events.on((event) => {
  if (event.type === 'limits.fallback') events.fallback++;
  if (event.type === 'limits.restored') events.restored++;
});

const app = express();
app.disable('x-powered-by');
const admitted = (req: Request, res: Response) => res.json({ worker: index, credits: req.apiKeyUsage?.credits ?? null });
app.get('/own', apiKeyAuth({ till, bruteForce: false }), admitted);
app.get('/tight', apiKeyAuth({ till, bruteForce: false, limits: [{ name: 'tight', limit: tight, window: '1h' }] }), admitted);
// Anything thrown gets a 500 with a code the test cannot mistake for an admission or a refusal.
app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
  res.status(500).json({ code: 'WORKER_ERROR', message: error instanceof Error ? error.message : String(error) });
});

const server = createServer({ keepAliveTimeout: 30_000 }, app);
const send = (message: object) => {
  if (process.connected) process.send?.(message);
};

async function close() {
  server.closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await till.close();
  await store.close();
  client.disconnect();
}

process.on('message', async (message: { type?: string; req?: number } | null | undefined) => {
  if (message?.type === 'stats') send({ type: 'stats', req: message.req, events: { ...events }, verifier: { ...till.verifier.stats } });
  else if (message?.type === 'flush-usage') {
    // Usage counts are written in batches (every 10 s by default): the test asks for the batch now.
    await till.usage?.flush();
    send({ type: 'flushed', req: message.req });
  } else if (message?.type === 'close') {
    await close().catch(() => {});
    process.exit(0);
  }
});

// Never outlive the parent, nor run unbounded.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), Number(env.TILL_WORKER_MAX_LIFETIME ?? 120_000)).unref();

await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
send({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
