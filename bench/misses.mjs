// The misses measure of `pnpm bench memory`: verifications/s under a uniform load over the keys memory.mjs
// loaded, with a full cache, so most verifications miss; the store's reads batched per turn of the event
// loop (RedisStore's default) against each read sent alone (`batchReads: false`), in the same run, in
// interleaved rounds. Also: Redis commands per miss (INFO commandstats deltas) and round trips per miss
// (counted in each variant's client). Target: batched >= 2 x alone. Writes bench/results/memory-misses.json.
import { closeSync, openSync, readSync } from 'node:fs';
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { countRoundTrips } from '@till/testkit/round-trips';
import { fixed, int, machine, runChild, save, settings, table } from './harness.mjs';
import { compare, median, verdictText } from './stats.mjs';

const MISSES_TARGET = 2; // batched reads over reads sent alone, verifications/s
const elapsed = (t0) => (performance.now() - t0) / 1000;

/** Commands Redis has executed: GETs, and all of them (the INFO that asks left out), from INFO commandstats. */
async function commandsExecuted(admin) {
  const executed = { get: 0, all: 0 };
  for (const [, name, n] of String(await admin.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name === 'get') executed.get = Number(n);
    if (name !== 'info') executed.all += Number(n);
  }
  return executed;
}

/**
 * Misses, batched or not: two Tills in this one process, each with a full cache of its own and a RedisStore
 * on a client of its own, `batchReads` on and off. After a warm-up that fills both caches, rounds of
 * `perRound` uniform verifications each, the order of the two alternating from round to round. Each run:
 * verifications/s, misses, the Redis commands it made execute (INFO commandstats, read around it: the other
 * Till is idle meanwhile) and the round trips its client made (counted in the client). Usage counts are
 * written before each run (the run's own are written during it, every 10,000 keys, as in production).
 */
export async function misses({ url, namespace, file, line: LINE, keys, cache, rounds, perRound, concurrency, usage }) {
  const admin = new Redis(url);
  const variants = [true, false].map((batchReads) => {
    const client = new Redis(url);
    const till = createTill({
      store: new RedisStore({ client, namespace, batchReads }),
      logger: silentLogger,
      ...(usage === 0 && { usage: false }),
      // Trusted for the whole run: a miss is a key the cache does not hold, never one it let expire.
      cache: { max: cache, ttl: 3_600_000 },
    });
    return { batchReads, client, till, runs: [] };
  });
  const fd = openSync(file, 'r');
  const drive = async (till, count) => {
    let done = 0;
    let invalid = 0;
    const worker = async () => {
      const line = Buffer.alloc(LINE);
      while (done < count) {
        done++;
        readSync(fd, line, 0, LINE, Math.floor(Math.random() * keys) * LINE);
        if (!(await till.verify(line.toString('latin1', 0, line.indexOf(0x20)))).valid) invalid++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return invalid;
  };
  // Warm-up: each cache full (uniform picks: a little more than `cache` verifications fill it).
  for (const v of variants) await drive(v.till, Math.ceil(cache * 1.2));
  for (let round = 0; round < rounds; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
      for (const each of variants) await each.till.usage?.flush();
      const stats = v.till.verifier.stats;
      const missesBefore = stats.misses;
      const before = await commandsExecuted(admin);
      const trips = countRoundTrips(v.client);
      const t0 = performance.now();
      const invalid = await drive(v.till, perRound);
      const seconds = elapsed(t0);
      trips.stop();
      const missed = stats.misses - missesBefore;
      const after = await commandsExecuted(admin);
      v.runs.push({
        round,
        perSecond: perRound / seconds,
        misses: missed,
        invalid,
        getsPerMiss: (after.get - before.get) / missed,
        commandsPerMiss: (after.all - before.all) / missed,
        roundTripsPerMiss: trips.count / missed,
      });
    }
  }
  closeSync(fd);
  for (const v of variants) {
    await v.till.close();
    v.client.disconnect();
  }
  admin.disconnect();
  return Object.fromEntries(variants.map((v) => [v.batchReads ? 'batched' : 'alone', v.runs]));
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
  const runs = await runChild('memory', 'misses', {
    url,
    namespace,
    file,
    line,
    keys: config.keys,
    cache: config.cache,
    concurrency: config.concurrency,
    ...missConfig,
  });
  const per = (name, pick) => median(runs[name].map(pick));
  const ratio = compare(runs.batched, runs.alone, { atLeast: MISSES_TARGET }, (r) => r.perSecond);
  console.log('');
  console.log(
    `Misses: ${int(config.keys)} keys, uniform, cache of ${int(config.cache)} (full), ${config.concurrency} verifications at a time, ` +
      `${missConfig.rounds} rounds of ${int(missConfig.perRound)} per variant, interleaved (median over rounds), usage tracking ${missConfig.usage === 0 ? 'off' : 'on'}`,
  );
  const rows = [['store reads', 'verified/s', 'hit rate', 'Redis GETs per miss', 'Redis commands per miss', 'round trips per miss']];
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
    ]);
  }
  console.log(table(rows));
  if (missConfig.usage !== 0) console.log('  (commands and round trips: all of the run, usage counts written every 10,000 keys included)');
  const invalid = [...runs.batched, ...runs.alone].reduce((n, r) => n + r.invalid, 0);
  if (invalid > 0) console.log(`  ${int(invalid)} verifications failed: every key sent was valid, so this is a defect`);
  console.log(`  ratio by round: ${ratio.roundRatios.map((x) => fixed(x, 3)).join(' ')}`);
  console.log(
    `  target: batched >= ${MISSES_TARGET} x alone: median ${fixed(ratio.ratio, 3)} (middle half ${ratio.quartiles.map((x) => fixed(x, 3)).join('-')}), ` +
      `${verdictText(ratio.decision)}${invalid > 0 ? ' (verifications failed: FAIL)' : ''}`,
  );
  console.log(
    `  saved to ${save('bench/results/memory-misses.json', { date: new Date().toISOString(), machine: machine(), config: { ...config, ...missConfig }, ratio, runs })}`,
  );
}
