// A deployment of N real verifying processes (revocation-worker.mjs) sharing one Redis, driven over IPC.
// Used by test/revocation.test.ts and bench/revocation.mjs. Plain JavaScript so that both the vitest
// suite and the benchmark (plain node) can load it; types in revocation-cluster.d.mts.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./revocation-worker.mjs', import.meta.url));

/**
 * Milliseconds on CLOCK_MONOTONIC (process.hrtime, uv_hrtime): one clock shared by every process of the
 * machine and never stepped. Not performance.timeOrigin + performance.now(): timeOrigin is read from the
 * wall clock when each process starts, so a wall-clock correction between two starts shifts one
 * process against the other (one test run saw every latency shifted by about -7 ms).
 */
export const now = () => Number(process.hrtime.bigint()) / 1e6;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`[revocation] ${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Waits until `channel` has at least `count` subscribers (SUBSCRIBE is asynchronous in every process). */
export async function waitForSubscribers(admin, channel, count, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [, subscribers] = await admin.pubsub('NUMSUB', channel);
    if (Number(subscribers) >= count) return Number(subscribers);
    if (Date.now() > deadline) throw new Error(`[revocation] ${channel} has ${subscribers} subscribers, expected ${count}`);
    await sleep(10);
  }
}

/** The lines of CLIENT LIST as objects of their fields (id, name, sub, ...). */
function pubsubClients(list) {
  return String(list)
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => Object.fromEntries(line.trim().split(' ').map((field) => field.split('=', 2))));
}

/**
 * Kills the pub/sub connection(s) named `name` (a worker's subscriber: the store duplicates the worker's
 * client, name included), and only those: other suites share this Redis. Returns how many were killed.
 */
export async function killSubscriber(admin, name) {
  const ids = pubsubClients(await admin.client('LIST', 'TYPE', 'pubsub'))
    .filter((fields) => fields.name === name)
    .map((fields) => fields.id);
  let killed = 0;
  for (const id of ids) killed += Number(await admin.client('KILL', 'ID', id));
  return killed;
}

/**
 * Starts `count` workers and resolves once each has connected. Options: redisUrl, namespace, count,
 * cacheTtl (ms), reconnectDelay (ms, the workers' ioredis retry delay), pingChannel (baseline
 * subscription), label (part of each worker's Redis connection name), requestTimeout (ms).
 */
export async function startCluster(options) {
  const { redisUrl, namespace, count = 4, cacheTtl = 60_000, reconnectDelay = 50, pingChannel, label = 'rev', requestTimeout = 10_000 } = options;
  const workers = [];
  const pending = new Map();
  const listeners = new Set();
  let nextReq = 1;

  const cluster = {
    workers,
    /** Asks worker `index` to run `type`; resolves with its reply. */
    call(index, type, payload = {}) {
      const worker = workers[index];
      const req = nextReq++;
      const reply = new Promise((resolve, reject) => pending.set(req, { resolve, reject, index }));
      worker.child.send({ type, req, ...payload });
      return withTimeout(reply, requestTimeout, `${worker.name} ${type}`).finally(() => pending.delete(req));
    },
    callAll(type, payload = {}) {
      return Promise.all(workers.map((_, i) => cluster.call(i, type, payload)));
    },
    /**
     * Arms every worker to report when it first answers `expect` for key `id`, and resolves once all are
     * armed with { refusals }: a promise of one entry per worker, { at, via } or null if it did not
     * refuse within `timeoutMs`.
     */
    async watch(id, expect, { options, timeoutMs = 5_000 } = {}) {
      const found = workers.map(() => null);
      let left = workers.length;
      let done;
      const all = new Promise((resolve) => (done = resolve));
      const listener = (index, message) => {
        if (message.type !== 'refused' || message.id !== id || found[index] !== null) return;
        found[index] = { at: message.at, via: message.via };
        if (--left === 0) done();
      };
      listeners.add(listener);
      await cluster.callAll('watch', { id, expect, options });
      const refusals = (async () => {
        let timer;
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
      const found = workers.map(() => null);
      let left = workers.length;
      return new Promise((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(found);
        };
        const listener = (index, message) => {
          if (message.type !== 'ping' || message.seq !== seq || found[index] !== null) return;
          found[index] = message.at;
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
      const offsets = [];
      for (let i = 0; i < workers.length; i++) {
        let best;
        for (let r = 0; r < rounds; r++) {
          const t1 = now();
          const { at } = await cluster.call(i, 'time');
          const t2 = now();
          if (best === undefined || t2 - t1 < best.rtt) best = { rtt: t2 - t1, offset: at - (t1 + t2) / 2 };
        }
        offsets.push({ offset: best.offset, error: best.rtt / 2 });
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
          pubsubClients(await admin.client('LIST', 'TYPE', 'pubsub'))
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
  const started = [];
  for (let index = 0; index < count; index++) {
    const name = `till-${label}-${process.pid}-${index}-${Math.random().toString(36).slice(2, 8)}`;
    // execArgv [] : the parent may run under vitest, whose flags must not reach plain node workers.
    const child = fork(WORKER, [], { env: { ...env, TILL_WORKER_NAME: name }, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const worker = { index, name, child, pid: child.pid };
    workers.push(worker);
    child.on('message', (message) => {
      if (message?.type === 'reply') {
        const waiter = pending.get(message.req);
        if (waiter) message.ok ? waiter.resolve(message) : waiter.reject(new Error(`[revocation] ${name}: ${message.error}`));
        return;
      }
      for (const listener of [...listeners]) listener(index, message);
    });
    child.on('exit', (code, signal) => {
      for (const waiter of pending.values()) {
        if (waiter.index === index) waiter.reject(new Error(`[revocation] ${name} exited (${signal ?? code})`));
      }
    });
    started.push(
      withTimeout(
        new Promise((resolve, reject) => {
          child.once('exit', (code, signal) => reject(new Error(`[revocation] ${name} exited before it was ready (${signal ?? code})`)));
          child.on('message', (message) => message?.type === 'ready' && resolve());
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
