// One serving process of a drill (test/drills), started with child_process.fork by drill-apps.ts: an Express 5
// or Koa 3 server on 127.0.0.1 (port 0) verifying keys with apiKeyAuth on a RedisStore, on the BUILT packages
// (vitest's aliases do not reach child processes). Configured by one JSON environment variable,
// TILL_DRILL_CONFIG (see DrillAppConfig in drill-apps.ts). Routes:
// - GET /        apiKeyAuth({ till, bruteForce: config.bruteForce }): 200 { id } for an admitted key;
// - GET /strict  apiKeyAuth({ till }) with the default brute-force protection (30 failures per IP);
// - GET /slow    as `/`, but the admitted request is held until the parent sends { type: 'release' } (or for
//                10 s): requests in flight at a shutdown.
// Anything thrown reaches a last error handler that counts it and answers 500 with code APP_ERROR, so a
// 500 is always Till's (or the framework's) failure, never mistaken for a refusal.
// Over IPC: { type: 'ready', port, pid } once listening; requests { type, req, ... } get { type: 'reply',
// req, ok, ... }. Keys may arrive over IPC (request headers carry them too) and are never printed: replies
// carry key ids, and a created key's full value goes only to the parent.
// On SIGTERM (or a 'close' request) it shuts down gracefully, as a production app would: stop accepting
// connections and finish the requests in flight, then till.close() (which writes the pending usage counts
// and audit events), then quit the Redis connection; it reports { type: 'shutdown', ms } and exits 0.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { Redis } from 'ioredis';
import { createTill, silentLogger, type AuditQuery, type CreateKeyInput, type KeyInfo, type KeyPatch } from '@till/core';
import { RedisStore } from '@till/core/redis';
import type { DrillAppConfig } from '../drill-apps.js';
import { answerRequests, send } from './worker-ipc.js';

const config = JSON.parse(process.env.TILL_DRILL_CONFIG ?? 'null') as DrillAppConfig | null;
if (!config || typeof process.send !== 'function') {
  console.error('[drill-app] start me with fork() and TILL_DRILL_CONFIG set');
  process.exit(2);
}

const client = new Redis(config.redisUrl, {
  maxRetriesPerRequest: 1,
  connectionName: config.name,
  // Reconnects every retryDelay ms for as long as Redis is away: the drill wants recovery without a restart.
  retryStrategy: () => config.retryDelay ?? 100,
});
client.on('error', () => {});
const store = new RedisStore({ client, namespace: config.namespace, ...(config.commandTimeout !== undefined && { commandTimeout: config.commandTimeout }) });
const till = createTill({
  store,
  logger: silentLogger,
  ...(config.cache !== undefined && { cache: config.cache }),
  ...(config.usage !== undefined && { usage: config.usage }),
  ...(config.auditEvents !== undefined && { auditEvents: config.auditEvents }),
});

/** What the parent cannot see in responses: errors thrown, invalidations heard, events. */
const seen = {
  appErrors: 0,
  lastAppError: null as string | null,
  heard: [] as string[],
  flushes: 0,
  events: {} as Record<string, number>,
  inflight: 0,
  closing: false,
};
let held: Array<() => void> = [];
const hold = async () => {
  seen.inflight++;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    held.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  seen.inflight--;
};
till.events.on((event) => {
  seen.events[event.type] = (seen.events[event.type] ?? 0) + 1;
});
// Added after the verifier's own listener (the verifier subscribes on its first verification, below).
till.verify('');
store.onInvalidate((id) => {
  if (id === null) seen.flushes++;
  else if (seen.heard.length < 1000) seen.heard.push(id);
});

const mainAuth = { till, ...(config.bruteForce !== undefined && { bruteForce: config.bruteForce }) };
let handler: (req: IncomingMessage, res: ServerResponse) => void;
if (config.framework === 'koa') {
  const { default: Koa } = await import('koa');
  const { apiKeyAuth } = await import('@till/koa');
  const main = apiKeyAuth(mainAuth);
  const strict = apiKeyAuth({ till });
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      seen.appErrors++;
      seen.lastAppError = error instanceof Error ? error.message.slice(0, 200) : String(error).slice(0, 200);
      ctx.status = 500;
      ctx.body = { code: 'APP_ERROR' };
    }
  });
  app.use((ctx, next) => (ctx.path === '/strict' ? strict(ctx, next) : main(ctx, next)));
  app.use(async (ctx) => {
    if (ctx.path === '/slow') await hold();
    ctx.body = { id: ctx.state.apiKey!.id };
  });
  handler = app.callback();
} else {
  const { default: express } = await import('express');
  const { apiKeyAuth } = await import('@till/express');
  const app = express();
  app.disable('x-powered-by');
  const admitted = (req: Request, res: Response) => res.json({ id: req.apiKey!.id });
  const main = apiKeyAuth(mainAuth);
  app.get('/', main, admitted);
  app.get('/slow', main, async (req, res) => {
    await hold();
    admitted(req, res);
  });
  app.get('/strict', apiKeyAuth({ till }), admitted);
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    seen.appErrors++;
    seen.lastAppError = error instanceof Error ? error.message.slice(0, 200) : String(error).slice(0, 200);
    res.status(500).json({ code: 'APP_ERROR' });
  });
  handler = app;
}

let closing = false;
const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  // While shutting down, each response closes its connection: see shutdown().
  if (closing) res.setHeader('connection', 'close');
  handler(req, res);
});

let shuttingDown: Promise<void> | null = null;
/** The graceful shutdown of a production app: connections, then Till (flushes usage and audit), then Redis. */
function shutdown() {
  shuttingDown ??= (async () => {
    const started = Date.now();
    closing = true;
    seen.closing = true;
    // server.close() stops accepting new connections, but a keep-alive connection stays open and keeps
    // being served until the client closes it or keepAliveTimeout passes (Node's behaviour, not Till's):
    // responses now say `Connection: close`, and connections that fall idle are closed as they do. The
    // callback runs once the last request in flight has been answered: only then is Till closed, so
    // every admitted request is counted before the last write.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const idle = setInterval(() => server.closeIdleConnections(), 10);
    await closed;
    clearInterval(idle);
    await till.close();
    await store.close();
    await client.quit().catch(() => client.disconnect());
    send({ type: 'shutdown', ms: Date.now() - started });
    process.exit(0);
  })();
  return shuttingDown;
}
process.on('SIGTERM', () => void shutdown());

const short = (value: KeyInfo) => ({
  id: value.id,
  name: value.name,
  scopes: value.scopes,
  revokedAt: value.revokedAt,
  revokedReason: value.revokedReason,
  disabled: value.disabled,
  version: value.version,
});

const handlers = {
  /** Heap and RSS after a full collection (the process runs with --expose-gc). */
  memory() {
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    const m = process.memoryUsage();
    const cpu = process.cpuUsage();
    return { heapUsed: m.heapUsed, rss: m.rss, external: m.external, cpuMs: (cpu.user + cpu.system) / 1000 };
  },
  stats() {
    return { ...seen, verifier: { ...till.verifier.stats }, redis: client.status };
  },
  async create({ input }: { input: CreateKeyInput }) {
    const created = await till.keys.create(input);
    return { id: created.record.id, key: created.key };
  },
  async revoke({ id, reason }: { id: string; reason?: string }) {
    return { record: short(await till.keys.revoke(id, reason === undefined ? {} : { reason })) };
  },
  async update({ id, patch }: { id: string; patch: KeyPatch }) {
    return { record: short(await till.keys.update(id, patch)) };
  },
  async disable({ id }: { id: string }) {
    return { record: short(await till.keys.disable(id)) };
  },
  async list() {
    const keys: Array<ReturnType<typeof short>> = [];
    let cursor: string | undefined;
    do {
      const page = await till.keys.list({ limit: 100, ...(cursor !== undefined && { cursor }) });
      keys.push(...page.keys.map(short));
      cursor = page.cursor;
    } while (cursor !== undefined);
    return { keys };
  },
  async usage({ id }: { id: string }) {
    return { usage: await till.keys.usage(id, { days: 2 }) };
  },
  async credits({ id }: { id: string }) {
    return { credits: await till.keys.credits(id) };
  },
  async audit({ query }: { query: AuditQuery }) {
    const entries: unknown[] = [];
    let cursor: string | undefined;
    do {
      const page = await till.keys.audit({ ...query, limit: 1000, ...(cursor !== undefined && { cursor }) });
      entries.push(
        ...page.entries.map((e) => ({ type: e.type, keyId: e.keyId, code: e.code ?? null, count: e.count ?? 1, reason: e.reason, ip: e.ip ?? null })),
      );
      cursor = page.cursor;
    } while (cursor !== undefined);
    return { entries };
  },
  /** Lets the requests held on /slow be answered. */
  release() {
    const count = held.length;
    for (const go of held) go();
    held = [];
    return { count };
  },
  close() {
    void shutdown();
    return {};
  },
};

answerRequests(handlers);

// Never outlive the parent, nor run unbounded.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), config.maxLifetime ?? 180_000).unref();

await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
send({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
