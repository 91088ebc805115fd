// `pnpm bench memory`: memory at scale. Loads BENCH_KEYS keys (default 1,000,000) into a Redis of its own
// through Till's key manager (the real path: record, audit trail, audit log, indexes), then, in a fresh
// process, verifies random ones with a 100,000-entry cache: uniformly (the worst case for a cache) and
// skewed (Zipf, s = 1, as real traffic is). Prints the Redis memory per key, the verifying process's
// memory against its own baseline (the same process before its first verification) and the hit rates.
// Targets: Redis < 1 KB per key; process RSS < 200 MB with the cache full (settled: after the load, a few
// GCs later; the figure right after the load is printed too). Exit code 0 either way.
// Then misses (misses.mjs): the uniform load again, with the store's batched reads on and off in the same
// run, interleaved over rounds. Target: batched >= 2 x one command per read.
// Writes bench/results/memory.json and bench/results/memory-misses.json.
//
// The keys the verifier sends are read from a file of fixed-width lines (one pread per key), so the
// benchmark holds no million keys in the process it measures. The file lives in the OS temp directory
// and is deleted at the end. Redis: its own redis-server on a free loopback port (no persistence), so
// nothing else shares what INFO memory reports; BENCH_REDIS_URL uses another (its memory is then shared
// with whatever else it holds, and the figures say so).
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace } from '@till/testkit/redis-tools';
import { fixed, header, int, machine, runChild, save, settings, table } from './harness.mjs';
import { measureMisses } from './misses.mjs';
import { ownRedis } from './redis.mjs';
import { reportCacheHeap } from './cache-memory.mjs';

// The misses measure's child task, run as a task of this benchmark.
export { missesVariant } from './misses.mjs';

const MB = 1024 * 1024;
const LINE = 96; // bytes per line in the key file: a key (well under 95 characters) and padding
const REDIS_TARGET = 1024; // bytes per key
const PROCESS_TARGET = 200 * MB;

const configFromEnv = () =>
  settings({
    keys: { env: 'BENCH_KEYS', value: 1_000_000, quick: 50_000, integer: true },
    cache: { env: 'BENCH_CACHE', value: 100_000, quick: 10_000, integer: true },
    uniform: { env: 'BENCH_UNIFORM', value: 300_000, quick: 50_000, integer: true },
    zipf: { env: 'BENCH_ZIPF', value: 500_000, quick: 50_000, integer: true },
    concurrency: { env: 'BENCH_CONCURRENCY', value: 64, integer: true },
    owners: { env: 'BENCH_OWNERS', value: 10_000, integer: true },
  });

const usedMemory = async (client) => Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]);
const elapsed = (t0) => (performance.now() - t0) / 1000;

// ---------------------------------------------------------------------------------------------------
// Child processes: the loader and the verifier. Each gets its settings on the command line.

/** Creates keys `from`..`to` through the manager and writes each full key to its line of the file. */
export async function load({ url, namespace, file, from, to, owners, concurrency }) {
  const client = new Redis(url, { enableAutoPipelining: true });
  const till = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger, usage: false, actor: 'bench:memory' });
  const fd = openSync(file, 'r+');
  let next = from;
  const worker = async () => {
    const line = Buffer.alloc(LINE, 0x20);
    while (next < to) {
      const i = next++;
      // Keys as real services hold them: an owner (one of `owners` teams), two scopes, a name.
      const made = await till.keys.create({ name: `service ${i}`, ownerId: `team-${i % owners}`, scopes: ['orders:read', 'orders:write'] });
      line.fill(0x20);
      line.write(made.key, 'latin1');
      line[LINE - 1] = 0x0a;
      writeSync(fd, line, 0, LINE, i * LINE);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  closeSync(fd);
  await till.close();
  client.disconnect();
}

/** A key index in 0..n-1 drawn from Zipf(1) over ranks, the ranks scattered over the file. */
function zipfIndex(n) {
  // Inverse transform of the continuous 1/x density on [1, n+1): rank 1 is the hottest.
  const rank = Math.floor(Math.exp(Math.random() * Math.log(n + 1))) - 1;
  // A fixed bijection of 0..n-1 (an odd multiplier coprime with n when n is a power of ten or such):
  // hot ranks are not neighbours in the file.
  return Number((BigInt(rank) * 2_654_435_761n + 12_345n) % BigInt(n));
}

export async function verify({ url, namespace, file, keys, cache, uniform, zipf, concurrency }) {
  const gc = globalThis.gc;
  const memory = () => {
    gc();
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external + m.arrayBuffers };
  };
  const client = new Redis(url);
  let gets = 0;
  class CountingStore extends RedisStore {
    get(id) {
      gets++;
      return super.get(id);
    }
  }
  const till = createTill({
    store: new CountingStore({ client, namespace }),
    logger: silentLogger,
    // Trusted for the whole run: a miss is a key the cache does not hold, never one it let expire.
    cache: { max: cache, ttl: 3_600_000 },
  });
  const fd = openSync(file, 'r');
  await till.verify('till_notakey'); // connects and loads the code paths, before the baseline
  const baseline = memory();
  const phases = [];
  for (const [name, count, pick] of [
    ['uniform', uniform, () => Math.floor(Math.random() * keys)],
    ['zipf', zipf, () => zipfIndex(keys)],
  ]) {
    const before = gets;
    let done = 0;
    let invalid = 0;
    const t0 = performance.now();
    const worker = async () => {
      const line = Buffer.alloc(LINE);
      while (done < count) {
        done++;
        readSync(fd, line, 0, LINE, pick() * LINE);
        const result = await till.verify(line.toString('latin1', 0, line.indexOf(0x20)));
        if (!result.valid) invalid++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = elapsed(t0);
    phases.push({ name, verifications: count, invalid, hitRate: 1 - (gets - before) / count, perSecond: count / seconds, memory: memory() });
  }
  // Settled: the cache still full, the load over. V8 gives back the pages that garbage held a few
  // collections at a time, so RSS right after a run still counts the run's garbage.
  for (let i = 0; i < 8; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 250));
  }
  const settled = memory();
  closeSync(fd);
  await till.close();
  client.disconnect();
  return { baseline, phases, settled };
}

// ---------------------------------------------------------------------------------------------------
// The parent: Redis, the file, the children, the report.

export async function main() {
  const config = configFromEnv();
  const m = machine();
  // BENCH_MEMORY_PARTS: `cache` (heap and RSS per cached key, no Redis), `redis` (the rest), or both (default).
  const parts = (process.env.BENCH_MEMORY_PARTS ?? 'cache,redis').split(',');
  console.log(header('Till memory benchmark', m));
  const cacheHeap = parts.includes('cache') ? await reportCacheHeap(config.cache) : null;
  if (!parts.includes('redis')) return;
  const own = process.env.BENCH_REDIS_URL ? null : await ownRedis();
  const url = process.env.BENCH_REDIS_URL ?? own.url;
  const namespace = `till-bench-memory:${process.pid}:`;
  const dir = mkdtempSync(join(tmpdir(), 'till-bench-memory-'));
  const file = join(dir, 'keys');
  const client = new Redis(url);
  try {
    console.log(`  ${int(config.keys)} keys, cache of ${int(config.cache)}`);
    console.log(
      `  Redis: ${own ? 'a redis-server of its own' : 'BENCH_REDIS_URL (shared: its other contents count too)'}, ${(await client.info('server')).match(/redis_version:(\S+)/)[1]}`,
    );
    const fd = openSync(file, 'w');
    writeSync(fd, Buffer.alloc(1), 0, 1, config.keys * LINE - 1);
    closeSync(fd);

    const before = await usedMemory(client);
    const t0 = performance.now();
    // Two loaders: key creation costs the client (hashing, JSON) about what it costs Redis.
    const half = Math.ceil(config.keys / 2);
    await Promise.all([
      runChild('memory', 'load', { url, namespace, file, from: 0, to: half, owners: config.owners, concurrency: config.concurrency }),
      runChild('memory', 'load', { url, namespace, file, from: half, to: config.keys, owners: config.owners, concurrency: config.concurrency }),
    ]);
    const loadSeconds = elapsed(t0);
    const loaded = await usedMemory(client);
    const perKey = (loaded - before) / config.keys;
    // Where it goes: the global audit log is capped (100,000 entries), so its share falls as keys grow.
    const log = Number(await client.memory('USAGE', `${namespace}audit`)) || 0;
    const sample = await client.zrange(`${namespace}idx:all`, 0, 99);
    let record = 0;
    let trail = 0;
    for (const id of sample) {
      record += Number(await client.memory('USAGE', `${namespace}{${id}}:k`));
      trail += Number(await client.memory('USAGE', `${namespace}{${id}}:audit`));
    }
    const parts = {
      record: record / sample.length,
      trail: trail / sample.length,
      log: log / config.keys,
      indexesAndOverhead: perKey - record / sample.length - trail / sample.length - log / config.keys,
    };
    console.log(
      `  loaded in ${fixed(loadSeconds, 1)} s (${int(config.keys / loadSeconds)} keys/s): Redis used_memory ${fixed((loaded - before) / MB, 1)} MB more`,
    );
    console.log(
      `  per key: ${int(perKey)} B = record ${int(parts.record)} + own audit trail ${int(parts.trail)} + share of the capped audit log ${int(parts.log)}` +
        ` + indexes and Redis's own per-key overhead ${int(parts.indexesAndOverhead)}`,
    );

    const verified = await runChild(
      'memory',
      'verify',
      { url, namespace, file, keys: config.keys, cache: config.cache, uniform: config.uniform, zipf: config.zipf, concurrency: config.concurrency },
      { execArgv: ['--expose-gc'] },
    );
    const after = await usedMemory(client);
    const rows = [['phase', 'verifications', 'verified/s', 'hit rate', 'RSS', 'heap used', 'heap + buffers over baseline']];
    rows.push([
      'baseline (no verification yet)',
      '',
      '',
      '',
      `${fixed(verified.baseline.rss / MB, 1)} MB`,
      `${fixed(verified.baseline.heapUsed / MB, 1)} MB`,
      '',
    ]);
    for (const p of verified.phases) {
      const grown = p.memory.heapUsed + p.memory.external - verified.baseline.heapUsed - verified.baseline.external;
      rows.push([
        p.name,
        int(p.verifications),
        int(p.perSecond),
        `${fixed(p.hitRate * 100, 1)} %`,
        `${fixed(p.memory.rss / MB, 1)} MB`,
        `${fixed(p.memory.heapUsed / MB, 1)} MB`,
        `${fixed(grown / MB, 1)} MB`,
      ]);
    }
    const s = verified.settled;
    rows.push([
      'settled (cache full, load over)',
      '',
      '',
      '',
      `${fixed(s.rss / MB, 1)} MB`,
      `${fixed(s.heapUsed / MB, 1)} MB`,
      `${fixed((s.heapUsed + s.external - verified.baseline.heapUsed - verified.baseline.external) / MB, 1)} MB`,
    ]);
    console.log('');
    console.log(table(rows));
    const invalid = verified.phases.reduce((n, p) => n + p.invalid, 0);
    if (invalid > 0) console.log(`  ${int(invalid)} verifications failed: every key sent was valid, so this is a defect`);
    const peakRss = Math.max(...verified.phases.map((p) => p.memory.rss));
    const settled = verified.settled;
    console.log(`  Redis after verifying (usage counters of the keys used added): ${int((after - before) / config.keys)} B per key`);
    console.log('');
    console.log('Summary');
    console.log(`  Redis: ${int(perKey)} B per key; target < ${REDIS_TARGET}: ${perKey < REDIS_TARGET ? 'PASS' : 'FAIL'}`);
    console.log(
      `  Process with the cache full, settled: RSS ${fixed(settled.rss / MB, 1)} MB, heap used ${fixed(settled.heapUsed / MB, 1)} MB (baseline RSS ${fixed(verified.baseline.rss / MB, 1)} MB in the same process); ` +
        `target < 200 MB: ${settled.rss < PROCESS_TARGET && invalid === 0 ? 'PASS' : 'FAIL'}`,
    );
    console.log(`    right after the load (its garbage not yet given back): RSS up to ${fixed(peakRss / MB, 1)} MB`);
    console.log(`  Hit rates: ${verified.phases.map((p) => `${p.name} ${fixed(p.hitRate * 100, 1)} %`).join(', ')}`);
    console.log(
      `  saved to ${save('bench/results/memory.json', { date: new Date().toISOString(), machine: m, config, redis: { perKey, parts, afterVerifyPerKey: (after - before) / config.keys, loadSeconds }, process: verified, cacheHeap })}`,
    );
    await measureMisses({ url, namespace, file, line: LINE, config });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (own) {
      client.disconnect();
      own.stop();
    } else {
      // A shared Redis: the namespace goes, in batches.
      await deleteNamespace(client, namespace);
      client.disconnect();
    }
  }
}
