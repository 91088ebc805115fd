// `pnpm bench:peers`: Till against other ways of checking an API key, in one run on this machine. The same
// hello-world Express 5 route (`GET /` answers {"hello":"world"}) is served by seven child processes
// (peers-server.mjs), one per variant:
//   1. bare Express (no authentication);
//   2. a hand-written Map check (header -> Map lookup, 401 otherwise);
//   3. passport + passport-headerapikey (HeaderAPIKeyStrategy, key looked up in a Map, session: false);
//   4. better-auth's API key plugin (@better-auth/api-key, memory adapter, auth.api.verifyApiKey() per
//      request, its rate limiting off for fairness);
//   5. a naive Redis lookup per request (ioredis GET of sha256(key), JSON.parse, 401 if missing);
//   6. Till: apiKeyAuth() on a RedisStore, the key cached in process;
//   7. Till with a per-key Redis rate limit high enough never to refuse.
// Before measuring, every authenticating server must answer 200 with its key and 401 without a key, with
// a wrong key and with junk; otherwise the run stops (exit code 1): a contestant that does not
// authenticate is not measured. Then the machinery of `pnpm bench` (http.mjs): autocannon, load generator
// pinned to CPU 0 and servers to CPU 1, a warm-up before each run, rounds on new server processes that
// load the variants in a random order and then in reverse order, medians of the round ratios; then side-by-side
// rounds, all variants loaded at once on CPU 1, printed beside them. Every request carries the variant's key
// (bare ignores it); any answer but 2xx during measurement stops the run.
// Prints a table (requests/s, p50, p99, ratio to bare in the same run) and two targets, PASS, FAIL or NOT DECIDED:
// Till cached >= 0.95 x bare, and Till ahead of every other authenticating contestant in requests/s. The
// exit code is 0 either way. Writes bench/results/peers.json and the chart docs/bench-peers.svg.
//
// Settings (environment):
//   BENCH_DURATION        2    seconds per measured run
//   BENCH_WARMUP          0.5  seconds of warm-up before each run
//   BENCH_ROUNDS          5    back-to-back rounds, each of all seven variants twice (in a random order, then in reverse)
//   BENCH_PAIRED_ROUNDS   5    side-by-side rounds (0 turns them off)
//   BENCH_CONNECTIONS     50   autocannon connections per server
//   BENCH_FRESH           on   new server processes every round, warmed up first (0: one per variant)
//   BENCH_PIN             on   0 stops pinning the load generator to CPU 0 and the servers to CPU 1
//   BENCH_PROFILE         off  1 runs the servers under --cpu-prof (bench/results/profiles/peers-<variant>.cpuprofile)
//   BENCH_PEERS_TIMEOUT   720  seconds before the run gives up (exit code 1), servers stopped and keys deleted
//   REDIS_URL                  a Redis on this machine; default redis://127.0.0.1:6379
// Quick run: BENCH_DURATION=2 BENCH_ROUNDS=1 BENCH_PAIRED_ROUNDS=1 pnpm bench:peers (the default run takes
// about 6 minutes plus the build).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HTTP_TARGET, httpConfigFromEnv, pin, refresher, roundRatios, runPaired, runRounds, startServer, stopServer, summarizeRounds } from './http.mjs';
import { allOf, envNumber, fixed, int, machineInfo, median, runHeader, sourceState, table, verdict, verdictText } from './stats.mjs';
import { benchRedis, boundedRun } from './redis-run.mjs';

const VARIANTS = [
  { id: 'bare', label: 'express (bare)', authenticates: false },
  { id: 'map', label: 'hand-written Map check', authenticates: true },
  { id: 'passport', label: 'passport-headerapikey', authenticates: true },
  { id: 'better-auth', label: 'better-auth apiKey()', authenticates: true },
  { id: 'redis', label: 'naive Redis GET', authenticates: true },
  { id: 'till', label: 'Till, cached key', authenticates: true },
  { id: 'till-limits', label: 'Till, cached + limit', authenticates: true },
];
/** Till's variants; every other authenticating variant is a contestant Till must be ahead of. */
const TILL = new Set(['till', 'till-limits']);
const SERVER = fileURLToPath(new URL('./peers-server.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results/peers.json', import.meta.url));
const CHART = fileURLToPath(new URL('../docs/bench-peers.svg', import.meta.url));
const EXPECTED_BODY = JSON.stringify({ hello: 'world' });

function configFromEnv() {
  return {
    ...httpConfigFromEnv(),
    // Fewer rounds than `pnpm bench` (seven variants instead of six), so a default run stays near 6 minutes.
    rounds: envNumber('BENCH_ROUNDS', 5, { integer: true }),
    pairedRounds: envNumber('BENCH_PAIRED_ROUNDS', 5, { integer: true, min: -1 }),
    timeout: envNumber('BENCH_PEERS_TIMEOUT', 720),
  };
}

/** The same key with its last character changed: well-formed for most schemes, but wrong. */
function wrongKey(key) {
  const last = key.at(-1);
  return key.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

/**
 * Fails loudly unless the server answers 200 and the JSON body with its key and, when it authenticates,
 * 401 without a key, with a wrong key and with junk. Returns the statuses seen (never the key).
 */
async function check(variant, server) {
  const get = async (headers) => {
    const res = await fetch(server.url, { headers, signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  };
  const valid = await get(server.headers);
  const seen = { valid: valid.status };
  const problems = [];
  if (valid.status !== 200 || valid.body !== EXPECTED_BODY) problems.push(`answered ${valid.status} with its valid key, expected 200 and ${EXPECTED_BODY}`);
  if (variant.authenticates) {
    const key = server.headers.authorization.slice('Bearer '.length);
    const bad = { missing: {}, wrong: { authorization: `Bearer ${wrongKey(key)}` }, junk: { authorization: 'Bearer not-a-key' } };
    for (const [name, headers] of Object.entries(bad)) {
      const { status } = await get(headers);
      seen[name] = status;
      if (status !== 401) problems.push(`answered ${status} to a request with ${name === 'missing' ? 'no' : `a ${name}`} key, expected 401`);
    }
  }
  if (problems.length > 0) throw new Error(`[bench] ${variant.label} does not authenticate as it should, so it is not measured: ${problems.join('; ')}`);
  return seen;
}

/** Till's requests/s over another variant's: side by side (median of the rounds' ratios) and back to back (the same). */
function tillOver(id, other, variants, paired) {
  const till = variants.find((v) => v.id === id);
  const them = variants.find((v) => v.id === other);
  const ratios = roundRatios(till.runs, them.runs);
  const backToBack = median(ratios);
  let side = null;
  if (paired) {
    const a = paired.find((v) => v.id === id);
    const b = paired.find((v) => v.id === other);
    side = median(a.roundRps.map((x, i) => x / b.roundRps[i]));
  }
  return { backToBack, paired: side, decision: verdict(ratios, { above: 1 }) };
}

function targetsOf(variants, paired) {
  const till = variants.find((v) => v.id === 'till');
  const tillPaired = paired?.find((v) => v.id === 'till') ?? null;
  const contestants = variants.filter((v) => v.authenticates && !TILL.has(v.id));
  const ahead = Object.fromEntries(contestants.map((c) => [c.id, tillOver('till', c.id, variants, paired)]));
  return {
    // Back to back decides: one server with a CPU to itself, as servers are deployed. Side by side (all
    // servers time-sharing one CPU) is steadier from round to round but runs every server with caches
    // the others keep evicting, which weighs each request's memory traffic far above what it costs a
    // server of its own (see bench/README.md); it is printed beside.
    decidedBy: 'back to back',
    // Each on the confidence interval of the rounds' median, not the median alone (see stats.mjs, verdict).
    bare: { target: HTTP_TARGET, ratio: till.ratio, backToBack: till.ratio, paired: tillPaired?.ratio ?? null, decision: verdict(till.roundRatios, { atLeast: HTTP_TARGET }) },
    ahead: { over: ahead, verdict: allOf(Object.values(ahead).map((r) => r.decision)) },
  };
}

function print(result, log) {
  const { variants, paired, targets, config } = result;
  const sideOf = (id) => paired?.find((v) => v.id === id) ?? null;
  log('');
  log(`Results (median of ${config.rounds} back-to-back rounds; x bare = median over rounds of requests/s over bare Express's in the same round, middle half = its 25th to 75th percentile` +
    (paired ? `; side by side = the same over ${config.pairedRounds} rounds with all variants loaded at once` : '') + ')');
  log(table([
    ['variant', 'req/s', 'p50 ms', 'p99 ms', 'x bare', 'middle half', ...(paired ? ['side by side x bare'] : []), 'server CPU us/req'],
    ...variants.map((v) => [v.label, int(v.rps), v.p50, v.p99, fixed(v.ratio, 3), v.ratioQuartiles.map((x) => fixed(x, 3)).join('-'), ...(paired ? [fixed(sideOf(v.id).ratio, 3)] : []), fixed(v.serverCpuPerRequestUs, 1)]),
  ]));
  log(`  bare Express in this run: ${int(variants[0].rps)} req/s; server CPU us/req leaves out Redis's own CPU (variants naive Redis GET and Till with a limit use it per request)`);
  const busiest = Math.max(...variants.map((v) => v.otherCores ?? 0));
  if (busiest > 0.15) log(`  note: other programs used up to ${fixed(busiest, 2)} cores during some runs: requests/s figures are noisy`);
  log('');
  log(`Targets (decided ${targets.decidedBy}${paired ? '; side by side beside it' : ''})`);
  const b = targets.bare;
  log(`  Till cached >= ${b.target} x bare Express: ` + (b.paired === null ? '' : `side by side ${fixed(b.paired, 3)}, `) + `back to back median ${fixed(b.backToBack, 3)}, ${verdictText(b.decision)}`);
  const parts = Object.entries(targets.ahead.over).map(([id, r]) => {
    const label = variants.find((v) => v.id === id).label;
    return `${label} ` + (r.paired === null ? '' : `${fixed(r.paired, 3)} side by side, `) + `${fixed(r.backToBack, 3)} back to back (${verdictText(r.decision)})`;
  });
  log(`  Till cached ahead of every other authenticating contestant (Till's req/s over theirs): ${parts.join('; ')} -> ${targets.ahead.verdict}`);
}

const escapeXml = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Horizontal bars of requests/s (back-to-back medians) with the ratio to bare, as a hand-written SVG. */
function chart(result) {
  const { variants, paired, machine, config } = result;
  const sideOf = (id) => paired?.find((v) => v.id === id) ?? null;
  const width = 940;
  const labelW = 200;
  const barMax = 360;
  const rowH = 34;
  const top = 58;
  const height = top + variants.length * rowH + 62;
  const max = Math.max(...variants.map((v) => v.rps));
  const colour = (v) => (TILL.has(v.id) ? '#2f6fde' : v.id === 'bare' ? '#8a8f98' : '#c9923a');
  const rows = variants.map((v, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, Math.round((v.rps / max) * barMax));
    const side = sideOf(v.id);
    const note = v.id === 'bare' ? 'baseline' : `${fixed(v.ratio, 3)}x bare` + (side ? ` (side by side ${fixed(side.ratio, 3)}x)` : '');
    return [
      `  <text x="${labelW - 10}" y="${y + 18}" text-anchor="end" font-weight="${TILL.has(v.id) ? 'bold' : 'normal'}">${escapeXml(v.label)}</text>`,
      `  <rect x="${labelW}" y="${y + 4}" width="${w}" height="${rowH - 12}" rx="3" fill="${colour(v)}"/>`,
      `  <text x="${labelW + w + 8}" y="${y + 18}">${escapeXml(`${int(v.rps)} req/s, ${note}`)}</text>`,
    ].join('\n');
  });
  const title = `Express 5 hello world, API key checked per request: requests/s (higher is better)`;
  const sub = `${machine.cores} x ${machine.cpu}, Node ${machine.node}, ${result.date.slice(0, 10)}; median of ${config.rounds} rounds of ${config.duration} s, ${config.connections} connections`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13" fill="#24292f">`,
    `  <rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `  <text x="16" y="24" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `  <text x="16" y="44" font-size="12" fill="#57606a">${escapeXml(sub)}</text>`,
    ...rows,
    `  <text x="16" y="${height - 30}" font-size="11" fill="#57606a">${escapeXml('pnpm bench:peers. Bars: median requests/s of the back-to-back rounds (one server loaded at a time).')}</text>`,
    `  <text x="16" y="${height - 14}" font-size="11" fill="#57606a">${escapeXml('Ratios: median of each round\'s ratio to bare Express in the same run; side by side: all seven servers loaded at once on one CPU.')}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function save(file, text) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  return relative(ROOT, file);
}

async function main(log = console.log) {
  const config = configFromEnv();
  const machine = machineInfo();
  const source = sourceState();
  const { redis, namespace, admin, version } = await benchRedis('peers');
  const seconds = config.rounds * 2 * VARIANTS.length * (config.warmup + config.duration) + (config.pairedRounds > 0 ? config.warmup + config.pairedRounds * config.duration : 0);
  log(runHeader('Till against peers', machine, source));
  log(`  Redis ${version} at ${redis.host}, key prefix ${namespace} (deleted afterwards)`);
  log(`  GET / on 127.0.0.1, ${config.connections} connections, pipelining ${config.pipelining}, ${config.rounds} rounds x ${VARIANTS.length} variants x 2 (in a random order, then in reverse) x ` +
    `(${config.warmup} s warm-up + ${config.duration} s)` + (config.pairedRounds > 0 ? `, then ${config.pairedRounds} side-by-side rounds` : '') +
    `: about ${Math.ceil(seconds)} s` + (config.pin ? '; load on CPU 0, servers on CPU 1, Redis where the scheduler puts it' : ''));

  const servers = {};
  const { cleanup, deadline } = boundedRun({
    bench: 'bench:peers',
    envName: 'BENCH_PEERS_TIMEOUT',
    seconds: config.timeout,
    admin,
    namespace,
    stop: () => Promise.allSettled(Object.values(servers).map(stopServer)),
  });

  try {
    if (config.profileDir) mkdirSync(config.profileDir, { recursive: true });
    if (config.pin) pin(process.pid, 0);
    const start = (v) => startServer(v.id, config.profileDir, config.pin, { script: SERVER, args: [v.id, redis.url, namespace], profileName: `peers-${v.id}` });
    for (const v of VARIANTS) servers[v.id] = await start(v);
    const refresh = refresher(servers, VARIANTS, config, start);
    log('');
    log('Checks before measuring (status with the valid key; then without a key, with a wrong key, with junk):');
    const checks = {};
    for (const v of VARIANTS) {
      checks[v.id] = await check(v, servers[v.id]);
      const s = checks[v.id];
      log(`  ${v.label.padEnd(24)} ${s.valid}` + (v.authenticates ? ` / ${s.missing} ${s.wrong} ${s.junk}: authenticates` : ': no authentication (bare)'));
    }
    log('');
    log(`Back to back: ${config.rounds} rounds`);
    const runs = await runRounds(servers, VARIANTS, config, log, Math.max(...VARIANTS.map((v) => v.label.length)), refresh);
    const variants = summarizeRounds(VARIANTS, runs).map((v, i) => ({ ...v, authenticates: VARIANTS[i].authenticates }));
    const paired = await runPaired(servers, config, log, VARIANTS, { strict: true, refresh });
    const targets = targetsOf(variants, paired);
    const { profileDir, ...shownConfig } = config;
    const result = {
      date: new Date().toISOString(),
      machine,
      source,
      redis: { version, host: redis.host, namespace },
      config: { ...shownConfig, ...(profileDir && { profileDir: relative(ROOT, profileDir) }) },
      checks,
      variants,
      paired,
      targets,
    };
    print(result, log);

    const { found, left } = await cleanup();
    log('');
    log(`Redis: ${found ?? '?'} keys under ${namespace} deleted, ${left ?? '?'} left`);
    log(`saved to ${save(RESULTS, `${JSON.stringify(result, null, 2)}\n`)}; chart ${save(CHART, chart(result))}`);
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}

try {
  await main();
} catch (error) {
  process.exitCode = 1;
  console.error(error instanceof Error ? error.message : error);
}
