// A deployment of N real verifying processes (processes/revocation-worker.ts) sharing one Redis, driven over
// IPC. Used by packages/core/test/revocation.test.ts and bench/revocation.mjs: no vitest here, so that the
// benchmark (plain node) can load its build. One file: the messages of the IPC exchange and the cluster that
// speaks it change together.
import { fork, type ChildProcess } from 'node:child_process';
import type { Redis } from 'ioredis';
import { processScript } from './process-script.js';

export interface ClusterOptions {
  redisUrl: string;
  namespace: string;
  count?: number;
  cacheTtl?: number;
  reconnectDelay?: number;
  pingChannel?: string;
  label?: string;
  requestTimeout?: number;
}

export interface ClusterWorker {
  readonly index: number;
  readonly name: string;
  readonly pid: number | undefined;
  readonly child: ChildProcess;
}

export interface Refusal {
  /** When the worker first gave the expected answer (`now()`, CLOCK_MONOTONIC ms). */
  readonly at: number;
  /** Which path saw it first: the onInvalidate listener or the polling loop. */
  readonly via: 'listener' | 'poll';
}

export interface VerifyOptions {
  scopes?: readonly string[];
  scopeMode?: 'all' | 'any';
}

export interface VerifyReply {
  results: Record<string, { code: string; cached: boolean }>;
}

export interface HeardReply {
  ids: Record<string, number>;
  flushes: number;
  lastFlushAt: number | null;
}

/** What a worker sends: replies to requests, and what it reports on its own (ready, refused, ping). */
type Report = { type?: string; req?: number; ok?: boolean; error?: string; id?: string; seq?: number; at?: number; via?: Refusal['via'] };
type WorkerMessage = Report | null | undefined;

/** What each worker request takes, and what it answers. */
export interface Requests {
  keys: { keys: ReadonlyArray<{ id: string; key: string }> };
  verify: { ids: readonly string[]; options?: VerifyOptions | undefined };
  watch: { id: string; expect: string; options?: VerifyOptions | undefined };
  unwatch: { id: string };
  heard: Record<string, never>;
  stats: Record<string, never>;
  time: Record<string, never>;
}

export interface Replies {
  keys: { count: number };
  verify: VerifyReply;
  watch: object;
  unwatch: object;
  heard: HeardReply;
  stats: { hits: number; misses: number; staleHits: number; storeErrors: number };
  time: { at: number };
}

export interface Cluster {
  readonly workers: readonly ClusterWorker[];
  call<T extends keyof Requests>(index: number, type: T, payload?: Requests[T]): Promise<Replies[T]>;
  callAll<T extends keyof Requests>(type: T, payload?: Requests[T]): Promise<Array<Replies[T]>>;
  watch(id: string, expect: string, settings?: { options?: VerifyOptions; timeoutMs?: number }): Promise<{ refusals: Promise<Array<Refusal | null>> }>;
  pings(seq: number, timeoutMs?: number): Promise<Array<number | null>>;
  waitUntilSubscribed(admin: Redis, timeoutMs?: number): Promise<void>;
  clockOffsets(rounds?: number): Promise<Array<{ offset: number; error: number }>>;
  stop(): Promise<void>;
}

/**
 * Milliseconds on CLOCK_MONOTONIC (process.hrtime, uv_hrtime): one clock shared by every process of the
 * machine and never stepped. Not performance.timeOrigin + performance.now(): timeOrigin is read from the
 * wall clock when each process starts, so a wall-clock correction between two starts shifts one
 * process against the other (one test run saw every latency shifted by about -7 ms).
 */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`[revocation] ${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Waits until `channel` has at least `count` subscribers (SUBSCRIBE is asynchronous in every process). */
export async function waitForSubscribers(admin: Redis, channel: string, count: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [, subscribers] = (await admin.pubsub('NUMSUB', channel)) as [string, number];
    if (Number(subscribers) >= count) return Number(subscribers);
    if (Date.now() > deadline) throw new Error(`[revocation] ${channel} has ${subscribers} subscribers, expected ${count}`);
    await sleep(10);
  }
}

/** The lines of CLIENT LIST as objects of their fields (id, name, sub, ...). */
function pubsubClients(list: unknown): Array<Record<string, string | undefined>> {
  return String(list)
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) =>
      Object.fromEntries(
        line
          .trim()
          .split(' ')
          .map((field) => field.split('=', 2)),
      ),
    );
}

/**
 * Kills the pub/sub connection(s) named `name` (a worker's subscriber: the store duplicates the worker's
 * client, name included), and only those: other suites share this Redis. Returns how many were killed.
 */
export async function killSubscriber(admin: Redis, name: string): Promise<number> {
  const ids = pubsubClients(await admin.client('LIST', 'TYPE', 'PUBSUB'))
    .filter((fields) => fields.name === name)
    .map((fields) => fields.id!);
  let killed = 0;
  for (const id of ids) killed += Number(await admin.client('KILL', 'ID', id));
  return killed;
}

/**
 * Starts `count` workers and resolves once each has connected. Options: redisUrl, namespace, count,
 * cacheTtl (ms), reconnectDelay (ms, the workers' ioredis retry delay), pingChannel (baseline
 * subscription), label (part of each worker's Redis connection name), requestTimeout (ms).
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { redisUrl, namespace, count = 4, cacheTtl = 60_000, reconnectDelay = 50, pingChannel, label = 'rev', requestTimeout = 10_000 } = options;
  const script = processScript('revocation-worker');
  const workers: ClusterWorker[] = [];
  const pending = new Map<number, { resolve: (reply: never) => void; reject: (error: Error) => void; index: number }>();
  const listeners = new Set<(index: number, message: Report) => void>();
  let nextReq = 1;

  const cluster: Cluster = {
    workers,
    /** Asks worker `index` to run `type`; resolves with its reply. */
    call<T extends keyof Requests>(index: number, type: T, payload: Requests[T] | Record<string, never> = {}): Promise<Replies[T]> {
      const worker = workers[index]!;
      const req = nextReq++;
      const reply = new Promise<Replies[T]>((resolve, reject) => pending.set(req, { resolve, reject, index }));
      worker.child.send({ type, req, ...payload });
      return withTimeout(reply, requestTimeout, `${worker.name} ${type}`).finally(() => pending.delete(req));
    },
    callAll(type, payload) {
      return Promise.all(workers.map((_, i) => cluster.call(i, type, payload)));
    },
    /**
     * Arms every worker to report when it first answers `expect` for key `id`, and resolves once all are
     * armed with { refusals }: a promise of one entry per worker, { at, via } or null if it did not
     * refuse within `timeoutMs`.
     */
    async watch(id, expect, { options, timeoutMs = 5_000 } = {}) {
      const found: Array<Refusal | null> = workers.map(() => null);
      let left = workers.length;
      let done: () => void = () => {};
      const all = new Promise<void>((resolve) => (done = resolve));
      const listener = (index: number, message: Report) => {
        if (message.type !== 'refused' || message.id !== id || found[index] !== null) return;
        found[index] = { at: message.at!, via: message.via! };
        if (--left === 0) done();
      };
      listeners.add(listener);
      await cluster.callAll('watch', { id, expect, options });
      const refusals = (async () => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
        clearTimeout(timer);
        listeners.delete(listener);
        if (left > 0) await cluster.callAll('unwatch', { id }).catch(() => {});
        return found;
      })();
      return { refusals };
    },
    /** Resolves with the time each worker received PUBLISH `seq` on the ping channel (null after `timeoutMs`). */
    pings(seq, timeoutMs = 5_000) {
      const found: Array<number | null> = workers.map(() => null);
      let left = workers.length;
      return new Promise((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(found);
        };
        const listener = (index: number, message: Report) => {
          if (message.type !== 'ping' || message.seq !== seq || found[index] !== null) return;
          found[index] = message.at!;
          if (--left === 0) finish();
        };
        const timer = setTimeout(finish, timeoutMs);
        listeners.add(listener);
      });
    },
    /**
     * Clock offset of each worker against this process (worker minus parent, ms), from the IPC round trip
     * with the smallest delay out of `rounds`; `error` bounds it (half that round trip).
     */
    async clockOffsets(rounds = 20) {
      const offsets: Array<{ offset: number; error: number }> = [];
      for (let i = 0; i < workers.length; i++) {
        let best: { rtt: number; offset: number } | undefined;
        for (let r = 0; r < rounds; r++) {
          const t1 = now();
          const { at } = await cluster.call(i, 'time');
          const t2 = now();
          if (best === undefined || t2 - t1 < best.rtt) best = { rtt: t2 - t1, offset: at - (t1 + t2) / 2 };
        }
        offsets.push({ offset: best!.offset, error: best!.rtt / 2 });
      }
      return offsets;
    },
    /**
     * Waits until every worker's store has its invalidation subscription in place: a pub/sub connection
     * with the worker's name and at least one channel (SUBSCRIBE is asynchronous in every process).
     */
    async waitUntilSubscribed(admin, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const subscribed = new Set(
          pubsubClients(await admin.client('LIST', 'TYPE', 'PUBSUB'))
            .filter((fields) => Number(fields.sub) > 0)
            .map((fields) => fields.name),
        );
        const missing = workers.filter((w) => !subscribed.has(w.name));
        if (missing.length === 0) return;
        if (Date.now() > deadline) throw new Error(`[revocation] not subscribed after ${timeoutMs} ms: ${missing.map((w) => w.name).join(', ')}`);
        await sleep(10);
      }
    },
    /** Closes every worker; kills those that do not exit within a second. Safe to call twice. */
    async stop() {
      await Promise.all(
        workers.map(async (worker) => {
          const { child } = worker;
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((resolve) => child.once('exit', resolve));
          if (child.connected) child.send({ type: 'close', req: 0 });
          const timer = setTimeout(() => child.kill('SIGKILL'), 1_000);
          await exited;
          clearTimeout(timer);
        }),
      );
    },
  };

  const env = {
    ...process.env,
    REDIS_URL: redisUrl,
    TILL_NAMESPACE: namespace,
    TILL_CACHE_TTL: String(cacheTtl),
    TILL_RECONNECT_DELAY: String(reconnectDelay),
    ...(pingChannel ? { TILL_PING_CHANNEL: pingChannel } : {}),
  };
  const started: Array<Promise<void>> = [];
  for (let index = 0; index < count; index++) {
    const name = `till-${label}-${process.pid}-${index}-${Math.random().toString(36).slice(2, 8)}`;
    // execArgv [] : the parent may run under vitest, whose flags must not reach plain node workers.
    const child = fork(script, [], { env: { ...env, TILL_WORKER_NAME: name }, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push({ index, name, child, pid: child.pid });
    child.on('message', (message: WorkerMessage) => {
      if (message?.type === 'reply') {
        const waiter = pending.get(message.req!);
        if (waiter) message.ok ? waiter.resolve(message as never) : waiter.reject(new Error(`[revocation] ${name}: ${message.error}`));
        return;
      }
      for (const listener of [...listeners]) listener(index, message!);
    });
    child.on('exit', (code, signal) => {
      for (const waiter of pending.values()) {
        if (waiter.index === index) waiter.reject(new Error(`[revocation] ${name} exited (${signal ?? code})`));
      }
    });
    started.push(
      withTimeout(
        new Promise<void>((resolve, reject) => {
          child.once('exit', (code, signal) => reject(new Error(`[revocation] ${name} exited before it was ready (${signal ?? code})`)));
          child.on('message', (message: WorkerMessage) => message?.type === 'ready' && resolve());
        }),
        15_000,
        `${name} start`,
      ),
    );
  }
  try {
    await Promise.all(started);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
