// Drill: 100,000 hostile requests against a real app process, over raw sockets (@till/testkit/raw-http), once
// for Express and once for Koa (the testkit's drill-app, the built packages, on a Redis of the drill's own).
// The requests (@till/testkit/hostile-requests) are what no HTTP client would send: bytes that are not UTF-8,
// control characters, repeated and conflicting key headers, tokens of kilobytes, header sections up to
// and beyond Node's 16 KB limit (Node answers 431 itself, or closes the socket), smuggling attempts,
// pipelining, keys of the right shape with a wrong check, a wrong secret, or an id no one issued.
// What must hold: every request gets one of the answers its kind allows (no 5xx at all: Redis is up, so
// not even a 503), the process neither crashes nor hangs, and its heap after a full GC stays bounded.
//
// Brute-force protection: with its defaults an IP is blocked at its 30th failure, and a blocked IP is
// refused before its headers are read. The main run would then test that fast path only. So the main
// route (`/`) runs with a threshold no run reaches (failures are still counted in Redis for every
// request, as for an attacker not yet blocked), and the default protection is checked on its own:
// from a second loopback address (127.0.0.2) on `/strict`, which has the defaults, the drill fails 30
// times, is blocked, and then every request that reaches the app, valid key or not, is refused 429.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { freePort, type RunningRedis } from '@till/testkit/redis-server';
import { uniqueNamespace } from '@till/testkit/redis';
import { startApp, startOwnRedis, tally, waitFor, type DrillApp } from '@till/testkit/drill-apps';
import { hostileKinds, labelOf, rawRequest, schedule, type HostileKeys, type HostileKind } from '@till/testkit/hostile-requests';
import { runRaw, type RawRequest, type RawResponse } from '@till/testkit/raw-http';
import { madeUpKey } from '@till/testkit/key-forgery';

const TOTAL = 100_000;
/** Requests before the first memory sample: code compiled, pools and caches of a running app allocated. */
const WARMUP = 5_000;
const CONCURRENCY = 32;
const BLOCKED_RUN = 5_000;
/**
 * Heap growth allowed from the first sample to the last, both after a full GC. What a flood can make the
 * process keep is bounded by design: unknown ids in the verifier's negative cache (negativeMax 10,000
 * entries: each a small object and a 16-character id, a few MB at most), blocked IPs (maxBlocked 10,000,
 * one here), distinct security events between two audit writes (maxPending 1,000), usage counters for real
 * keys only (3 here). 32 MB is several times that, and far below what a leak of even a few hundred bytes a
 * request would add over 100,000 requests. The second half of the run, when the caches are already full,
 * must add less than half of it.
 */
const HEAP_BOUND = 32 * 1024 * 1024;
/** RSS also counts freed memory the allocator keeps, socket buffers and code: a looser bound. */
const RSS_BOUND = 128 * 1024 * 1024;
const MB = (n: number) => (n / 1024 / 1024).toFixed(1);

interface Memory {
  heapUsed: number;
  rss: number;
  /** CPU time the app process has used so far. */
  cpuMs: number;
}

/** Counts of labels per kind, and the answers no kind allowed. */
class Tally {
  readonly byKind = new Map<string, Map<string, number>>();
  readonly labels = new Map<string, number>();
  readonly unexpected: string[] = [];
  unexpectedCount = 0;
  requests = 0;
  responses = 0;

  constructor(private readonly allowed: (kind: HostileKind) => readonly string[]) {}

  record(kind: HostileKind, responses: RawResponse[]): void {
    this.requests++;
    this.responses += responses.length;
    let counts = this.byKind.get(kind.kind);
    if (counts === undefined) this.byKind.set(kind.kind, (counts = new Map()));
    const allowed = this.allowed(kind);
    for (const response of responses) {
      const label = labelOf(response);
      counts.set(label, (counts.get(label) ?? 0) + 1);
      this.labels.set(label, (this.labels.get(label) ?? 0) + 1);
      if (!allowed.includes(label)) {
        this.unexpectedCount++;
        if (this.unexpected.length < 20) this.unexpected.push(`${kind.kind}: ${label}`);
      }
    }
  }

  statuses(): string {
    const byStatus = new Map<string, number>();
    for (const [label, n] of this.labels) {
      const status = label.split('/')[0]!;
      byStatus.set(status, (byStatus.get(status) ?? 0) + n);
    }
    return [...byStatus]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
  }
}

describe.each(['express', 'koa'] as const)('100,000 hostile requests against %s', (framework) => {
  const namespace = uniqueNamespace();
  let redis: RunningRedis | undefined;
  let client: Redis | undefined;
  let till: Till | undefined;
  let app: DrillApp | undefined;
  let keys: HostileKeys;

  beforeAll(async () => {
    redis = await startOwnRedis(await freePort());
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    till = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger, usage: false, auditEvents: false });
    const valid = (await till.keys.create({ name: 'valid', scopes: [] })).key;
    const other = (await till.keys.create({ name: 'other', scopes: [] })).key;
    const revoked = await till.keys.create({ name: 'revoked', scopes: [] });
    await till.keys.revoke(revoked.record.id);
    keys = { valid, other, revoked: revoked.key };
  });

  afterAll(async () => {
    await app?.stop();
    await till?.close();
    client?.disconnect();
    await redis?.stop();
  });

  it('answers every one as its kind allows, without a 5xx, a crash, a hang or unbounded memory', async () => {
    app = await startApp({
      framework,
      redisUrl: redis!.url,
      namespace,
      name: `drill-hostile-${framework}`,
      bruteForce: { threshold: 1_000_000_000, window: '1m' },
    });
    const kinds = hostileKinds(keys);
    const round = schedule(kinds);
    let turn = 0;
    /** The next `count` requests of the schedule, to `path`, each with its kind. */
    const source = (count: number, path: string) => {
      let sent = 0;
      const kindOf = new Map<RawRequest, HostileKind>();
      const next = (): RawRequest | null => {
        if (sent++ >= count) return null;
        const kind = round[turn++ % round.length]!;
        const request = { kind: kind.kind, ...kind.build(path) };
        kindOf.set(request, kind);
        return request;
      };
      return { next, kindOf };
    };
    const main = new Tally((kind) => kind.expect);
    const run = async (count: number, tally: Tally, path: string, localAddress?: string, concurrency = CONCURRENCY) => {
      const { next, kindOf } = source(count, path);
      await runRaw({ port: app!.port, concurrency, ...(localAddress !== undefined && { localAddress }) }, next, (request, responses) => {
        tally.record(kindOf.get(request)!, responses);
        kindOf.delete(request);
      });
    };

    await run(WARMUP, main, '/');
    const memory: Memory[] = [await app.call<Memory>('memory')];
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    await run(TOTAL / 2, main, '/');
    memory.push(await app.call<Memory>('memory'));
    await run(TOTAL / 2, main, '/');
    const seconds = (performance.now() - started) / 1000;
    const clientCpu = process.cpuUsage(cpuBefore);
    memory.push(await app.call<Memory>('memory'));
    const mainStats = await app.stats();

    /** One request on a connection of its own; its answer's label. */
    const sendOne = async (bytes: Buffer, localAddress?: string): Promise<string> => {
      let label = 'not sent';
      let sent = false;
      const next = () => {
        if (sent) return null;
        sent = true;
        return { kind: 'one', bytes };
      };
      await runRaw({ port: app!.port, concurrency: 1, ...(localAddress !== undefined && { localAddress }) }, next, (_request, [response]) => {
        label = labelOf(response!);
      });
      return label;
    };

    // Default protection, from another address: 31 made-up keys one at a time. The first 30 are answered
    // 401, the 30th blocking the IP in the process (its client.blocked event says so); the 31st and from
    // then on even a valid key get 429.
    const failures: string[] = [];
    for (let i = 0; i < 31; i++) failures.push(await sendOne(rawRequest('/strict', [`Authorization: Bearer ${madeUpKey()}`]), '127.0.0.2'));
    const blockHeard = await waitFor(async () => ((await app!.stats()).events['client.blocked'] ?? 0) >= 1, 5000, 10);
    const validWhenBlocked = await sendOne(rawRequest('/strict', [`Authorization: Bearer ${keys.valid}`]), '127.0.0.2');
    // Then the whole mix from that address: whatever reaches the app is refused as blocked.
    const blocked = new Tally((kind) => (kind.parser ? kind.expect : ['429/BLOCKED']));
    await run(BLOCKED_RUN, blocked, '/strict', '127.0.0.2', 8);

    // Still alive, still answering, nothing thrown.
    const afterLabel = await sendOne(rawRequest('/', [`Authorization: Bearer ${keys.valid}`]));
    const finalStats = await app.stats();
    const alive = app.child.exitCode === null && app.child.signalCode === null;
    const redisKeys = await client!.dbsize();
    const trails = (await client!.keys(`${namespace}{*}:audit`)).length;

    const [start, middle, end] = memory as [Memory, Memory, Memory];
    console.log(
      `[drill hostile ${framework}] ${main.requests - WARMUP} requests (+${WARMUP} warm-up) of ${kinds.length} kinds in ${seconds.toFixed(1)} s ` +
        `(${Math.round((main.requests - WARMUP) / seconds)}/s, ${CONCURRENCY} connections; CPU: app ${((memory[2]!.cpuMs - memory[0]!.cpuMs) / 1000).toFixed(1)} s, client ${((clientCpu.user + clientCpu.system) / 1e6).toFixed(1)} s): ${main.statuses()}; unexpected ${main.unexpectedCount}; ` +
        `heap ${MB(start.heapUsed)} -> ${MB(middle.heapUsed)} -> ${MB(end.heapUsed)} MB, rss ${MB(start.rss)} -> ${MB(end.rss)} MB; ` +
        `verifier ${JSON.stringify(mainStats.verifier)}; ` +
        `default brute-force from 127.0.0.2: 31 failures ${tally(failures)}, blocked ${blockHeard ? 'yes' : 'no'}, valid key then ${validWhenBlocked}, then ${blocked.requests} requests: ${tally([...blocked.labels].flatMap(([l, n]) => Array<string>(n).fill(l)))}; ` +
        `app errors ${finalStats.appErrors}; Redis keys after: ${redisKeys}, of which ${trails} per-key audit trails`,
    );
    if (main.unexpectedCount > 0 || blocked.unexpectedCount > 0) {
      console.error(`[drill hostile ${framework}] unexpected answers: ${[...main.unexpected, ...blocked.unexpected].join('; ')}`);
    }

    expect(main.requests).toBe(WARMUP + TOTAL);
    expect(main.unexpected).toEqual([]);
    expect([...main.labels.keys()].filter((l) => /^5/.test(l))).toEqual([]);
    // Every kind was sent and answered as it allows (the per-kind detail is in main.byKind).
    expect(main.byKind.size).toBe(kinds.length);
    expect(alive).toBe(true);
    expect(afterLabel).toBe('200');
    expect(finalStats.appErrors).toBe(0);
    expect(end.heapUsed - start.heapUsed, `heap grew from ${MB(start.heapUsed)} to ${MB(end.heapUsed)} MB`).toBeLessThan(HEAP_BOUND);
    expect(end.heapUsed - middle.heapUsed, `heap grew from ${MB(middle.heapUsed)} to ${MB(end.heapUsed)} MB in the second half`).toBeLessThan(HEAP_BOUND / 2);
    expect(end.rss - start.rss).toBeLessThan(RSS_BOUND);
    // The defaults: 30 failures within the window are allowed; the 30th blocks the IP in the process at
    // once, so the 31st request (sent after the 30th was answered) is refused without a lookup.
    expect(failures).toEqual([...Array<string>(30).fill('401/NOT_FOUND'), '429/BLOCKED']);
    expect(blockHeard, 'the 30th failure blocked 127.0.0.2').toBe(true);
    expect(validWhenBlocked).toBe('429/BLOCKED');
    expect(blocked.unexpected).toEqual([]);
  }, 150_000);
});
