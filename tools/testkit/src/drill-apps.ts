// What the drills (test/drills) share: app processes (processes/drill-app.ts) driven over IPC, an HTTP client that
// reports status and outcome code, a persistent redis-server, and a last-resort cleanup of every process a
// drill started even when the drill fails or times out.
import { fork, type ChildProcess } from 'node:child_process';
import { type Agent, request } from 'node:http';
import { processScript } from './process-script.js';
import { startRedisServer, type RunningRedis } from './redis-server.js';
import { sleep } from './wait.js';

/** Every child a drill started; killed when this (test) process exits, whatever happened. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

export { sleep, waitFor } from './wait.js';

export interface DrillAppConfig {
  redisUrl: string;
  namespace: string;
  /** Default express. */
  framework?: 'express' | 'koa';
  /** Redis connection name (CLIENT LIST). */
  name?: string;
  /** RedisStore commandTimeout (ms); the store's default (1000) when absent. */
  commandTimeout?: number;
  /** ioredis reconnect delay (ms). Default 100. */
  retryDelay?: number;
  cache?: { ttl?: number; staleWindow?: number; negativeTtl?: number; negativeMax?: number; max?: number };
  usage?: { interval?: number } | false;
  auditEvents?: { interval?: number; maxPending?: number } | false;
  /** bruteForce of the main route (`/`); `/strict` always has the defaults. */
  bruteForce?: { threshold?: number; window?: string | number; block?: string | number; maxBlocked?: number } | false;
  /** The process exits after this long whatever happens (ms). Default 180,000. */
  maxLifetime?: number;
}

export interface AppStats {
  appErrors: number;
  lastAppError: string | null;
  heard: string[];
  flushes: number;
  events: Record<string, number>;
  /** Requests admitted on /slow and not answered yet. */
  inflight: number;
  /** The app has begun its graceful shutdown. */
  closing: boolean;
  verifier: { hits: number; misses: number; staleHits: number; storeErrors: number };
  redis: string;
}

export interface DrillApp {
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Messages of type 'shutdown' the app sent (its graceful shutdown completed). */
  readonly shutdowns: Array<{ ms: number }>;
  call<T = Record<string, unknown>>(type: string, payload?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stats(): Promise<AppStats>;
  /** Resolves with the exit code or signal once the process has exited (null if not within `timeoutMs`). */
  exited(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null>;
  /** Asks for a graceful close; kills it if it has not exited within 3 s. Safe to call twice. */
  stop(): Promise<void>;
}

/** Forks one app process and resolves once it listens. */
export function startApp(config: DrillAppConfig): Promise<DrillApp> {
  const child = fork(processScript('drill-app'), [], {
    env: { ...process.env, TILL_DRILL_CONFIG: JSON.stringify(config) },
    // Not vitest's flags: a plain node with a collectable heap (memory samples after a full GC).
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  const shutdowns: Array<{ ms: number }> = [];
  let next = 1;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('drill app did not start within 10 s'));
    }, 10_000);
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`drill app exited before it was ready (code ${code}, signal ${signal})`));
      for (const p of pending.values()) p.reject(new Error(`drill app exited (code ${code}, signal ${signal})`));
      pending.clear();
    });
    child.on('message', (message: { type?: string; req?: number; ok?: boolean; error?: string; code?: string | null; port?: number; ms?: number }) => {
      if (message?.type === 'ready') {
        clearTimeout(timer);
        const app: DrillApp = {
          port: message.port!,
          pid: child.pid!,
          child,
          shutdowns,
          call<T>(type: string, payload: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<T> {
            const req = next++;
            return new Promise<T>((res, rej) => {
              const t = setTimeout(() => {
                pending.delete(req);
                rej(new Error(`drill app ${type}: no answer within ${timeoutMs} ms`));
              }, timeoutMs);
              pending.set(req, {
                resolve: (v) => {
                  clearTimeout(t);
                  res(v as T);
                },
                reject: (e) => {
                  clearTimeout(t);
                  rej(e);
                },
              });
              child.send({ ...payload, type, req });
            });
          },
          stats: () => app.call<AppStats>('stats'),
          exited: (timeoutMs) => Promise.race([exit, sleep(timeoutMs).then(() => null)]),
          async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return;
            if (child.connected) child.send({ type: 'close', req: 0 });
            if ((await app.exited(3000)) === null) {
              child.kill('SIGCONT');
              child.kill('SIGKILL');
              await exit;
            }
          },
        };
        resolve(app);
      } else if (message?.type === 'shutdown') {
        shutdowns.push({ ms: message.ms! });
      } else if (message?.type === 'reply') {
        const p = pending.get(message.req!);
        if (p === undefined) return;
        pending.delete(message.req!);
        if (message.ok) p.resolve(message as Record<string, unknown>);
        else p.reject(Object.assign(new Error(`drill app: ${message.error}`), { code: message.code }));
      }
    });
  });
}

export interface Answer {
  status: number;
  /** The problem+json `code` (or APP_ERROR), null for a 200 or a body that is not JSON. */
  code: string | null;
  retryAfter: string | null;
  /** The id an admitted request answered with. */
  id: string | null;
  /** Milliseconds from sending to the end of the response. */
  ms: number;
  /** Set instead of a status when the request failed below HTTP (status 0). */
  error?: string;
}

/**
 * GET `path` on 127.0.0.1:`port` with the key as a bearer token; never rejects: a connection failure is
 * status 0 with `error`. `timeoutMs` bounds the whole exchange (a hang is an answer too: status 0).
 */
export function get(agent: Agent, port: number, key: string | null, options: { path?: string; timeoutMs?: number } = {}): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request(
      { agent, host: '127.0.0.1', port, path: options.path ?? '/', method: 'GET', headers: key === null ? {} : { authorization: `Bearer ${key}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          let body: { code?: string; id?: string } | null = null;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string; id?: string };
          } catch {
            body = null;
          }
          const retry = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            code: body?.code ?? null,
            id: body?.id ?? null,
            retryAfter: typeof retry === 'string' ? retry : null,
            ms: performance.now() - started,
          });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          resolve({ status: 0, code: null, id: null, retryAfter: null, ms: performance.now() - started, error: e.message });
        });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${options.timeoutMs ?? 10_000} ms`)), options.timeoutMs ?? 10_000);
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: 0, code: null, id: null, retryAfter: null, ms: performance.now() - started, error: e.message });
    });
    req.end();
  });
}

/** A redis-server writing every command to an append-only file in `dir` (fsync always), so a restart keeps the data. */
export function startPersistentRedis(port: number, dir: string): Promise<RunningRedis> {
  return startRedisServer(port, ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]).then((redis) => {
    children.add(redis.process);
    return redis;
  });
}

/** A throwaway redis-server (no persistence), remembered for the last-resort cleanup. */
export function startOwnRedis(port: number): Promise<RunningRedis> {
  return startRedisServer(port).then((redis) => {
    children.add(redis.process);
    return redis;
  });
}

/** Counts of `values` by label, as `label=n` joined by spaces, labels sorted. */
export function tally(values: Iterable<string | number>): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(String(v), (counts.get(String(v)) ?? 0) + 1);
  return (
    [...counts]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || 'none'
  );
}
