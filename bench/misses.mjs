// The misses measure of `pnpm bench memory`: verifications/s under a uniform load over the keys memory.mjs
// loaded, with a full cache, so most verifications miss; the store's reads batched per turn of the event
// loop (RedisStore's default) against each read sent alone (`batchReads: false`), in the same run, in
// interleaved rounds. Also: Redis commands per miss (INFO commandstats deltas) and round trips per miss
// (counted in each variant's client). Target: batched >= 2 x alone. Writes bench/results/memory-misses.json.
import { fork } from 'node:child_process';
import { once, on } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { countRoundTrips } from '@till/testkit/round-trips';
import { fixed, int, machine, save, settings, table } from './harness.mjs';
import { compare, median, verdictText } from './stats.mjs';

const MISSES_TARGET = 2; // batched reads over reads sent alone, verifications/s
const elapsed = (t0) => (performance.now() - t0) / 1000;

/**
 * Commands Redis has executed: the reads of records (GET, and MGET: one for many keys), and all of them
 * (the INFO that asks left out; commands that scripts call count too), from INFO commandstats.
 */
async function commandsExecuted(admin) {
  const executed = { get: 0, all: 0 };
  for (const [, name, n] of String(await admin.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name === 'get' || name === 'mget') executed.get += Number(n);
    if (name !== 'info') executed.all += Number(n);
  }
  return executed;
}

/** CPU time Redis has used so far (user and system), in µs, from INFO cpu. */
async function redisCpu(admin) {
  const info = String(await admin.info('cpu'));
  const seconds = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6;
}

/**
 * One variant of the misses measure, in a process of its own (so each has one full cache in its heap, as a
 * service would): a Till on a RedisStore with `batchReads` on or off. After a warm-up that fills the cache,
 * it waits for the parent's orders: `{ run: count }` verifies `count` uniformly drawn keys and answers with
 * verifications/s, misses, the Redis commands the run made execute (INFO commandstats read around it: the
 * other variant is idle meanwhile) and the round trips its client made (counted in the client); `{ stop }`
 * ends it. Usage counts are written before and after each run, outside its time (the run's own are written
 * during it, every 10,000 keys, as in production).
 */
export async function missesVariant({ url, namespace, file, line: LINE, keys, cache, concurrency, usage, batchReads }) {
  const admin = new Redis(url);
  const client = new Redis(url);
  const till = createTill({
    store: new RedisStore({ client, namespace, batchReads }),
    logger: silentLogger,
    ...(usage === 0 && { usage: false }),
    // Trusted for the whole run: a miss is a key the cache does not hold, never one it let expire.
    cache: { max: cache, ttl: 3_600_000 },
  });
  // The whole key file in one buffer, outside the JS heap (no string per key for the collector to
  // keep): a read of the file per verification (a pread each) took about a quarter of the process's CPU
  // per verification, in both variants alike, and was the benchmark's own cost, not Till's.
  const all = readFileSync(file);
  const drive = async (count) => {
    let done = 0;
    let invalid = 0;
    const worker = async () => {
      while (done < count) {
        done++;
        const at = Math.floor(Math.random() * keys) * LINE;
        if (!(await till.verify(all.toString('latin1', at, all.indexOf(0x20, at)))).valid) invalid++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return invalid;
  };
  const run = async (count) => {
    await till.usage?.flush();
    const stats = till.verifier.stats;
    const missesBefore = stats.misses;
    const before = await commandsExecuted(admin);
    const redisCpuBefore = await redisCpu(admin);
    const trips = countRoundTrips(client);
    // CPU time, beside the time: on a shared machine a process waits for a core, and verifications/s fall
    // with it; the CPU a verification costs this process (and a miss costs Redis) moves far less.
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const invalid = await drive(count);
    const seconds = elapsed(t0);
    const cpu = process.cpuUsage(cpu0);
    trips.stop();
    const redisCpuUsed = (await redisCpu(admin)) - redisCpuBefore;
    const missed = stats.misses - missesBefore;
    const after = await commandsExecuted(admin);
    await till.usage?.flush();
    return {
      perSecond: count / seconds,
      misses: missed,
      invalid,
      getsPerMiss: (after.get - before.get) / missed,
      commandsPerMiss: (after.all - before.all) / missed,
      roundTripsPerMiss: trips.count / missed,
      cpuPerVerification: (cpu.user + cpu.system) / count,
      redisCpuPerMiss: redisCpuUsed / missed,
    };
  };
  // Warm-up: the cache full (uniform picks: a little more than `cache` verifications fill it).
  await drive(Math.ceil(cache * 1.2));
  await till.usage?.flush();
  process.send({ ready: true });
  for await (const [order] of on(process, 'message')) {
    if (order.stop) break;
    process.send(await run(order.run));
  }
  await till.close();
  client.disconnect();
  admin.disconnect();
}

/** A variant's process (bench/child.mjs running missesVariant): `run(count)` asks it for one run, `stop()` ends it. */
async function startVariant(args) {
  const child = fork(fileURLToPath(new URL('./child.mjs', import.meta.url)), ['memory', 'missesVariant', JSON.stringify(args)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`[bench] memory missesVariant exited with code ${code}`)))),
  );
  // Rejects once the child has gone (handled here, so that a normal exit at the end is no unhandled rejection).
  const gone = exited.then(() => {
    throw new Error('[bench] memory missesVariant ended before it answered');
  });
  gone.catch(() => {});
  const answer = () => Promise.race([once(child, 'message').then(([message]) => message), gone]);
  await answer();
  return {
    run: (count) => {
      child.send({ run: count });
      return answer();
    },
    stop: () => {
      child.send({ stop: true });
      return exited;
    },
  };
}

/** The misses measure's settings (BENCH_KEYS and BENCH_CACHE are the memory measure's). */
const missesConfigFromEnv = () =>
  settings({
    rounds: { env: 'BENCH_MISS_ROUNDS', value: 10, quick: 2, integer: true },
    perRound: { env: 'BENCH_MISS_VERIFICATIONS', value: 40_000, quick: 5_000, integer: true },
    // 0: usage tracking off in both variants (the reads alone, without the usage writes that share their connection).
    usage: { env: 'BENCH_MISS_USAGE', value: 1, integer: true, min: -1 },
  });

/**
 * Misses: verifications/s under the uniform load, the store's reads batched per turn (default) against
 * each read sent alone (`batchReads: false`), in the same run, interleaved; commands and round trips per miss.
 */
export async function measureMisses({ url, namespace, file, line, config }) {
  const missConfig = missesConfigFromEnv();
  const args = { url, namespace, file, line, keys: config.keys, cache: config.cache, concurrency: config.concurrency, usage: missConfig.usage };
  // One after the other: each warms its cache alone.
  const variants = { batched: await startVariant({ ...args, batchReads: true }), alone: await startVariant({ ...args, batchReads: false }) };
  const runs = { batched: [], alone: [] };
  try {
    for (let round = 0; round < missConfig.rounds; round++) {
      for (const name of round % 2 === 0 ? ['batched', 'alone'] : ['alone', 'batched']) {
        runs[name].push({ round, ...(await variants[name].run(missConfig.perRound)) });
      }
    }
  } finally {
    await Promise.all(Object.values(variants).map((v) => v.stop()));
  }
  const per = (name, pick) => median(runs[name].map(pick));
  const ratio = compare(runs.batched, runs.alone, { atLeast: MISSES_TARGET }, (r) => r.perSecond);
  console.log('');
  console.log(
    `Misses: ${int(config.keys)} keys, uniform, cache of ${int(config.cache)} (full), ${config.concurrency} verifications at a time, ` +
      `${missConfig.rounds} rounds of ${int(missConfig.perRound)} per variant, interleaved (median over rounds), usage tracking ${missConfig.usage === 0 ? 'off' : 'on'}`,
  );
  const rows = [
    [
      'store reads',
      'verified/s',
      'hit rate',
      'Redis GET/MGET per miss',
      'Redis commands per miss',
      'round trips per miss',
      'process CPU µs per verification',
      'Redis CPU µs per miss',
    ],
  ];
  for (const [name, label] of [
    ['alone', 'one command each (batchReads: false)'],
    ['batched', 'batched per turn (default)'],
  ]) {
    const cell = (pick) => fixed(per(name, pick), 3);
    rows.push([
      label,
      int(per(name, (r) => r.perSecond)),
      `${fixed(per(name, (r) => 1 - r.misses / missConfig.perRound) * 100, 1)} %`,
      cell((r) => r.getsPerMiss),
      cell((r) => r.commandsPerMiss),
      cell((r) => r.roundTripsPerMiss),
      fixed(
        per(name, (r) => r.cpuPerVerification),
        1,
      ),
      fixed(
        per(name, (r) => r.redisCpuPerMiss),
        1,
      ),
    ]);
  }
  console.log(table(rows));
  if (missConfig.usage !== 0) console.log('  (commands and round trips: all of the run, usage counts written every 10,000 keys included)');
  const invalid = [...runs.batched, ...runs.alone].reduce((n, r) => n + r.invalid, 0);
  if (invalid > 0) console.log(`  ${int(invalid)} verifications failed: every key sent was valid, so this is a defect`);
  console.log(`  ratio by round: ${ratio.roundRatios.map((x) => fixed(x, 3)).join(' ')}`);
  // What batching saves the verifying process in CPU: the ratio verifications/s could reach were the process
  // bound by its CPU alone, with a core to itself.
  const cpuRatio = compare(runs.alone, runs.batched, null, (r) => r.cpuPerVerification);
  console.log(
    `  process CPU per verification, alone over batched: median ${fixed(cpuRatio.ratio, 3)} (middle half ${cpuRatio.quartiles.map((x) => fixed(x, 3)).join('-')}); ` +
      `by round: ${cpuRatio.roundRatios.map((x) => fixed(x, 3)).join(' ')}`,
  );
  console.log(
    `  target: batched >= ${MISSES_TARGET} x alone: median ${fixed(ratio.ratio, 3)} (middle half ${ratio.quartiles.map((x) => fixed(x, 3)).join('-')}), ` +
      `${verdictText(ratio.decision)}${invalid > 0 ? ' (verifications failed: FAIL)' : ''}`,
  );
  console.log(
    `  saved to ${save('bench/results/memory-misses.json', { date: new Date().toISOString(), machine: machine(), config: { ...config, ...missConfig }, ratio, cpuRatio, runs })}`,
  );
}
