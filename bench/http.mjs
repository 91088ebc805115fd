// HTTP benchmark: autocannon against bare Express 5, Express with apiKeyAuth() on a cached key, and a
// hand-written Map check, each served by its own child process, alternating variants over several rounds.
// Run alone with `node bench/http.mjs` (after `pnpm build`), or through `pnpm bench`.
// Its machinery (startServer, runRounds, runPaired, summarizeRounds) also runs `pnpm bench:peers` (peers.mjs).
import { execFileSync, fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { mkdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { envNumber, fixed, int, machineBusy, median, quartiles, table, verdict, verdictText } from './stats.mjs';

export const VARIANTS = [
  { id: 'bare', label: 'express (bare)' },
  // The floor for any middleware: an empty one (Express's router pays for the layer).
  { id: 'noop', label: 'express + empty middleware' },
  { id: 'till', label: 'express + apiKeyAuth()' },
  { id: 'map', label: 'express + Map check' },
  // What usage tracking, audit events and outcome listeners (alerts, metrics) cost: all off, all on.
  { id: 'quiet', label: 'apiKeyAuth(), tracking off' },
  { id: 'observed', label: 'apiKeyAuth() + alerts, metrics' },
];

/** Seconds of load a fresh server gets before its first measured run (its hot path compiled). */
const FRESH_WARMUP = 1;

/** Tracking and listeners on keep at least this share of the requests/s with them off. */
export const OVERHEAD_TARGET = 0.95;

/** The target: Till's middleware keeps at least this share of bare Express's requests/s. */
export const HTTP_TARGET = 0.95;

/**
 * The variants of BENCH_VARIANTS (ids, comma-separated; bare always first), or all: a run of a few
 * variants affords the many rounds that one comparison needs to be decided on a noisy machine.
 */
export function variantsFromEnv() {
  const raw = process.env.BENCH_VARIANTS;
  if (raw === undefined || raw.trim() === '') return VARIANTS;
  const ids = raw.split(',').map((id) => id.trim()).filter((id) => id !== '');
  const unknown = ids.filter((id) => !VARIANTS.some((v) => v.id === id));
  if (unknown.length > 0) throw new Error(`[bench] BENCH_VARIANTS: unknown variant ${unknown.join(', ')}; known: ${VARIANTS.map((v) => v.id).join(', ')}`);
  return VARIANTS.filter((v) => v.id === 'bare' || ids.includes(v.id));
}

export function httpConfigFromEnv() {
  return {
    duration: envNumber('BENCH_DURATION', 2),
    warmup: envNumber('BENCH_WARMUP', 0.5),
    rounds: envNumber('BENCH_ROUNDS', 8, { integer: true }),
    // Rounds in which all variants are loaded at once on the servers' CPU (0 turns them off).
    pairedRounds: envNumber('BENCH_PAIRED_ROUNDS', 6, { integer: true, min: -1 }),
    connections: envNumber('BENCH_CONNECTIONS', 50, { integer: true }),
    pipelining: 1,
    // New server processes every round (0: one process per variant for the whole run).
    fresh: process.env.BENCH_FRESH !== '0',
    // Pin the load generator to CPU 0 and the servers to CPU 1 (Linux, taskset): less scheduler noise.
    pin: process.env.BENCH_PIN !== '0' && canPin(),
    // BENCH_PROFILE=1 runs each server under --cpu-prof and leaves the profiles here.
    profileDir: process.env.BENCH_PROFILE === '1' ? fileURLToPath(new URL('./results/profiles/', import.meta.url)) : null,
  };
}

function canPin() {
  if (process.platform !== 'linux' || availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins every thread of a process to one CPU. */
export function pin(pid, cpu) {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
}

/**
 * Forks one server (by default server.mjs with the variant as its argument), pins it to CPU 1 when
 * `pinned`, and resolves once it reports { port, key } over IPC; the key goes into the Authorization
 * header of every request and is never printed. Other benchmarks pass their own server `script` and
 * `args`; the server must speak server.mjs's protocol (answer 'cpu', exit on disconnect).
 */
export function startServer(variant, profileDir, pinned, { script = fileURLToPath(new URL('./server.mjs', import.meta.url)), args = [variant], profileName = variant } = {}) {
  const execArgv = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${profileName}.cpuprofile`] : [];
  const child = fork(script, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`[bench] the ${variant} server did not start within 10 s`)), 10_000);
    child.once('message', ({ port, key }) => {
      clearTimeout(timer);
      if (pinned) pin(child.pid, 1);
      resolve({ child, url: `http://127.0.0.1:${port}/`, headers: { authorization: `Bearer ${key}` } });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`[bench] the ${variant} server exited with code ${code} before listening`));
    });
  });
}

export async function stopServer({ child }) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Disconnecting lets the server exit normally (and write its CPU profile); kill it if it does not.
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** CPU time the server process has used so far, in microseconds. */
function serverCpu({ child }) {
  return new Promise((resolve) => {
    child.once('message', (message) => resolve(message.cpu));
    child.send('cpu');
  });
}

export function load(server, seconds, config) {
  return autocannon({
    url: server.url,
    headers: server.headers,
    connections: config.connections,
    pipelining: config.pipelining,
    duration: seconds,
  });
}

/**
 * Side by side: every variant under load at the same time, all servers sharing one CPU. The
 * scheduler gives each an equal share, so each one's requests/s over bare's is the ratio of their
 * costs per request, and a slow spell of the machine hits all of them alike. Steadier than the
 * back-to-back rounds; it runs the servers with colder caches, so it is the stricter of the two.
 */
export async function runPaired(servers, config, log, variants = VARIANTS, { strict = false, refresh = null } = {}) {
  if (config.pairedRounds === 0) return null;
  log(`HTTP side by side: ${config.pairedRounds} rounds of ${config.duration} s, all variants loaded at once`);
  if (!refresh) await Promise.all(variants.map((v) => load(servers[v.id], config.warmup, config)));
  const ratios = Object.fromEntries(variants.map((v) => [v.id, []]));
  const rps = Object.fromEntries(variants.map((v) => [v.id, []]));
  for (let round = 0; round < config.pairedRounds; round++) {
    if (refresh) {
      servers = await refresh();
      await Promise.all(variants.map((v) => load(servers[v.id], config.warmup, config)));
    }
    const cpuBefore = await Promise.all(variants.map((v) => serverCpu(servers[v.id])));
    const results = await Promise.all(variants.map((v) => load(servers[v.id], config.duration, config)));
    const cpuUsed = (await Promise.all(variants.map((v) => serverCpu(servers[v.id])))).map((c, i) => c - cpuBefore[i]);
    // strict: any answer but 2xx, error or timeout ends the benchmark, as in the back-to-back rounds.
    if (strict) results.forEach((r, i) => failOnErrors(variants[i], r));
    const bare = results[0].requests.average;
    variants.forEach((v, i) => {
      ratios[v.id].push(results[i].requests.average / bare);
      rps[v.id].push(results[i].requests.average);
    });
    // Beside each: the server's CPU per request and its share of the seconds measured (of one CPU).
    log(`  round ${round + 1}/${config.pairedRounds}  ` + variants.map((v, i) => `${v.id} ${int(results[i].requests.average)} (${fixed(ratios[v.id][round], 3)}; ` +
      `${fixed(cpuUsed[i] / results[i].requests.total, 0)} us/req, ${fixed(cpuUsed[i] / (config.duration * 1e6), 2)} CPU)`).join('   '));
  }
  return variants.map((v) => ({ id: v.id, label: v.label, ratio: median(ratios[v.id]), roundRatios: ratios[v.id], ...(strict && { roundRps: rps[v.id] }) }));
}

function failOnErrors(v, r) {
  const failed = r.errors + r.timeouts + r.non2xx;
  if (failed > 0) {
    throw new Error(`[bench] ${v.label}: ${r.non2xx} non-2xx answers, ${r.errors} errors, ${r.timeouts} timeouts: the figures would mean nothing`);
  }
}

/**
 * Back to back: `config.rounds` rounds, each (with `refresh`) on new server processes. A round loads
 * the variants one at a time in a random order, then again in reverse order, each run after a warm-up,
 * so every variant's two runs sit on average at the middle of the round: a machine that speeds up or slows down
 * through the round moves every variant alike. Returns each variant's runs (requests/s, latency, server
 * CPU per request), two per round, each tagged with its round.
 */
export async function runRounds(servers, variants, config, log, labelWidth = 24, refresh = null) {
  const runs = Object.fromEntries(variants.map((v) => [v.id, []]));
  for (let round = 0; round < config.rounds; round++) {
    if (refresh) servers = await refresh();
    // A new random order every round: a fixed one gives bare Express the first and last places of every
    // round, and any effect of a place in the round would be counted as a variant's own. (A 40-round run
    // in random order found the places within 3% of each other, no pattern: the guard costs nothing.)
    const order = shuffled(variants);
    for (const v of [...order, ...[...order].reverse()]) {
      await load(servers[v.id], config.warmup, config);
      const before = { server: await serverCpu(servers[v.id]), self: process.cpuUsage(), machine: machineBusy(), at: process.hrtime.bigint() };
      const r = await load(servers[v.id], config.duration, config);
      const serverUs = (await serverCpu(servers[v.id])) - before.server;
      const self = process.cpuUsage(before.self);
      const machine = machineBusy();
      const elapsedUs = Number(process.hrtime.bigint() - before.at) / 1000;
      // CPU that neither the server nor the load generator used: other programs on this machine.
      const others = machine === null || before.machine === null ? null : Math.max(0, (machine - before.machine - serverUs - self.user - self.system) / elapsedUs);
      failOnErrors(v, r);
      const run = {
        round,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        requests: r.requests.total,
        serverCpuPerRequestUs: serverUs / r.requests.total,
        serverCores: serverUs / elapsedUs,
        otherCores: others,
      };
      runs[v.id].push(run);
      log(`  round ${round + 1}/${config.rounds}  ${v.label.padEnd(labelWidth)} ${int(run.rps).padStart(7)} req/s   p50 ${run.p50} ms   p99 ${run.p99} ms` +
        `   server ${fixed(run.serverCpuPerRequestUs, 1)} us CPU/req` + (others === null ? '' : `   other load ${fixed(others, 2)} cores`));
    }
  }
  return runs;
}

/** The items in a random order (Fisher-Yates). */
export function shuffled(items) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Round by round, the requests/s of variant `a` over variant `b`: both runs of a round added up, so a
 * round's ratio compares the same stretch of time (see runRounds).
 */
export function roundRatios(a, b) {
  const sums = (runs) => {
    const out = [];
    for (const r of runs) out[r.round] = (out[r.round] ?? 0) + r.rps;
    return out;
  };
  const x = sums(a);
  const y = sums(b);
  return x.map((v, i) => v / y[i]);
}

/** Per-variant figures from runRounds(): medians over runs, and the median round ratio to the variant with id 'bare'. */
export function summarizeRounds(variants, runs) {
  const bareCpu = median(runs.bare.map((r) => r.serverCpuPerRequestUs));
  return variants.map((v) => {
    const rps = median(runs[v.id].map((r) => r.rps));
    // The ratio round by round: each round measures the variants over the same stretch of time, so
    // its ratio is disturbed far less by the machine's drifts than a ratio of medians.
    const ratios = roundRatios(runs[v.id], runs.bare);
    return {
      id: v.id,
      label: v.label,
      rps,
      p50: median(runs[v.id].map((r) => r.p50)),
      p99: median(runs[v.id].map((r) => r.p99)),
      ratio: median(ratios),
      ratioQuartiles: quartiles(ratios),
      serverCpuPerRequestUs: median(runs[v.id].map((r) => r.serverCpuPerRequestUs)),
      // Bare Express's server CPU per request over this variant's: what the throughput ratio would be on a quiet machine.
      cpuRatio: bareCpu / median(runs[v.id].map((r) => r.serverCpuPerRequestUs)),
      otherCores: runs[v.id].some((r) => r.otherCores === null) ? null : Math.max(...runs[v.id].map((r) => r.otherCores)),
      roundRatios: ratios,
      runs: runs[v.id],
    };
  });
}

/**
 * With `config.fresh` (BENCH_FRESH, on by default), a function that replaces every server in `servers`
 * by a new process (made by `start(variant)`) and warms it up, for runRounds/runPaired to call at the
 * start of each round; null otherwise. How one process's JIT compiles the hot path and lays out its
 * heap moves its requests/s by several percent (two processes of one variant differ as much as two
 * variants), so a run that keeps one process per variant measures that process's luck.
 */
export function refresher(servers, variants, config, start) {
  if (!config.fresh) return null;
  return async () => {
    await Promise.all(Object.values(servers).map(stopServer));
    for (const v of variants) servers[v.id] = await start(v);
    for (const v of variants) await load(servers[v.id], FRESH_WARMUP, config);
    return servers;
  };
}

/** Runs the rounds and returns per-variant figures: medians over rounds, and the median round ratio to bare Express. */
export async function runHttp(config = httpConfigFromEnv(), log = console.log, measured = variantsFromEnv()) {
  if (config.profileDir) mkdirSync(config.profileDir, { recursive: true });
  const seconds = config.rounds * 2 * measured.length * (config.duration + config.warmup);
  log(`HTTP: GET / on 127.0.0.1, ${config.connections} connections, pipelining ${config.pipelining}, ` +
    `${config.rounds} rounds x ${measured.length} variants x 2 (in a random order, then in reverse) x (${config.warmup} s warm-up + ${config.duration} s), about ${Math.ceil(seconds)} s` +
    (config.pin ? ', load on CPU 0, servers on CPU 1' : ''));
  const servers = {};
  const refresh = refresher(servers, measured, config, (v) => startServer(v.id, config.profileDir, config.pin));
  try {
    if (config.pin) pin(process.pid, 0);
    for (const v of measured) servers[v.id] = await startServer(v.id, config.profileDir, config.pin);
    const runs = await runRounds(servers, measured, config, log, Math.max(...measured.map((v) => v.label.length)), refresh);
    const variants = summarizeRounds(measured, runs);
    const paired = await runPaired(servers, config, log, measured, { refresh });
    const till = variants.find((v) => v.id === 'till');
    // Decided on the median's confidence interval: a median alone passes or fails on this machine's noise.
    const decision = till === undefined ? null : verdict(till.roundRatios, { atLeast: HTTP_TARGET });
    const shown = { ...config, variants: measured.map((v) => v.id), profileDir: config.profileDir ?? undefined };
    return { config: shown, variants, paired, target: HTTP_TARGET, decision, pass: decision?.verdict === 'PASS' };
  } finally {
    await Promise.all(Object.values(servers).map(stopServer));
  }
}

export function printHttp(result, log = console.log) {
  log('');
  log(`HTTP results (median of ${result.config.rounds} rounds; ratio = median over rounds of requests/s relative to bare Express in the same round; middle half = its 25th to 75th percentile)`);
  log(table([
    ['variant', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'middle half', 'ratio by round', 'CPU us/req', 'CPU ratio'],
    ...result.variants.map((v) => [
      v.label, int(v.rps), v.p50, v.p99, fixed(v.ratio, 3), v.ratioQuartiles.map((x) => fixed(x, 3)).join('-'), v.roundRatios.map((x) => fixed(x, 3)).join(' '),
      fixed(v.serverCpuPerRequestUs, 1), fixed(v.cpuRatio, 3),
    ]),
  ]));
  log('  CPU us/req: server process CPU per request; CPU ratio: bare\'s CPU/req over this one\'s (less disturbed by other load)');
  const busiest = Math.max(...result.variants.map((v) => v.otherCores ?? 0));
  if (busiest > 0.15) log(`  note: other programs used up to ${fixed(busiest, 2)} cores during some runs: requests/s figures are noisy`);
  if (result.paired) {
    log(`  side by side (median of ${result.config.pairedRounds} rounds): ` + result.paired.map((v) => `${v.label} ${fixed(v.ratio, 3)}`).join(', '));
  }
  const till = result.variants.find((v) => v.id === 'till');
  if (till !== undefined) log(`  target: apiKeyAuth() >= ${result.target} x bare Express: median ${fixed(till.ratio, 3)}, ${verdictText(result.decision)}`);
  const map = result.variants.find((v) => v.id === 'map');
  if (till !== undefined && map !== undefined) {
    const over = roundRatios(till.runs, map.runs);
    log(`  apiKeyAuth() over the Map check: median ${fixed(median(over), 3)}, ${verdictText(verdict(over, { above: 1 }))} (ahead of it)`);
  }
  const overhead = overheadOf(result);
  if (overhead === null) return;
  // Both targets are decided back to back, a server with a CPU to itself; side by side is printed beside (see bench/README.md).
  log(`  target: usage tracking, audit events, alerts and metrics on >= ${OVERHEAD_TARGET} x all off: back to back median ${fixed(overhead.backToBack, 3)}` +
    (overhead.paired === null ? '' : ` (side by side ${fixed(overhead.paired, 3)})`) + `, ${verdictText(overhead.decision)}`);
}

/** Observed over quiet: round by round back to back (median), and side by side when measured; null without both. */
export function overheadOf(result) {
  const observed = result.variants.find((v) => v.id === 'observed');
  const quiet = result.variants.find((v) => v.id === 'quiet');
  if (observed === undefined || quiet === undefined) return null;
  const ratios = roundRatios(observed.runs, quiet.runs);
  const backToBack = median(ratios);
  let paired = null;
  if (result.paired) {
    const o = result.paired.find((v) => v.id === 'observed');
    const q = result.paired.find((v) => v.id === 'quiet');
    paired = median(o.roundRatios.map((x, i) => x / q.roundRatios[i]));
  }
  return { backToBack, paired, decision: verdict(ratios, { atLeast: OVERHEAD_TARGET }) };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runHttp();
  printHttp(result);
}
