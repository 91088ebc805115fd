// `pnpm bench:limits`: what a per-key rate limit on Redis costs a hello-world Express 5 app, Till's against
// rate-limiter-flexible's, beside bare Express in the same run. Three variants, each served by its own
// child process (limits-server.mjs): bare Express; apiKeyAuth() with a Till limit (charged in one Lua
// script per request); apiKeyAuth() without limits plus rate-limiter-flexible's RateLimiterRedis.
// autocannon loads one variant at a time, order rotated every round, each measured run after a warm-up;
// then, side by side, all of them at once. Every server counts what its ioredis clients send (round trips
// per request), and Redis's INFO commandstats, read around each run, says what it executed.
// Targets print PASS or FAIL; the exit code is 0 either way. Writes bench/results/limits.json.
// Quick run: BENCH_DURATION=2 BENCH_ROUNDS=2 BENCH_PAIRED_ROUNDS=2 pnpm bench:limits
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { httpConfigFromEnv } from './http.mjs';
import { envNumber, fixed, int, machineBusy, machineInfo, median, runHeader, sourceState, table } from './stats.mjs';
import { benchRedis, boundedRun } from './redis-run.mjs';

const VARIANTS = [
  { id: 'bare', label: 'express (bare)' },
  { id: 'till', label: 'Till apiKeyAuth + limits' },
  { id: 'rlf', label: 'Till apiKeyAuth + rate-limiter-flexible' },
];
/**
 * The load: one busy key on every connection (requests of one key that arrive together share a Redis
 * call in Till), then a key per connection (each connection has one request in flight, so nothing is
 * shared: every request makes its own call).
 */
const SCENARIOS = [
  { label: 'one busy key', keys: () => 1 },
  { label: 'a key per connection', keys: (c) => c.connections },
];
const SERVER = fileURLToPath(new URL('./limits-server.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Commands sent off the request path: cache refreshes (get) and usage batches (hincrby, expire, zadd). */
const BACKGROUND_COMMANDS = ['get', 'hincrby', 'expire', 'zadd'];
/** Lua script calls as Redis's commandstats name them. */
const SCRIPT_COMMANDS = ['eval', 'evalsha'];

// The same settings as `pnpm bench` (BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_PAIRED_ROUNDS,
// BENCH_CONNECTIONS, BENCH_PIN, BENCH_PROFILE) with fewer rounds by default, so that a run and its build
// stay under about 2 minutes, and a bound on the whole run (BENCH_LIMITS_TIMEOUT).
function configFromEnv() {
  // BENCH_PAIRED_ROUNDS is read here, not by httpConfigFromEnv(), whose check refuses 0 (the value that
  // turns the phase off): hidden from it for the call.
  const paired = process.env.BENCH_PAIRED_ROUNDS;
  delete process.env.BENCH_PAIRED_ROUNDS;
  let http;
  try {
    http = httpConfigFromEnv();
  } finally {
    if (paired !== undefined) process.env.BENCH_PAIRED_ROUNDS = paired;
  }
  return {
    ...http,
    rounds: envNumber('BENCH_ROUNDS', 4, { integer: true }),
    pairedRounds: envNumber('BENCH_PAIRED_ROUNDS', 4, { integer: true, min: -1 }),
    timeout: envNumber('BENCH_LIMITS_TIMEOUT', 360),
  };
}
const config = configFromEnv();

const children = new Set();
const round3 = (n) => fixed(n, 3);

/** Pins every thread of a process to one CPU (Linux, taskset). */
const pinTo = (pid, cpu) => execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });

/** Sends `message` to a server and resolves with its next message. */
function ask(child, message) {
  return new Promise((resolve) => {
    child.once('message', resolve);
    child.send(message);
  });
}

function start(variant, redisUrl, namespace, keyCount) {
  const execArgv = config.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${config.profileDir}`, `--cpu-prof-name=limits-${variant.id}-${keyCount}.cpuprofile`] : [];
  const child = fork(SERVER, [variant.id, redisUrl, namespace, String(keyCount)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  const listening = new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`[bench] the ${variant.id} server exited with code ${code} before listening`)));
  });
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`[bench] the ${variant.id} server did not listen within 15 s`)), 15_000);
  });
  return Promise.race([listening, late])
    .finally(() => clearTimeout(timer))
    .then(({ port, keys }) => {
      if (config.pin) pinTo(child.pid, 1);
      // The keys stay here and in request headers: never printed, never saved.
      return { ...variant, child, url: `http://127.0.0.1:${port}/`, keys };
    });
}

async function stop(child) {
  if (child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((resolve) => child.once('exit', resolve));
    if (child.connected) child.disconnect();
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(kill);
  }
  children.delete(child);
}

/**
 * autocannon on one server, each connection sending one of the server's keys (round robin); any
 * answer but 2xx, error or timeout ends the benchmark.
 */
async function load(server, seconds) {
  let next = 0;
  const setupClient = (client) => client.setHeaders({ authorization: `Bearer ${server.keys[next++ % server.keys.length]}` });
  const result = await autocannon({ url: server.url, setupClient, connections: config.connections, pipelining: config.pipelining, duration: seconds });
  const bad = result.non2xx + result.errors + result.timeouts;
  if (bad > 0) throw new Error(`[bench] ${server.label}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`);
  return result;
}

/** Redis's own CPU time (microseconds) and its per-command call counts and time, from one INFO. */
async function redisInfo(admin) {
  const info = { cpu: 0, commands: {} };
  for (const line of String(await admin.info('cpu', 'commandstats')).split(/\r?\n/)) {
    const cpu = /^used_cpu_(?:sys|user):([\d.]+)$/.exec(line);
    if (cpu) info.cpu += Number(cpu[1]) * 1e6;
    const stat = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (stat) info.commands[stat[1]] = { calls: Number(stat[2]), usec: Number(stat[3]) };
  }
  return info;
}

/** The server first (it answers once Redis has answered all it sent), then Redis. */
async function snapshot(server, admin) {
  const served = await ask(server.child, 'sample');
  const redis = await redisInfo(admin);
  return { served, redis, self: process.cpuUsage(), machine: machineBusy(), at: process.hrtime.bigint() };
}

/** after - before of two { name: count } tables, without the names that did not move. */
function countDelta(after, before, pick = (x) => x) {
  const delta = {};
  for (const name of Object.keys(after)) {
    const n = pick(after[name]) - (before[name] === undefined ? 0 : pick(before[name]));
    if (n !== 0) delta[name] = n;
  }
  return delta;
}

function addCounts(tables) {
  const total = {};
  for (const t of tables) for (const [name, n] of Object.entries(t)) total[name] = (total[name] ?? 0) + n;
  return total;
}

const sumOf = (t) => Object.values(t).reduce((s, n) => s + n, 0);
const scriptsIn = (t) => SCRIPT_COMMANDS.reduce((s, name) => s + (t[name] ?? 0), 0);

/** One measured run of one server, with what it cost: server CPU, Redis CPU, Redis traffic. */
async function measure(server, admin) {
  const before = await snapshot(server, admin);
  const r = await load(server, config.duration);
  const after = await snapshot(server, admin);
  const elapsedUs = Number(after.at - before.at) / 1000;
  const requests = after.served.requests - before.served.requests;
  const serverUs = after.served.cpu - before.served.cpu;
  const redisUs = after.redis.cpu - before.redis.cpu;
  const self = process.cpuUsage(before.self);
  const loadUs = self.user + self.system;
  // INFO is this process asking, not the server.
  const executed = countDelta(after.redis.commands, before.redis.commands, (c) => c.calls);
  delete executed.info;
  const executedUsec = countDelta(after.redis.commands, before.redis.commands, (c) => c.usec);
  delete executedUsec.info;
  const busy = before.machine === null || after.machine === null ? null : after.machine - before.machine;
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests,
    serverCpuPerRequestUs: serverUs / requests,
    redisCpuPerRequestUs: redisUs / requests,
    roundTrips: after.served.redis.roundTrips - before.served.redis.roundTrips,
    sent: countDelta(after.served.redis.byName, before.served.redis.byName),
    executed,
    scriptUsec: scriptsIn(executedUsec),
    cores: {
      server: serverUs / elapsedUs,
      redis: redisUs / elapsedUs,
      load: loadUs / elapsedUs,
      // CPU that neither the server, Redis nor the load generator used: other programs on this machine.
      other: busy === null ? null : Math.max(0, (busy - serverUs - redisUs - loadUs) / elapsedUs),
    },
  };
}

/**
 * Median figures over rounds. What the server's clients sent is summed over every measured run (it is
 * this benchmark's own traffic, exactly); what Redis executed is the median over runs of each run's
 * figure per request, since INFO counts every client of a shared Redis and a run may catch another's.
 */
function summarize(server, runs, bareRuns) {
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  const sent = addCounts(runs.map((r) => r.sent));
  const executed = addCounts(runs.map((r) => r.executed));
  const names = Object.keys(executed);
  const roundRatios = runs.map((r, i) => r.rps / bareRuns[i].rps);
  return {
    id: server.id,
    label: server.label,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    ratio: median(roundRatios),
    roundRatios,
    serverCpuPerRequestUs: median(runs.map((r) => r.serverCpuPerRequestUs)),
    redisCpuPerRequestUs: median(runs.map((r) => r.redisCpuPerRequestUs)),
    requests,
    roundTrips: runs.reduce((s, r) => s + r.roundTrips, 0),
    roundTripsPerRequest: runs.reduce((s, r) => s + r.roundTrips, 0) / requests,
    sentPerRequest: Object.fromEntries(Object.entries(sent).map(([name, n]) => [name, n / requests])),
    scriptsSent: scriptsIn(sent),
    executedPerRequest: Object.fromEntries(names.map((name) => [name, median(runs.map((r) => (r.executed[name] ?? 0) / r.requests))])),
    commandsExecutedPerRequest: median(runs.map((r) => sumOf(r.executed) / r.requests)),
    scriptUsPerRequest: median(runs.map((r) => r.scriptUsec / r.requests)),
    scriptsExecuted: scriptsIn(executed),
    // Runs in which Redis ran exactly the script calls this server sent: no other client's scripts.
    cleanRuns: runs.filter((r) => scriptsIn(r.sent) === scriptsIn(r.executed)).length,
    otherCores: runs.some((r) => r.cores.other === null) ? null : Math.max(...runs.map((r) => r.cores.other)),
    runs,
  };
}

/** All variants under load at once, the servers sharing one CPU: requests/s over bare's is the ratio of costs. */
async function sideBySide(servers, log) {
  log('');
  log(`Side by side: ${config.pairedRounds} rounds of ${config.duration} s, all variants loaded at once (${config.connections} connections each)`);
  await Promise.all(servers.map((s) => load(s, config.warmup)));
  const rounds = [];
  for (let i = 0; i < config.pairedRounds; i++) {
    const results = await Promise.all(servers.map((s) => load(s, config.duration)));
    const rps = Object.fromEntries(servers.map((s, j) => [s.id, results[j].requests.average]));
    rounds.push(rps);
    log(`  round ${i + 1}/${config.pairedRounds}  ` + servers.map((s) => `${s.id} ${int(rps[s.id])} (${round3(rps[s.id] / rps.bare)})`).join('   '));
  }
  return {
    ratios: Object.fromEntries(servers.map((s) => [s.id, median(rounds.map((r) => r[s.id] / r.bare))])),
    tillOverRlf: median(rounds.map((r) => r.till / r.rlf)),
    rounds,
  };
}

function breakdown(perRequest) {
  const entries = Object.entries(perRequest).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([name, n]) => `${name} ${n < 0.001 ? n.toExponential(1) : round3(n)}`).join(', ');
}

function print(result, log) {
  const { variants, paired, targets } = result;
  log('');
  log(`Results, ${result.scenario} (median of ${config.rounds} rounds; ratio = median over rounds of requests/s relative to bare Express in the same round)`);
  log(table([
    ['variant', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'server CPU us/req', 'Redis CPU us/req', 'round trips/req', 'Redis cmds/req'],
    ...variants.map((v) => [
      v.label, int(v.rps), v.p50, v.p99, round3(v.ratio), fixed(v.serverCpuPerRequestUs, 1), fixed(v.redisCpuPerRequestUs, 1),
      round3(v.roundTripsPerRequest), fixed(v.commandsExecutedPerRequest, 2),
    ]),
  ]));
  log('  ratio by round: ' + variants.slice(1).map((v) => `${v.id} ${v.roundRatios.map(round3).join(' ')}`).join('; '));
  if (paired) log('  side by side (median of rounds, x bare): ' + variants.slice(1).map((v) => `${v.label} ${round3(paired.ratios[v.id])}`).join(', '));
  const busiest = Math.max(...variants.map((v) => v.otherCores ?? 0));
  if (busiest > 0.15) log(`  note: other programs used up to ${fixed(busiest, 2)} cores during some runs: requests/s figures are noisy`);
  log('');
  log('Redis traffic per request, every measured run summed');
  log('  sent, counted in each server\'s ioredis clients (a command alone = 1 round trip; a pipeline or MULTI/EXEC = 1):');
  for (const v of variants) log(`    ${v.label.padEnd(40)} ${round3(v.roundTripsPerRequest)} round trips (${int(v.roundTrips)} for ${int(v.requests)} requests): ${breakdown(v.sentPerRequest)}`);
  log('  executed, from Redis INFO commandstats deltas around each run, median over runs (commands a Lua script runs count too):');
  for (const v of variants) {
    log(`    ${v.label.padEnd(40)} ${fixed(v.commandsExecutedPerRequest, 3)} commands: ${breakdown(v.executedPerRequest)}` +
      (v.scriptsExecuted > 0 ? `; ${fixed(v.scriptUsPerRequest, 1)} us of script time` : ''));
  }
  log(`  cross-check, script calls sent vs run by Redis, all runs: ` +
    variants.map((v) => `${v.id} ${int(v.scriptsSent)} vs ${int(v.scriptsExecuted)} (equal in ${v.cleanRuns} of ${v.runs.length} runs)`).join(', '));
  if (variants.some((v) => v.cleanRuns < v.runs.length)) log('    where they differ, another client used this Redis during the run (INFO counts every client)');
  log('');
  log('Targets');
  log(`  Till limits requests/s >= rate-limiter-flexible's: ` + (paired ? `side by side ${round3(paired.tillOverRlf)} x; ` : '') +
    `back to back ${round3(targets.throughput.ratio)} x (median over rounds of Till/RLF; ` +
    `${int(targets.throughput.till)} vs ${int(targets.throughput.rlf)} req/s` +
    `; server CPU ${fixed(variants[1].serverCpuPerRequestUs, 1)} vs ${fixed(variants[2].serverCpuPerRequestUs, 1)} us/req) -> ${targets.throughput.pass ? 'PASS' : 'FAIL'}`);
  log(`  Till charge round trips per request <= 1: ${round3(targets.roundTrips.scripts)} script calls per request, ` +
    `plus ${fixed(targets.roundTrips.refreshes, 4)} background commands (cache refreshes every 30 s, usage batches every 10 s, per key); ` +
    `${round3(targets.roundTrips.perRequest)} round trips per request in all -> ${targets.roundTrips.pass ? 'PASS' : 'FAIL'}`);
}

async function main(log = console.log) {
  const machine = machineInfo();
  const source = sourceState();
  const { redis, namespace, admin, version } = await benchRedis('limits');
  const seconds = SCENARIOS.length * (config.rounds * VARIANTS.length * (config.warmup + config.duration) + (config.pairedRounds > 0 ? config.warmup + config.pairedRounds * config.duration : 0));
  log(runHeader('Till limits benchmark', machine, source));
  log(`  Redis ${version} at ${redis.host}, key namespace ${namespace} (deleted afterwards); limit 1,000,000,000 requests per hour per key`);
  log(`  GET / on 127.0.0.1, ${config.connections} connections, pipelining ${config.pipelining}, ${SCENARIOS.length} scenarios x ${config.rounds} rounds x ${VARIANTS.length} variants x ` +
    `(${config.warmup} s warm-up + ${config.duration} s)` + (config.pairedRounds > 0 ? `, then ${config.pairedRounds} side-by-side rounds` : '') +
    `: about ${Math.ceil(seconds)} s` + (config.pin ? '; load on CPU 0, servers on CPU 1, Redis where the scheduler puts it' : ''));

  let servers = [];
  const { cleanup, deadline } = boundedRun({
    bench: 'bench:limits',
    envName: 'BENCH_LIMITS_TIMEOUT',
    seconds: config.timeout,
    admin,
    namespace,
    stop: async () => {
      await Promise.allSettled(servers.map((s) => stop(s.child)));
      for (const child of children) child.kill('SIGKILL');
    },
  });

  try {
    if (config.profileDir) mkdirSync(config.profileDir, { recursive: true });
    if (config.pin) pinTo(process.pid, 0);
    const scenarios = [];
    for (const scenario of SCENARIOS) {
      const keyCount = scenario.keys(config);
      log('');
      log(`Scenario: ${scenario.label} (${keyCount} ${keyCount === 1 ? 'key' : 'keys'}, ${config.connections} connections)`);
      servers = await Promise.all(VARIANTS.map((v) => start(v, redis.url, namespace, keyCount)));
      const runs = Object.fromEntries(VARIANTS.map((v) => [v.id, []]));
      for (let round = 0; round < config.rounds; round++) {
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + round) % servers.length];
          await load(server, config.warmup);
          const run = await measure(server, admin);
          runs[server.id].push(run);
          log(`  round ${round + 1}/${config.rounds}  ${server.label.padEnd(40)} ${int(run.rps).padStart(6)} req/s   p50 ${run.p50} ms   p99 ${run.p99} ms   ` +
            `server ${fixed(run.serverCpuPerRequestUs, 1)} us/req   Redis ${fixed(run.redisCpuPerRequestUs, 1)} us/req   ` +
            `${round3(run.roundTrips / run.requests)} round trips/req` + (run.cores.other === null ? '' : `   other load ${fixed(run.cores.other, 2)} cores`));
        }
      }
      const variants = servers.map((s) => summarize(s, runs[s.id], runs.bare));
      const paired = config.pairedRounds > 0 ? await sideBySide(servers, log) : null;
      const [, till, rlf] = variants;
      const targets = {
        throughput: { ratio: median(till.runs.map((r, i) => r.rps / rlf.runs[i].rps)), till: till.rps, rlf: rlf.rps },
        roundTrips: { perRequest: till.roundTripsPerRequest },
      };
      // Side by side is the steadier figure where there is one (back-to-back rounds drift by 10-30% here).
      targets.throughput.pass = (paired ? paired.tillOverRlf : targets.throughput.ratio) >= 1;
      // A request's charge is one script call at most (shared by the requests of a busy key that arrive
      // together); the only other traffic allowed is background work, off every request: the verifier's
      // cache reading a key's record again when its entry expires (GET, every 30 s per key and process)
      // and usage tracking's batches (HINCRBY, EXPIRE, ZADD, every 10 s per key and process).
      const scripts = scriptsIn(till.sentPerRequest);
      const others = Object.entries(till.sentPerRequest).filter(([name]) => !SCRIPT_COMMANDS.includes(name));
      targets.roundTrips.scripts = scripts;
      targets.roundTrips.refreshes = others.reduce((sum, [, n]) => sum + n, 0);
      targets.roundTrips.pass = Number(round3(scripts)) <= 1 && others.every(([name]) => BACKGROUND_COMMANDS.includes(name));
      const result = { scenario: scenario.label, keys: keyCount, variants, paired, targets };
      print(result, log);
      scenarios.push(result);
      await Promise.allSettled(servers.map((s) => stop(s.child)));
      servers = [];
    }

    const { found, left } = await cleanup();
    log('');
    log(`Redis: ${found ?? '?'} keys under ${namespace} deleted, ${left ?? '?'} left`);
    log(`saved to ${save({ date: new Date().toISOString(), machine, source, redis: { version, host: redis.host, namespace }, config, scenarios })}`);
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}

/** Writes bench/results/limits.json (git-ignored: the figures belong to one machine); returns its path. */
function save(record) {
  const file = fileURLToPath(new URL('./results/limits.json', import.meta.url));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(record, (name, value) => (name === 'profileDir' && value === null ? undefined : value), 2)}\n`);
  return relative(ROOT, file);
}

try {
  await main();
} catch (error) {
  process.exitCode = 1;
  console.error(error instanceof Error ? error.message : error);
}
