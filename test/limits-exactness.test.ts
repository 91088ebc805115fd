// Rate limits and credits are exact across processes: 4 real Express 5 workers (the testkit's limits-worker,
// on the BUILT packages) share one Redis namespace, and this process drives 50 concurrent keep-alive
// clients at each of them, far more requests than a key may make. Every charge is one Lua script, so
// however the requests interleave, exactly the allowed number is admitted, each admission sees its own
// count, and a refusal charges nothing anywhere. Key ids only in any output: never a full key.
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { processScript } from '@till/testkit/process-script';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';

const WORKER = processScript('limits-worker');
const WORKERS = 4;
/** Concurrent clients per worker, each on its own keep-alive connection. */
const CLIENTS = 50;
/** Requests each client sends, one after the other: WORKERS x CLIENTS x ROUNDS in all. */
const ROUNDS = 4;
const TOTAL = WORKERS * CLIENTS * ROUNDS;
const HOUR = 3_600_000;
/** Scenario 1: the key's own limit. */
const N = 120;
/** Scenario 2: the key's credits. */
const C = 90;
/** Scenario 3: the key's own limit, the workers' middleware limit `tight` (B < A) and the key's credits. */
const A = 100;
const B = 40;
const K = 1_000;

interface Worker {
  readonly index: number;
  readonly child: ChildProcess;
  readonly port: number;
  readonly agent: Agent;
}

interface WorkerStats {
  events: { fallback: number; restored: number };
  verifier: { hits: number; misses: number; staleHits: number; storeErrors: number };
}

/** One response, as much of it as the assertions need. */
interface Reply {
  readonly worker: number;
  readonly status: number;
  /** `code` of a problem body; `OK` for a 200. */
  readonly code: string;
  /** Credits left after an admitted request's charge (null: the key has none). */
  readonly credits: number | null;
  readonly rateLimit: string | undefined;
  readonly retryAfter: string | undefined;
}

/** A draft-11 `RateLimit` value (`"per-hour";r=119;t=30, "tight";r=39;t=30`) by limit name; null if it does not parse. */
function parseRateLimit(value: string | undefined): Map<string, { r: number; t: number }> | null {
  if (value === undefined) return null;
  const items = new Map<string, { r: number; t: number }>();
  for (const item of value.split(', ')) {
    const m = /^"([A-Za-z0-9_.-]{1,64})";r=(\d+);t=(\d+)$/.exec(item);
    if (m === null || items.has(m[1]!)) return null;
    items.set(m[1]!, { r: Number(m[2]), t: Number(m[3]) });
  }
  return items;
}

/** How many replies had each status and code, like `{ '200 OK': 120, '429 RATE_LIMITED': 680 }`. */
function tally(replies: readonly Reply[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of replies) counts[`${r.status} ${r.code}`] = (counts[`${r.status} ${r.code}`] ?? 0) + 1;
  return counts;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const ascending = (values: number[]) => [...values].sort((a, b) => a - b);

function startWorker(index: number, env: NodeJS.ProcessEnv, started: ChildProcess[]): Promise<Worker> {
  // execArgv [] : this process runs under vitest, whose flags must not reach plain node workers.
  const child = fork(WORKER, [], { env: { ...env, TILL_WORKER_INDEX: String(index) }, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  started.push(child);
  return new Promise<Worker>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`[limits] worker ${index} not ready within 15 s`)), 15_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`[limits] worker ${index} exited before it was ready (${signal ?? code})`));
    });
    child.on('message', (message: { type?: string; port?: number }) => {
      if (message?.type !== 'ready') return;
      clearTimeout(timer);
      resolve({ index, child, port: message.port!, agent: new Agent({ keepAlive: true, maxSockets: CLIENTS }) });
    });
  });
}

/** Asks every worker to close; kills any that has not exited within a second. Safe to call twice. */
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

/** GET `path` from one worker with `key` as a bearer token. Errors name the worker, never the key. */
function get(worker: Worker, path: string, key: string): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: worker.port, path, method: 'GET', agent: worker.agent, headers: { authorization: `Bearer ${key}` }, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: { code?: unknown; credits?: unknown };
          try {
            body = JSON.parse(text) as typeof body;
          } catch {
            return reject(new Error(`[limits] worker ${worker.index} answered ${res.statusCode} with a body that is not JSON (${text.length} bytes)`));
          }
          const header = (name: string) => (typeof res.headers[name] === 'string' ? (res.headers[name] as string) : undefined);
          resolve({
            worker: worker.index,
            status: res.statusCode ?? 0,
            code: res.statusCode === 200 ? 'OK' : String(body.code),
            credits: typeof body.credits === 'number' ? body.credits : null,
            rateLimit: header('ratelimit'),
            retryAfter: header('retry-after'),
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`[limits] a request to worker ${worker.index} took over 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

describe(`rate limits and credits are exact across ${WORKERS} processes x ${CLIENTS} concurrent clients`, () => {
  const namespace = uniqueNamespace();
  let admin: Redis;
  let client: Redis;
  let store: RedisStore;
  let till: Till;
  const children: ChildProcess[] = [];
  let workers: Worker[] = [];

  /** Sends `type` to every worker and resolves with each one's reply (the message of `replyType` for it). */
  const askAll = <T>(type: string, replyType: string) =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise<T>((resolve, reject) => {
            const req = Math.random();
            const timer = setTimeout(() => reject(new Error(`[limits] worker ${w.index} did not answer ${type}`)), 5_000);
            const onMessage = (message: T & { type?: string; req?: number }) => {
              if (message?.type !== replyType || message.req !== req) return;
              clearTimeout(timer);
              w.child.off('message', onMessage);
              resolve(message);
            };
            w.child.on('message', onMessage);
            w.child.send({ type, req });
          }),
      ),
    );

  /** Every worker's counters: a fallback to per-process limits or a store error would void exactness. */
  const stats = () => askAll<WorkerStats>('stats', 'stats');

  /**
   * Sends ROUNDS requests from each of CLIENTS clients at every worker, all at once, and returns every
   * reply. Logs how the admissions spread over the workers and how long the burst took.
   */
  const hammer = async (label: string, path: string, key: string): Promise<Reply[]> => {
    const start = performance.now();
    const perWorker = await Promise.all(
      workers.map((w) =>
        Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            const replies: Reply[] = [];
            for (let i = 0; i < ROUNDS; i++) replies.push(await get(w, path, key));
            return replies;
          }),
        ),
      ),
    );
    const replies = perWorker.flat(2);
    const admittedBy = workers.map((w) => replies.filter((r) => r.worker === w.index && r.status === 200).length);
    console.log(
      `[limits] ${label}: ${replies.length} requests in ${(performance.now() - start).toFixed(0)} ms; admitted per worker ${admittedBy.join('/')}; ${JSON.stringify(tally(replies))}`,
    );
    return replies;
  };

  /** Asks every worker to write its usage counts now, and waits until each has. */
  const flushUsage = () => askAll<unknown>('flush-usage', 'flushed');

  const expectHealthyWorkers = async () => {
    for (const s of await stats()) {
      expect(s.events.fallback, 'rate limits fell back to per-process counting').toBe(0);
      expect(s.verifier.storeErrors, 'store errors in a worker').toBe(0);
    }
  };

  beforeAll(async () => {
    admin = newClient();
    client = newClient();
    store = new RedisStore({ client, namespace });
    till = createTill({ store, logger: silentLogger });
    const env = { ...process.env, REDIS_URL: redisUrl(), TILL_NAMESPACE: namespace, TILL_TIGHT_LIMIT: String(B) };
    try {
      workers = await Promise.all(Array.from({ length: WORKERS }, (_, i) => startWorker(i, env, children)));
    } catch (error) {
      await stopWorkers(children);
      throw error;
    }
  });

  afterAll(async () => {
    for (const w of workers) w.agent.destroy();
    await stopWorkers(children);
    await till?.close();
    await store?.close();
    if (admin) await deleteNamespace(admin, namespace);
    admin?.disconnect();
    client?.disconnect();
  });

  it(`starts ${WORKERS} worker processes`, () => {
    expect(workers).toHaveLength(WORKERS);
    expect(new Set(workers.map((w) => w.child.pid)).size).toBe(WORKERS);
    expect(new Set(workers.map((w) => w.port)).size).toBe(WORKERS);
  });

  it(`admits exactly ${N} of ${TOTAL} requests of a key limited to ${N} per hour, each with its own remaining count`, async () => {
    const { key, record } = await till.keys.create({ name: 'exact limit', scopes: [], limits: [{ name: 'per-hour', limit: N, window: '1h' }] });
    const replies = await hammer(`limit ${N}/h, key ${record.id}`, '/own', key);

    expect(replies).toHaveLength(TOTAL);
    expect(tally(replies)).toEqual({ '200 OK': N, '429 RATE_LIMITED': TOTAL - N });
    const admitted = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status !== 200);

    // Every admission carries a RateLimit header that parses, and the remaining counts are N-1 down
    // to 0, each exactly once: no two requests were charged against the same count.
    const remaining = admitted.map((r) => {
      const limits = parseRateLimit(r.rateLimit);
      expect(limits, `RateLimit header of an admitted request: ${r.rateLimit}`).not.toBeNull();
      expect([...limits!.keys()]).toEqual(['per-hour']);
      const { r: left, t } = limits!.get('per-hour')!;
      expect(t).toBeGreaterThan(0);
      expect(t).toBeLessThanOrEqual(3600);
      return left;
    });
    expect(ascending(remaining)).toEqual(range(0, N - 1));
    // A refusal says the limit is spent and when to come back.
    for (const r of refused) {
      expect(parseRateLimit(r.rateLimit)?.get('per-hour')?.r).toBe(0);
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }

    // The bucket holds exactly N: a charge of cost 0 finds nothing left.
    const check = await till.store.consume({
      subject: record.id,
      keyVersion: record.version,
      limits: [{ name: 'per-hour', bucket: 'k.per-hour', limit: N, window: HOUR, cost: 0 }],
      cost: 0,
      now: Date.now(),
    });
    expect(check.outcome).toBe('OK');
    expect('limits' in check && check.limits[0]!.remaining).toBe(0);
    await expectHealthyWorkers();
  });

  it(`admits exactly ${C} of ${TOTAL} requests of a key with ${C} credits, and leaves it at 0`, async () => {
    const { key, record } = await till.keys.create({ name: 'exact credits', scopes: [], credits: { remaining: C } });
    const replies = await hammer(`credits ${C}, key ${record.id}`, '/own', key);

    expect(replies).toHaveLength(TOTAL);
    expect(tally(replies)).toEqual({ '200 OK': C, '429 USAGE_EXCEEDED': TOTAL - C });
    // Each admission spent its own credit: the counts left after each are C-1 down to 0, once each.
    expect(ascending(replies.filter((r) => r.status === 200).map((r) => r.credits!))).toEqual(range(0, C - 1));
    for (const r of replies) {
      // No rate limit, no RateLimit header; credits without a refill never come back, so no Retry-After.
      expect(r.rateLimit).toBeUndefined();
      expect(r.retryAfter).toBeUndefined();
    }

    const left = await till.keys.credits(record.id);
    expect(left).toBe(0);
    // And one more request, after the storm, is still refused without driving the count below 0.
    const after = await get(workers[0]!, '/own', key);
    expect(`${after.status} ${after.code}`).toBe('429 USAGE_EXCEEDED');
    expect(await till.keys.credits(record.id)).toBe(0);
    await expectHealthyWorkers();
  });

  it(`charges all or nothing: with its own limit ${A}/h, the middleware limit ${B}/h and ${K} credits, a key is charged exactly ${B} everywhere`, async () => {
    const { key, record } = await till.keys.create({
      name: 'all or nothing',
      scopes: [],
      limits: [{ name: 'per-hour', limit: A, window: '1h' }],
      credits: { remaining: K },
    });
    const replies = await hammer(`limit ${A}/h + tight ${B}/h + credits ${K}, key ${record.id}`, '/tight', key);

    expect(replies).toHaveLength(TOTAL);
    expect(tally(replies)).toEqual({ '200 OK': B, '429 RATE_LIMITED': TOTAL - B });
    const admitted = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status !== 200);

    // Admissions: both limits and the credits counted down together, one step per admission.
    const own: number[] = [];
    const tight: number[] = [];
    for (const r of admitted) {
      const limits = parseRateLimit(r.rateLimit);
      expect(limits, `RateLimit header of an admitted request: ${r.rateLimit}`).not.toBeNull();
      expect([...limits!.keys()].sort()).toEqual(['per-hour', 'tight']);
      own.push(limits!.get('per-hour')!.r);
      tight.push(limits!.get('tight')!.r);
    }
    expect(ascending(tight)).toEqual(range(0, B - 1));
    expect(ascending(own)).toEqual(range(A - B, A - 1));
    expect(ascending(admitted.map((r) => r.credits!))).toEqual(range(K - B, K - 1));
    // Refusals: `tight` is spent, and the key's own limit stands where the last admission left it,
    // reported uncharged (a refusal charges nothing, and says so).
    const ownOnRefusal = new Set<number | undefined>();
    for (const r of refused) {
      const limits = parseRateLimit(r.rateLimit);
      expect(limits?.get('tight')?.r).toBe(0);
      ownOnRefusal.add(limits?.get('per-hour')?.r);
    }
    expect([...ownOnRefusal], 'per-hour counts reported by the refusals').toEqual([A - B]);

    // What the store holds afterwards, read with charges of cost 0: the refused requests charged nothing.
    const ownCheck = await till.store.consume({
      subject: record.id,
      keyVersion: record.version,
      limits: [{ name: 'per-hour', bucket: 'k.per-hour', limit: A, window: HOUR, cost: 0 }],
      cost: 0,
      now: Date.now(),
    });
    expect(ownCheck.outcome).toBe('OK');
    expect('limits' in ownCheck && ownCheck.limits[0]!.remaining).toBe(A - B);
    const tightCheck = await till.store.consume({
      subject: record.id,
      limits: [{ name: 'tight', bucket: 'a.tight', limit: B, window: HOUR, cost: 0 }],
      now: Date.now(),
    });
    expect('limits' in tightCheck && tightCheck.limits[0]!.remaining).toBe(0);
    expect(await till.keys.credits(record.id)).toBe(K - B);

    // The same from outside: on the route without `tight`, the key is admitted once more, with
    // A - B - 1 left of its own limit and K - B - 1 credits.
    const after = await get(workers[1]!, '/own', key);
    expect(`${after.status} ${after.code}`).toBe('200 OK');
    expect(parseRateLimit(after.rateLimit)?.get('per-hour')?.r).toBe(A - B - 1);
    expect(after.credits).toBe(K - B - 1);
    await expectHealthyWorkers();
  });

  it('counts usage exactly across the processes: every request once, by outcome, with the last use', async () => {
    const { key, record } = await till.keys.create({ name: 'usage', scopes: [] });
    const before = Date.now();
    const replies = await hammer(`usage, key ${record.id}`, '/own', key);
    expect(replies.every((r) => r.status === 200)).toBe(true);
    // Wrong secrets for the same id, from every worker: probing of the id, not uses of the key.
    const wrong = withWrongSecret(key);
    for (const w of workers) for (let i = 0; i < 5; i++) expect((await get(w, '/own', wrong)).status).toBe(401);
    await flushUsage();
    const usage = await till.keys.usage(record.id, { days: 1 });
    expect(usage.days[0]!.counts).toEqual({ VALID: replies.length });
    expect(usage.days[0]!.total).toBe(replies.length);
    expect(usage.lastUsedAt).toBeGreaterThanOrEqual(before);
    expect(usage.lastUsedAt).toBeLessThanOrEqual(Date.now());
  });
});
