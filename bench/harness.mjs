// The plumbing every benchmark shares: settings, the run's header and results file, child processes
// (one entry, child.mjs), servers pinned with taskset and loaded by autocannon, and the interleaved
// rounds that measure variants against a baseline of the same run.
// One file because these pieces are one protocol: a server started here answers the samples the rounds
// take, in the way serve() below sets up in the child.
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { availableParallelism, cpus } from 'node:os';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { compare, median } from './stats.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./child.mjs', import.meta.url));

/** `pnpm bench --quick` (BENCH_QUICK=1): each setting takes its `quick` default, to check that a benchmark runs. */
export const quick = process.env.BENCH_QUICK === '1';

/**
 * Settings from the environment: `spec` maps a name to { env, value, quick?, integer?, min? }. A variable
 * set to anything but a number above `min` (0 by default) is a configuration error.
 */
export function settings(spec) {
  const out = {};
  for (const [name, { env, value, quick: short, integer = false, min = 0 }] of Object.entries(spec)) {
    const raw = process.env[env];
    if (raw === undefined || raw === '') {
      out[name] = quick && short !== undefined ? short : value;
      continue;
    }
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= min || (integer && !Number.isInteger(n))) {
      throw new Error(`[bench] ${env} must be ${integer ? 'an integer' : 'a number'} above ${min}, not ${JSON.stringify(raw)}`);
    }
    out[name] = n;
  }
  return out;
}

/** The settings of the HTTP benchmarks (http, limits, peers); `overrides` changes a benchmark's defaults. */
export function httpSettings(overrides = {}) {
  const base = {
    duration: { env: 'BENCH_DURATION', value: 2, quick: 1 },
    warmup: { env: 'BENCH_WARMUP', value: 0.5 },
    rounds: { env: 'BENCH_ROUNDS', value: 8, integer: true, quick: 1 },
    pairedRounds: { env: 'BENCH_PAIRED_ROUNDS', value: 6, integer: true, min: -1, quick: 1 },
    connections: { env: 'BENCH_CONNECTIONS', value: 50, integer: true },
  };
  for (const [name, o] of Object.entries(overrides)) base[name] = { ...base[name], ...o };
  return {
    ...settings(base),
    // New server processes every round: one process's JIT and heap layout move its requests/s as much as a variant does.
    fresh: process.env.BENCH_FRESH !== '0',
    // The load generator on CPU 0, the servers on CPU 1 (Linux, taskset): less scheduler noise.
    pin: process.env.BENCH_PIN !== '0' && canPin(),
    // BENCH_PROFILE=1 runs each server under --cpu-prof and leaves the profiles here.
    profileDir: process.env.BENCH_PROFILE === '1' ? fileURLToPath(new URL('./results/profiles/', import.meta.url)) : null,
  };
}

// ---------------------------------------------------------------------------------------------------
// The run's header, output and results.

export const int = (n) => Math.round(n).toLocaleString('en-US');
export const fixed = (n, digits = 2) => n.toFixed(digits);

/** Right-aligned columns: rows of cells, the first row a header. */
export function table(rows, indent = '  ') {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => indent + r.map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]))).join('   ')).join('\n');
}

/** The machine and the code measured: Node, CPU, cores, and the commit the packages were built from. */
export function machine() {
  let source = null;
  try {
    const git = (...args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    source = { commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain', '--', 'packages') !== '' };
  } catch {}
  return { node: process.version, platform: `${process.platform} ${process.arch}`, cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), source };
}

/** A benchmark's first line: what runs, on which machine, built from which commit. */
export function header(title, m) {
  return (
    `${title}: Node ${m.node}, ${m.platform}, ${m.cores} x ${m.cpu}` +
    (m.source ? `; packages built from ${m.source.commit}${m.source.dirty ? ' with uncommitted changes' : ''}` : '')
  );
}

/** Writes `text` (or a record as JSON) under the repository (bench/results/ is git-ignored); returns its relative path. */
export function save(path, content) {
  const file = fileURLToPath(new URL(`../${path}`, import.meta.url));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, typeof content === 'string' ? content : `${JSON.stringify(content, null, 2)}\n`);
  return relative(ROOT, file);
}

/** CPU time the whole machine has been busy, in microseconds (Linux /proc/stat), or null. */
export function machineBusy() {
  try {
    const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) * 10_000; // ticks of 10 ms
  } catch {
    return null;
  }
}

/** The note printed when other programs used the machine meanwhile. */
export function loadNote(items) {
  const busiest = Math.max(...items.map((v) => v.otherCores ?? 0));
  return busiest > 0.15 ? `  note: other programs used up to ${fixed(busiest, 2)} cores meanwhile: the figures are noisy` : null;
}

// ---------------------------------------------------------------------------------------------------
// Child processes. Every child runs child.mjs, which calls one task of one benchmark module.

/** Runs `task` of benchmark `bench` in a fresh process; resolves with what it sends back (if anything) once it exits with 0. */
export function runChild(bench, task, args = {}, { execArgv = [] } = {}) {
  const child = fork(CHILD, [bench, task, JSON.stringify(args)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    let result;
    child.on('message', (message) => (result = message));
    child.once('exit', (code) => (code === 0 ? resolve(result) : reject(new Error(`[bench] ${bench} ${task} exited with code ${code}`))));
  });
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
export const pin = (pid, cpu) => execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });

/** Sends `message` to a child and resolves with its next message. */
function ask(child, message) {
  return new Promise((resolve) => {
    child.once('message', resolve);
    child.send(message);
  });
}

/**
 * Starts the `serve` task of benchmark `bench` for one variant ({ id, label }), pinned to CPU 1 when
 * `config.pin`; resolves once it listens. Its keys go into request headers only, never printed.
 */
export function startServer(bench, variant, config, args = {}) {
  const execArgv = config.profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${config.profileDir}`, `--cpu-prof-name=${bench}-${variant.id}-${Date.now()}.cpuprofile`]
    : [];
  const child = fork(CHILD, [bench, 'serve', JSON.stringify({ ...args, variant: variant.id })], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`[bench] the ${variant.id} server did not listen within 15 s`)), 15_000);
    child.once('message', ({ port, keys }) => {
      clearTimeout(timer);
      if (config.pin) pin(child.pid, 1);
      resolve({ ...variant, child, url: `http://127.0.0.1:${port}/`, keys });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`[bench] the ${variant.id} server exited with code ${code} before listening`));
    });
  });
}

export async function stopServer({ child }) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Disconnecting lets the server exit normally (and write its CPU profile); killed if it does not.
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/**
 * In a server process: serves `app` on a free loopback port, reports { port, keys } to the parent,
 * answers 'sample' with its CPU time, the requests it received and what `sample()` adds, and exits
 * normally (so --cpu-prof writes its profile) after `close()` when the parent goes away.
 */
export function serve(app, keys, { close = async () => {}, sample = async () => ({}) } = {}) {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    app(req, res);
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port, keys }));
  process.on('message', async (message) => {
    if (message !== 'sample') return;
    const extra = await sample();
    const { user, system } = process.cpuUsage();
    process.send({ cpu: user + system, requests, ...extra });
  });
  process.on('disconnect', async () => {
    server.close();
    server.closeAllConnections();
    await close().catch(() => {});
    process.exit(0);
  });
}

/** The least an API key check can do, for reference: one Map lookup of the Authorization header. */
export function mapCheck(key, id) {
  const keys = new Map([[`Bearer ${key}`, { id }]]);
  return (req, res, next) => {
    const found = keys.get(req.headers.authorization);
    if (found === undefined) return void res.status(401).end();
    req.apiKey = found;
    next();
  };
}

/**
 * autocannon on one server for `seconds`, each connection sending one of its keys (round robin). Any
 * answer but 2xx, an error or a timeout ends the benchmark: the figures would mean nothing.
 */
export async function load(server, seconds, config) {
  let next = 0;
  const setupClient = (client) => client.setHeaders({ authorization: `Bearer ${server.keys[next++ % server.keys.length]}` });
  const r = await autocannon({ url: server.url, setupClient, connections: config.connections, pipelining: 1, duration: seconds });
  if (r.non2xx + r.errors + r.timeouts > 0) {
    throw new Error(`[bench] ${server.label}: ${r.non2xx} non-2xx answers, ${r.errors} errors, ${r.timeouts} timeouts: the figures would mean nothing`);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Rounds: variants measured against the baseline (the first variant) over the same stretches of time.

/**
 * Starts one server per variant and returns { servers, refresh, stop }: `refresh()` (null unless
 * `config.fresh`) replaces every server by a new, warmed-up process, for the rounds to call.
 */
export async function startServers(bench, variants, config, args = {}) {
  if (config.profileDir) mkdirSync(config.profileDir, { recursive: true });
  if (config.pin) pin(process.pid, 0);
  const servers = {};
  const start = async () => {
    for (const v of variants) servers[v.id] = await startServer(bench, v, config, args);
  };
  const stop = () => Promise.allSettled(Object.values(servers).map(stopServer));
  await start();
  const refresh = config.fresh
    ? async () => {
        await stop();
        await start();
        for (const v of variants) await load(servers[v.id], 1, config);
        return servers;
      }
    : null;
  return { servers, refresh, stop };
}

/**
 * Back to back: `config.rounds` rounds (each on fresh servers when `refresh`). A round loads the variants
 * one at a time in a random order, then again in reverse, each run after a warm-up, so each variant's two
 * runs sit on average at the middle of the round. Each run records requests/s, latency, the server's CPU
 * per request and, through `extra()` (read before and after each run), anything a benchmark adds.
 */
export async function runRounds(servers, variants, config, log, { refresh = null, extra = async () => null } = {}) {
  const width = Math.max(...variants.map((v) => v.label.length));
  const runs = Object.fromEntries(variants.map((v) => [v.id, []]));
  for (let round = 0; round < config.rounds; round++) {
    if (refresh) servers = await refresh();
    const order = shuffled(variants);
    for (const v of [...order, ...[...order].reverse()]) {
      const server = servers[v.id];
      await load(server, config.warmup, config);
      const before = {
        served: await ask(server.child, 'sample'),
        extra: await extra(),
        self: process.cpuUsage(),
        machine: machineBusy(),
        at: process.hrtime.bigint(),
      };
      const r = await load(server, config.duration, config);
      const served = await ask(server.child, 'sample');
      const after = { served, extra: await extra() };
      const self = process.cpuUsage(before.self);
      const busy = machineBusy();
      const elapsedUs = Number(process.hrtime.bigint() - before.at) / 1000;
      const serverUs = served.cpu - before.served.cpu;
      const loadUs = self.user + self.system;
      const busyUs = busy === null || before.machine === null ? null : busy - before.machine;
      const run = {
        round,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        requests: served.requests - before.served.requests,
        serverCpuPerRequestUs: serverUs / (served.requests - before.served.requests),
        elapsedUs,
        serverUs,
        loadUs,
        busyUs,
        // CPU that neither the server nor the load generator used: other programs on this machine.
        otherCores: busyUs === null ? null : Math.max(0, (busyUs - serverUs - loadUs) / elapsedUs),
        samples: { before: { served: before.served, extra: before.extra }, after },
      };
      runs[v.id].push(run);
      log(
        `  round ${round + 1}/${config.rounds}  ${v.label.padEnd(width)} ${int(run.rps).padStart(7)} req/s   p50 ${run.p50} ms   p99 ${run.p99} ms` +
          `   server ${fixed(run.serverCpuPerRequestUs, 1)} us CPU/req` +
          (run.otherCores === null ? '' : `   other load ${fixed(run.otherCores, 2)} cores`),
      );
    }
  }
  return runs;
}

/** The items in a random order (Fisher-Yates): no variant always has the same places in a round. */
function shuffled(items) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Per-variant figures of runRounds(): medians over runs, and the round ratios to the first variant (the baseline). */
export function summarizeRounds(variants, runs, targets = {}) {
  const base = runs[variants[0].id];
  const cpu = (id) => median(runs[id].map((r) => r.serverCpuPerRequestUs));
  return variants.map((v) => {
    const c = compare(runs[v.id], base, targets[v.id] ?? null);
    return {
      ...v,
      rps: median(runs[v.id].map((r) => r.rps)),
      p50: median(runs[v.id].map((r) => r.p50)),
      p99: median(runs[v.id].map((r) => r.p99)),
      ratio: c.ratio,
      ratioQuartiles: c.quartiles,
      roundRatios: c.roundRatios,
      decision: c.decision,
      serverCpuPerRequestUs: cpu(v.id),
      // The baseline's server CPU per request over this variant's: the throughput ratio of a quiet machine.
      cpuRatio: cpu(variants[0].id) / cpu(v.id),
      otherCores: runs[v.id].some((r) => r.otherCores === null) ? null : Math.max(...runs[v.id].map((r) => r.otherCores)),
      runs: runs[v.id],
    };
  });
}

/**
 * Side by side: every variant under load at once, all servers sharing CPU 1. The scheduler gives each an
 * equal share, so a variant's requests/s over the baseline's is the ratio of their costs per request,
 * and a slow spell of the machine hits all alike; but each server then runs with caches the others keep
 * evicting, which weighs memory traffic far above what it costs a server with a CPU of its own.
 */
export async function runPaired(servers, variants, config, log, refresh = null) {
  if (config.pairedRounds === 0) return null;
  log(`Side by side: ${config.pairedRounds} rounds of ${config.duration} s, all variants loaded at once`);
  if (!refresh) await Promise.all(variants.map((v) => load(servers[v.id], config.warmup, config)));
  const rps = Object.fromEntries(variants.map((v) => [v.id, []]));
  for (let round = 0; round < config.pairedRounds; round++) {
    if (refresh) {
      servers = await refresh();
      await Promise.all(variants.map((v) => load(servers[v.id], config.warmup, config)));
    }
    const before = await Promise.all(variants.map((v) => ask(servers[v.id].child, 'sample')));
    const results = await Promise.all(variants.map((v) => load(servers[v.id], config.duration, config)));
    const after = await Promise.all(variants.map((v) => ask(servers[v.id].child, 'sample')));
    for (const [i, v] of variants.entries()) rps[v.id].push(results[i].requests.average);
    // Beside each: the server's CPU per request and its share of one CPU over the seconds measured.
    log(
      `  round ${round + 1}/${config.pairedRounds}  ` +
        variants
          .map((v, i) => {
            const cpu = after[i].cpu - before[i].cpu;
            return (
              `${v.id} ${int(results[i].requests.average)} (${fixed(results[i].requests.average / results[0].requests.average, 3)}; ` +
              `${fixed(cpu / (after[i].requests - before[i].requests), 0)} us/req, ${fixed(cpu / (config.duration * 1e6), 2)} CPU)`
            );
          })
          .join('   '),
    );
  }
  return Object.fromEntries(variants.map((v) => [v.id, { roundRps: rps[v.id], ratio: pairedRatio(rps, v.id, variants[0].id) }]));
}

/** Side by side, `a`'s requests/s over `b`'s: the median of the rounds' ratios. */
export function pairedRatio(rps, a, b) {
  const of = (id) => rps[id].roundRps ?? rps[id];
  return median(of(a).map((x, i) => x / of(b)[i]));
}

/** A variant's row cells: the ratio and its middle half (25th to 75th percentile of the round ratios). */
export const ratioCells = (v) => [fixed(v.ratio, 3), v.ratioQuartiles.map((x) => fixed(x, 3)).join('-')];
