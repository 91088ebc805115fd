// `pnpm bench limits`: what a per-key rate limit on Redis costs a hello-world Express 5 app (`GET /`
// answers `ok`), Till's against rate-limiter-flexible's, beside bare Express in the same rounds, in two
// scenarios (one busy key; a key per connection). Each server counts what its ioredis clients send, and
// Redis's INFO commandstats, read around each run, says what it executed. Targets: Till's requests/s >=
// rate-limiter-flexible's; at most one round trip per request for the charge; with a key per connection, Till's
// Redis CPU per request (the Redis process's, INFO cpu, as the target's own figures were read) at most half of
// rate-limiter-flexible's, with the script time commandstats counts beside it.
// Writes bench/results/limits.json. One file because its servers, its Redis accounting and its report read one
// set of figures.
import express from 'express';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
import {
  fixed,
  header,
  httpSettings,
  int,
  loadNote,
  machine,
  pairedRatio,
  runPaired,
  runRounds,
  save,
  serve as listen,
  settings,
  startServers,
  summarizeRounds,
  table,
} from './harness.mjs';
import { benchRedis, boundedRun, NEVER_REACHED, tillOnRedis } from './redis.mjs';
import { median, medianInterval, roundRatios, verdictText } from './stats.mjs';

const VARIANTS = [
  { id: 'bare', label: 'express (bare)' },
  // Till charges the limit in one Lua script call, shared by the requests of a key that arrive together.
  { id: 'till', label: 'Till apiKeyAuth + limits' },
  // Till authenticates, rate-limiter-flexible's RateLimiterRedis limits, as its README's Express middleware.
  { id: 'rlf', label: 'Till apiKeyAuth + rate-limiter-flexible' },
];
/** One busy key on every connection (its requests that arrive together share a call), then a key per connection (nothing shared). */
const SCENARIOS = [
  { label: 'one busy key', keys: () => 1 },
  { label: 'a key per connection', keys: (c) => c.connections },
];
/** Commands sent off the request path: cache refreshes (get) and usage batches (a MULTI/EXEC of hincrby, expire, zadd and a script). */
const BACKGROUND_COMMANDS = ['get', 'hincrby', 'expire', 'zadd', 'multi', 'exec'];
/** Lua script and function calls as Redis's commandstats name them: each limiter's whole charge is one of them. */
const SCRIPT_COMMANDS = ['eval', 'evalsha', 'fcall'];
/** Till's Redis CPU per request at most this times rate-limiter-flexible's, with a key per connection. */
const REDIS_CPU_TARGET = 0.5;

/**
 * Counts what this process's ioredis clients send, by wrapping Redis.prototype.sendCommand (every command
 * of every client goes through it, scripts too): a command sent alone is one round trip; the commands of a
 * pipeline or MULTI/EXEC, written together by exec(), are one round trip together.
 */
function countRedisTraffic() {
  const traffic = { roundTrips: 0, byName: {}, clients: new Set() };
  const batches = new WeakSet();
  const send = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function countedSendCommand(command, stream, ...rest) {
    traffic.clients.add(this);
    const batch = stream?.isPipeline ? stream : null;
    if (batch === null || !batches.has(batch)) traffic.roundTrips++;
    if (batch !== null) batches.add(batch);
    const sent = send.call(this, command, stream, ...rest);
    // Read after sending: a script command names itself eval or evalsha as it is written.
    traffic.byName[command.name] = (traffic.byName[command.name] ?? 0) + 1;
    return sent;
  };
  return traffic;
}

export async function serve({ variant, redisUrl, namespace, keys: keyCount }) {
  const traffic = countRedisTraffic();
  const closers = [];
  // bare Express holds keys too (in memory), so the load generator's requests are alike; it never reads them.
  const till = variant === 'bare' ? createTill({ logger: silentLogger }) : tillOnRedis(redisUrl, namespace, closers);
  const keys = [];
  for (let i = 0; i < keyCount; i++) keys.push((await till.keys.create({ name: `bench ${i}`, scopes: [] })).key);
  const app = express();
  if (variant === 'till') {
    app.use(apiKeyAuth({ till, bruteForce: false, limits: [{ name: 'api', limit: NEVER_REACHED, window: '1h' }] }));
  } else if (variant === 'rlf') {
    app.use(apiKeyAuth({ till, bruteForce: false }));
    const client = new Redis(redisUrl, { enableOfflineQueue: false });
    await new Promise((resolve, reject) => client.once('ready', resolve).once('error', reject));
    closers.push(async () => client.disconnect());
    const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: `${namespace}rlflx`, points: NEVER_REACHED, duration: 3600 });
    // With the headers Till sends, in its form, so both variants put the same bytes on the wire.
    app.use((req, res, next) => {
      limiter
        .consume(req.apiKey.id)
        .then((r) => {
          res.setHeader('ratelimit-policy', `"api";q=${NEVER_REACHED};w=3600`);
          res.setHeader('ratelimit', `"api";r=${r.remainingPoints};t=${Math.ceil(r.msBeforeNext / 1000)}`);
          next();
        })
        .catch(() => res.status(429).send('Too Many Requests'));
    });
  }
  app.get('/', (_req, res) => void res.send('ok'));
  listen(app, keys, {
    close: () => Promise.allSettled(closers.map((close) => close())),
    // Once every command sent has been answered (at most 1 s), so the INFO read next has seen them all.
    sample: async () => {
      for (let i = 0; i < 200 && [...traffic.clients].some((c) => c.commandQueue.length > 0); i++) await new Promise((r) => setTimeout(r, 5));
      return { redis: { roundTrips: traffic.roundTrips, byName: { ...traffic.byName } } };
    },
  });
}

/** Redis's own CPU time (microseconds) and its per-command call counts and time, from one INFO. */
async function redisInfo(admin) {
  const info = { cpu: 0, commands: {} };
  for (const line of String(await admin.info('cpu', 'commandstats')).split(/\r?\n/)) {
    const cpu = /^used_cpu_(?:sys|user):([\d.]+)$/.exec(line);
    if (cpu) info.cpu += Number(cpu[1]) * 1e6;
    const stat = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (stat && stat[1] !== 'info') info.commands[stat[1]] = { calls: Number(stat[2]), usec: Number(stat[3]) };
  }
  return info;
}

/** after - before of two { name: count } tables, without the names that did not move. */
function delta(after, before, pick = (x) => x) {
  const out = {};
  for (const name of Object.keys(after)) {
    const n = pick(after[name]) - (before[name] === undefined ? 0 : pick(before[name]));
    if (n !== 0) out[name] = n;
  }
  return out;
}
const sum = (t) => Object.values(t).reduce((s, n) => s + n, 0);
const add = (tables) => {
  const total = {};
  for (const t of tables) for (const [k, n] of Object.entries(t)) total[k] = (total[k] ?? 0) + n;
  return total;
};
const scriptsIn = (t) => SCRIPT_COMMANDS.reduce((s, name) => s + (t[name] ?? 0), 0);
const round3 = (n) => fixed(n, 3);

/** A run's Redis figures from the samples taken around it: server-side counts, and Redis INFO. */
function withRedis(run) {
  const { before, after } = run.samples;
  const redisUs = after.extra.cpu - before.extra.cpu;
  const executed = delta(after.extra.commands, before.extra.commands, (c) => c.calls);
  return {
    ...run,
    redisCpuPerRequestUs: redisUs / run.requests,
    roundTrips: after.served.redis.roundTrips - before.served.redis.roundTrips,
    sent: delta(after.served.redis.byName, before.served.redis.byName),
    executed,
    executedUsec: delta(after.extra.commands, before.extra.commands, (c) => c.usec),
    scriptUsec: scriptsIn(delta(after.extra.commands, before.extra.commands, (c) => c.usec)),
    // Neither the server, Redis nor the load generator: other programs on this machine.
    otherCores: run.busyUs === null ? null : Math.max(0, (run.busyUs - run.serverUs - redisUs - run.loadUs) / run.elapsedUs),
  };
}

/**
 * What the server's clients sent is summed over every run (its own traffic, exactly); what Redis executed is
 * the median over runs of each run's figure per request, since INFO counts every client of a shared Redis.
 */
function redisSummary(v) {
  const { runs } = v;
  const requests = sum(runs.map((r) => r.requests));
  const sent = add(runs.map((r) => r.sent));
  const executed = add(runs.map((r) => r.executed));
  const roundTrips = sum(runs.map((r) => r.roundTrips));
  return {
    ...v,
    redisCpuPerRequestUs: median(runs.map((r) => r.redisCpuPerRequestUs)),
    requests,
    roundTrips,
    roundTripsPerRequest: roundTrips / requests,
    sentPerRequest: Object.fromEntries(Object.entries(sent).map(([name, n]) => [name, n / requests])),
    scriptsSent: scriptsIn(sent),
    executedPerRequest: Object.fromEntries(Object.keys(executed).map((name) => [name, median(runs.map((r) => (r.executed[name] ?? 0) / r.requests))])),
    usecPerRequest: Object.fromEntries(Object.keys(executed).map((name) => [name, median(runs.map((r) => (r.executedUsec[name] ?? 0) / r.requests))])),
    commandsExecutedPerRequest: median(runs.map((r) => sum(r.executed) / r.requests)),
    scriptUsPerRequest: median(runs.map((r) => r.scriptUsec / r.requests)),
    scriptsExecuted: scriptsIn(executed),
    // Runs in which Redis ran exactly the script calls this server sent: no other client's scripts.
    cleanRuns: runs.filter((r) => scriptsIn(r.sent) === scriptsIn(r.executed)).length,
  };
}

/**
 * Round by round, a's figure per request over b's: the sum of `value` over the round's runs of each, per
 * request served in them.
 */
function perRequestRatios(a, b, value) {
  const perRequest = (runs) => {
    const totals = [];
    for (const r of runs) {
      const t = (totals[r.round] ??= { value: 0, requests: 0 });
      t.value += value(r);
      t.requests += r.requests;
    }
    return totals.map((t) => t.value / t.requests);
  };
  const y = perRequest(b);
  return perRequest(a).map((x, i) => x / y[i]);
}

/** Whether round ratios stay at most `target`, judged on the 90% interval of their median as verdict() in stats.mjs judges "at least". */
function atMost(values, target) {
  const interval = medianInterval(values);
  if (interval === null) return { verdict: 'NOT DECIDED', interval, why: `${values.length} rounds are too few for a 90% interval` };
  return { verdict: interval.high <= target ? 'PASS' : interval.low > target ? 'FAIL' : 'NOT DECIDED', interval };
}

function targetsOf(till, rlf, paired, decideRedisCpu) {
  const backToBack = median(roundRatios(till.runs, rlf.runs));
  // Redis CPU: the Redis process's (INFO cpu: the charge's scripts, and reading each request and writing its
  // reply), the figure the target was set from (35 against 57 us, 0.61, when it was set); and, beside it, the
  // time INFO commandstats counts inside the script calls, which is wall time: a long call also carries the
  // time Redis waits for a core meanwhile, on a machine it shares.
  const scriptRatios = perRequestRatios(till.runs, rlf.runs, (r) => r.scriptUsec);
  const processRatios = perRequestRatios(till.runs, rlf.runs, (r) => r.redisCpuPerRequestUs * r.requests);
  const side = paired ? pairedRatio(paired, 'till', 'rlf') : null;
  // A charge is one script call at most; anything else must be background work, off every request: the
  // cache reading a key's record again (GET, every 30 s per key) and usage batches (every 10 s per key).
  const scripts = scriptsIn(till.sentPerRequest);
  const others = Object.entries(till.sentPerRequest).filter(([name]) => !SCRIPT_COMMANDS.includes(name));
  return {
    // Side by side is the steadier figure where there is one (back-to-back rounds drift by 10-30% here).
    throughput: { ratio: backToBack, paired: side, till: till.rps, rlf: rlf.rps, pass: (side ?? backToBack) >= 1 },
    redisCpu: {
      decided: decideRedisCpu,
      scripts: { till: till.scriptUsPerRequest, rlf: rlf.scriptUsPerRequest, ratio: median(scriptRatios), roundRatios: scriptRatios },
      process: { till: till.redisCpuPerRequestUs, rlf: rlf.redisCpuPerRequestUs, ratio: median(processRatios), roundRatios: processRatios },
      decision: atMost(processRatios, REDIS_CPU_TARGET),
    },
    roundTrips: {
      perRequest: till.roundTripsPerRequest,
      scripts,
      refreshes: sum(Object.fromEntries(others)),
      pass: Number(round3(scripts)) <= 1 && others.every(([name]) => BACKGROUND_COMMANDS.includes(name)),
    },
  };
}

function breakdown(perRequest) {
  const entries = Object.entries(perRequest)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([name, n]) => `${name} ${n < 0.001 ? n.toExponential(1) : round3(n)}`).join(', ');
}

function print({ scenario, variants, paired, targets }, config, log) {
  log('');
  log(`Results, ${scenario} (median of ${config.rounds} rounds; ratio = median over rounds of requests/s over bare Express's in the same round)`);
  log(
    table([
      ['variant', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'server CPU us/req', 'Redis CPU us/req', 'round trips/req', 'Redis cmds/req'],
      ...variants.map((v) => [
        v.label,
        int(v.rps),
        v.p50,
        v.p99,
        round3(v.ratio),
        fixed(v.serverCpuPerRequestUs, 1),
        fixed(v.redisCpuPerRequestUs, 1),
        round3(v.roundTripsPerRequest),
        fixed(v.commandsExecutedPerRequest, 2),
      ]),
    ]),
  );
  log(
    '  ratio by round: ' +
      variants
        .slice(1)
        .map((v) => `${v.id} ${v.roundRatios.map(round3).join(' ')}`)
        .join('; '),
  );
  if (paired)
    log(
      '  side by side (median of rounds, x bare): ' +
        variants
          .slice(1)
          .map((v) => `${v.label} ${round3(paired[v.id].ratio)}`)
          .join(', '),
    );
  const note = loadNote(variants);
  if (note) log(note);
  log('');
  log('Redis traffic per request, every measured run summed');
  log("  sent, counted in each server's ioredis clients (a command alone = 1 round trip; a pipeline or MULTI/EXEC = 1):");
  for (const v of variants)
    log(
      `    ${v.label.padEnd(40)} ${round3(v.roundTripsPerRequest)} round trips (${int(v.roundTrips)} for ${int(v.requests)} requests): ${breakdown(v.sentPerRequest)}`,
    );
  log('  executed, from Redis INFO commandstats deltas around each run, median over runs (commands a Lua script runs count too):');
  for (const v of variants) {
    log(
      `    ${v.label.padEnd(40)} ${fixed(v.commandsExecutedPerRequest, 3)} commands: ${breakdown(v.executedPerRequest)}` +
        (v.scriptsExecuted > 0 ? `; ${fixed(v.scriptUsPerRequest, 1)} us of script time` : ''),
    );
  }
  log("  Redis CPU, usec INFO commandstats counts per request, median over runs (a script's time includes the commands it runs, also listed):");
  for (const v of variants) log(`    ${v.label.padEnd(40)} ${breakdown(v.usecPerRequest)}`);
  log(
    '  cross-check, script calls sent vs run by Redis, all runs: ' +
      variants.map((v) => `${v.id} ${int(v.scriptsSent)} vs ${int(v.scriptsExecuted)} (equal in ${v.cleanRuns} of ${v.runs.length} runs)`).join(', '),
  );
  if (variants.some((v) => v.cleanRuns < v.runs.length)) log('    where they differ, another client used this Redis during the run (INFO counts every client)');
  const [, till, rlf] = variants;
  const t = targets.throughput;
  log('');
  log('Targets');
  log(
    "  Till limits requests/s >= rate-limiter-flexible's: " +
      (t.paired === null ? '' : `side by side ${round3(t.paired)} x; `) +
      `back to back ${round3(t.ratio)} x (median over rounds of Till/RLF; ${int(t.till)} vs ${int(t.rlf)} req/s; ` +
      `server CPU ${fixed(till.serverCpuPerRequestUs, 1)} vs ${fixed(rlf.serverCpuPerRequestUs, 1)} us/req) -> ${t.pass ? 'PASS' : 'FAIL'}`,
  );
  const cpu = targets.redisCpu;
  const byRound = (ratios) => ratios.map(round3).join(' ');
  log(
    `  Till Redis CPU per request <= ${REDIS_CPU_TARGET} x rate-limiter-flexible's (the Redis process's CPU, INFO cpu: scripts, reading requests, writing replies): ` +
      `${fixed(cpu.process.till, 1)} vs ${fixed(cpu.process.rlf, 1)} us, median over rounds of Till/RLF ${round3(cpu.process.ratio)} (by round ${byRound(cpu.process.roundRatios)}), ` +
      (cpu.decided ? verdictText(cpu.decision) : 'decided with a key per connection'),
  );
  log(
    `    beside it, the time inside the script calls (INFO commandstats usec, wall time: a long call also counts time Redis waits for a core): ` +
      `${fixed(cpu.scripts.till, 2)} vs ${fixed(cpu.scripts.rlf, 2)} us, median over rounds of Till/RLF ${round3(cpu.scripts.ratio)} (by round ${byRound(cpu.scripts.roundRatios)})`,
  );
  const rt = targets.roundTrips;
  log(
    `  Till charge round trips per request <= 1: ${round3(rt.scripts)} script calls per request, plus ${fixed(rt.refreshes, 4)} background commands ` +
      `(cache refreshes every 30 s, usage batches every 10 s, per key); ${round3(rt.perRequest)} round trips per request in all -> ${rt.pass ? 'PASS' : 'FAIL'}`,
  );
}

export async function main() {
  const log = console.log;
  const config = {
    // 10 rounds: the Redis CPU ratio moves by about a quarter between rounds here; 6 (the fewest with a
    // 90% interval) left an interval of 0.484-0.617 around a median of 0.549.
    ...httpSettings({ rounds: { value: 10 }, pairedRounds: { value: 4 } }),
    ...settings({ timeout: { env: 'BENCH_LIMITS_TIMEOUT', value: 600 } }),
  };
  const m = machine();
  const { redis, namespace, admin, version } = await benchRedis('limits');
  log(header('Till limits benchmark', m));
  log(`  Redis ${version} at ${redis.host}, key namespace ${namespace} (deleted afterwards); limit ${int(NEVER_REACHED)} requests per hour per key`);
  log(
    `  GET / on 127.0.0.1, ${config.connections} connections, ${SCENARIOS.length} scenarios x ${config.rounds} rounds x ${VARIANTS.length} variants x 2 (in a random order, then in reverse) x ` +
      `(${config.warmup} s warm-up + ${config.duration} s)` +
      (config.pairedRounds > 0 ? `, then ${config.pairedRounds} side-by-side rounds` : '') +
      (config.pin ? '; load on CPU 0, servers on CPU 1, Redis where the scheduler puts it' : ''),
  );
  let stop = async () => {};
  const { cleanup, deadline } = boundedRun({
    name: 'bench limits',
    envName: 'BENCH_LIMITS_TIMEOUT',
    seconds: config.timeout,
    redis,
    admin,
    namespace,
    stop: () => stop(),
  });
  try {
    const scenarios = [];
    for (const scenario of SCENARIOS) {
      const keys = scenario.keys(config);
      log('');
      log(`Scenario: ${scenario.label} (${keys} ${keys === 1 ? 'key' : 'keys'}, ${config.connections} connections)`);
      const started = await startServers('limits', VARIANTS, config, { redisUrl: redis.url, namespace, keys });
      stop = started.stop;
      const runs = await runRounds(started.servers, VARIANTS, config, log, { refresh: started.refresh, extra: () => redisInfo(admin) });
      for (const id of Object.keys(runs)) runs[id] = runs[id].map(withRedis);
      const variants = summarizeRounds(VARIANTS, runs).map(redisSummary);
      const paired = await runPaired(started.servers, VARIANTS, config, log, started.refresh);
      await started.stop();
      const result = { scenario: scenario.label, keys, variants, paired, targets: targetsOf(variants[1], variants[2], paired, keys > 1) };
      print(result, config, log);
      scenarios.push(result);
    }
    const { found, left } = await cleanup();
    log('');
    log(`Redis: ${found ?? '?'} keys under ${namespace} deleted, ${left ?? '?'} left`);
    const { profileDir, ...shown } = config;
    log(
      `saved to ${save('bench/results/limits.json', { date: new Date().toISOString(), machine: m, redis: { version, host: redis.host, namespace }, config: shown, scenarios })}`,
    );
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}
