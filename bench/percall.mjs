// `pnpm bench percall`: what the function `apiKeyAuth()` returns costs per call, called directly (no
// server, no load generator, nothing the machine's network or scheduler adds) on real http.IncomingMessage
// and ServerResponse objects, their headers given as raw header lines as Node's parser gives them (and
// the headers object made before the call), with a cached key. Express would also give them its request
// and response prototypes, in its router before any middleware: left out, as it costs every variant alike
// (and makes each property a middleware adds dearer), which would flatter the ratio. Beside it, measured in the same rounds:
// an empty middleware and a hand-written Map check (a Map from key to record, as a naive app writes it).
// Each round runs every variant once, in a random order, each for BENCH_PERCALL_BATCHES batches of
// BENCH_PERCALL_BATCH calls on fresh request objects (made between batches, untimed); between batches
// the event loop runs, so timers do too (the usage tracker's flush, the cache's clock). A batch is 50
// requests, about 110 KB of objects: in the core's cache when they are called, as a server's request is
// when its middlewares run, right after the parser made it. Requests made 2,000 at a time (4 MB, out
// of the cache by their call) make every object a middleware reads a cache miss: measured too, in a
// child process of their own ("made 2,000 ahead"), for information. Reports the
// median ns per call of each over rounds with its 90% interval, and Till over the Map check round by
// round. Target: Till, usage tracking on, <= 2 x the Map check. These three run in the main process, alone:
// other configurations of apiKeyAuth() run in a child process of their own, against apiKeyAuth() of the
// default Till measured in their rounds (five in one process make V8's shared code polymorphic, which
// an app with one apiKeyAuth() never sees): usage tracking off, and three variants that give what an IP
// allowlist of 10 ranges costs: the key's allowlist holds the client's address in its last range (every
// range is tried), the client an IPv4 address, and the same as Node gives it on a server listening on
// `::` (`::ffff:a.b.c.d`); each is reported against apiKeyAuth() without an allowlist, round by round.
// The client address is a plain property of every variant's requests (what `req.ip` reads): Express's
// own `req.ip` getter (its trust-proxy walk) is the framework's cost, paid only for keys with an allowlist.
// Target: at most 50 ns more per call. Writes bench/results/percall.json.
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import express from 'express';
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { fixed, header, int, machine, runChild, save, settings, table } from './harness.mjs';
import { median, medianInterval, verdict, verdictText } from './stats.mjs';

/** Till at most this many times the Map check's ns per call. */
const TARGET = 2;
/** Requests made at a time for the variants that measure calls on objects out of the core's cache. */
const AHEAD = 2_000;
/** A 10-range allowlist adds at most this many ns per call. */
const ALLOWLIST_TARGET_NS = 50;
/** The client address of every request, in the last of ALLOWLIST's ranges. */
const CLIENT_IP = '203.0.113.77';
const ALLOWLIST = [
  '2001:db8:1::/48',
  '2001:db8:2::/48',
  '2001:db8:3::/48',
  '2001:db8:4::/48',
  '198.51.100.0/28',
  '198.51.100.16/28',
  '198.51.100.32/28',
  '192.0.2.0/24',
  '10.0.0.0/8',
  '203.0.113.0/24',
];

/** A Map from the Authorization header's key to a record: what a naive app writes. */
function mapCheck(key, record) {
  const keys = new Map([[key, record]]);
  return (req, res, next) => {
    const header = req.headers.authorization;
    const found = typeof header === 'string' && header.startsWith('Bearer ') ? keys.get(header.slice(7)) : undefined;
    if (found === undefined) return void res.status(401).end();
    req.apiKey = found;
    next();
  };
}

/** The issue's measure: an empty middleware, the Map check and apiKeyAuth() (the default Till), in one process. */
async function variants() {
  // The default Till: usage tracking and audit events on.
  const till = createTill({ logger: silentLogger });
  const made = await till.keys.create({ name: 'percall', scopes: ['bench:read'] });
  // Cached: read from the store once, before the rounds.
  if (!(await till.verify(made.key)).valid) throw new Error('[bench] the benchmark key does not verify');
  return {
    list: [
      { id: 'empty', label: 'empty middleware', key: made.key, fn: (_req, _res, next) => next() },
      { id: 'map', label: 'Map check', key: made.key, fn: mapCheck(made.key, made.record) },
      { id: 'till', label: 'apiKeyAuth()', key: made.key, fn: apiKeyAuth({ till }) },
    ],
    close: () => till.close(),
  };
}

/**
 * Child: other configurations of apiKeyAuth(), each against apiKeyAuth() of the default Till measured in
 * the same rounds (`tillOthers`): usage tracking and audit events off, and a key with an IP allowlist.
 * In the main process, five configurations would make the code they share see five Tills and more
 * shapes (polymorphic), and slow the measure the target is decided on, where an app has one.
 */
export async function otherConfigurations({ config }) {
  const till = createTill({ logger: silentLogger });
  const quiet = createTill({ logger: silentLogger, usage: false, auditEvents: false });
  const made = await till.keys.create({ name: 'percall', scopes: ['bench:read'] });
  const quietMade = await quiet.keys.create({ name: 'percall', scopes: ['bench:read'] });
  const listed = await till.keys.create({ name: 'percall allowlist', scopes: ['bench:read'], allowedIps: ALLOWLIST });
  for (const [t, k] of [
    [till, made.key],
    [quiet, quietMade.key],
    [till, listed.key],
  ]) {
    if (!(await t.verify(k, { ip: CLIENT_IP })).valid) throw new Error('[bench] the benchmark key does not verify');
  }
  const list = [
    { id: 'tillOthers', label: 'apiKeyAuth(), beside the configurations below (own process)', key: made.key, fn: apiKeyAuth({ till }) },
    { id: 'quiet', label: 'apiKeyAuth(), usage tracking and audit events off', key: quietMade.key, fn: apiKeyAuth({ till: quiet }) },
    { id: 'allowlist', label: 'apiKeyAuth(), key with a 10-range IP allowlist', key: listed.key, fn: apiKeyAuth({ till }) },
    { id: 'allowlistMapped', label: 'the same, client ::ffff:203.0.113.77', key: listed.key, ip: [`::ffff:${CLIENT_IP}`], fn: apiKeyAuth({ till }) },
    { id: 'allowlistTurns', label: 'the same, two IPv4 clients taking turns', key: listed.key, ip: [CLIENT_IP, '203.0.113.78'], fn: apiKeyAuth({ till }) },
  ];
  try {
    return { perRound: await measure(list, config), labels: list.map(({ id, label }) => ({ id, label })) };
  } finally {
    await Promise.all([till.close(), quiet.close()]);
  }
}

/** `count` requests as Node's HTTP parser would hand them to Express: raw header lines, headers read lazily. */
const expressApp = express();

/**
 * A header line as Node's parser makes it: a flat string of its own (the parser copies each name and
 * value out of the socket's bytes). A template literal would be a V8 cons string, which the first
 * slice or startsWith flattens into a copy, a cost the parser's strings never have.
 */
const line = (text) => Buffer.from(text, 'latin1').toString('latin1');

function requests(key, count, ips = [CLIENT_IP], asExpress = false) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const req = new IncomingMessage(new Socket());
    req.method = 'GET';
    req.url = '/reports';
    req.httpVersion = '1.1';
    // What the parser calls: the raw lines kept, the headers object made when first read. Read here,
    // untimed, as an app's earlier middleware would: a variant that reads req.headers pays nothing for
    // making it (the Map check's best case; the strictest comparison for Till).
    const raw = ['Host', '127.0.0.1:3000', 'User-Agent', 'client/1.0', 'Accept', '*/*', 'Authorization', `Bearer ${key}`].map(line);
    req._addHeaderLines(raw, raw.length);
    void req.headers;
    // What `req.ip` reads: the same plain property for every variant (see the top of this file).
    req.ip = ips[i % ips.length];
    const res = new ServerResponse(req);
    req.res = res;
    res.req = req;
    if (asExpress) {
      Object.setPrototypeOf(req, expressApp.request);
      Object.setPrototypeOf(res, expressApp.response);
    }
    out.push([req, res]);
  }
  return out;
}

/**
 * Calls `fn` on each request: the ns per call, or null when not every call passed its request on at once.
 * That happens when the key's cache entry expired during the batch (its TTL, 30 s by default, ran out
 * in a long run): the calls then wait for the store's read, which caches the key again. `settle`
 * then checks that they all passed it on in the end; the batch is run again, as it timed a miss.
 */
function timeBatch(fn, batch, state) {
  const next = (error) => {
    if (error === undefined) state.passed++;
    else state.failed++;
  };
  const start = process.hrtime.bigint();
  for (let i = 0; i < batch.length; i++) fn(batch[i][0], batch[i][1], next);
  const ns = Number(process.hrtime.bigint() - start);
  return state.passed === batch.length ? ns / batch.length : null;
}

/** After a batch that timed a miss: waits for its calls, and throws unless each passed its request on. */
async function settle(batch, state) {
  for (let i = 0; i < 100 && state.passed + state.failed < batch.length; i++) await turn();
  const answered = batch.filter(([, res]) => res.headersSent || res.writableEnded).length;
  if (state.passed !== batch.length) {
    throw new Error(`[bench] only ${state.passed} of ${batch.length} calls passed the request on (${answered} answered)`);
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** One batch of `v` on fresh requests, the event loop run before it: its ns per call (run again after a miss). */
async function timed(v, config) {
  for (;;) {
    const batch = requests(v.key, config.batch, v.ip, v.express);
    await turn();
    const state = { passed: 0, failed: 0 };
    const ns = timeBatch(v.fn, batch, state);
    if (ns !== null) return ns;
    await settle(batch, state);
  }
}

/**
 * ns per call of each variant, round by round: batches interleaved in a random order each round. A
 * variant may have batches of its own size (`batch`), as many calls per round in all.
 */
async function measure(list, config) {
  const perRound = Object.fromEntries(list.map((v) => [v.id, []]));
  const sized = list.map((v) => {
    const batch = v.batch ?? config.batch;
    return { ...v, config: { batch, batches: Math.max(1, Math.round((config.batch * config.batches) / batch)) } };
  });
  // Warm-up: the key cached, the code optimized; not counted.
  for (const v of sized) for (let b = 0; b < Math.max(5, v.config.batches / 2); b++) await timed(v, v.config);
  for (let round = 0; round < config.rounds; round++) {
    for (const v of shuffle(sized)) {
      let ns = 0;
      for (let b = 0; b < v.config.batches; b++) ns += await timed(v, v.config);
      perRound[v.id].push(ns / v.config.batches);
    }
  }
  return perRound;
}

/** The Map check and apiKeyAuth() of a default Till, in a child process, on requests of one kind (`kind`: the variants' fields). */
async function mapAndTill(config, suffix, what, kind) {
  const till = createTill({ logger: silentLogger });
  const made = await till.keys.create({ name: 'percall', scopes: ['bench:read'] });
  if (!(await till.verify(made.key)).valid) throw new Error('[bench] the benchmark key does not verify');
  const list = [
    { id: `map${suffix}`, label: `Map check, ${what} (own process)`, key: made.key, ...kind, fn: mapCheck(made.key, made.record) },
    { id: `till${suffix}`, label: `apiKeyAuth(), ${what} (own process)`, key: made.key, ...kind, fn: apiKeyAuth({ till }) },
  ];
  try {
    return { perRound: await measure(list, config), labels: list.map(({ id, label }) => ({ id, label })) };
  } finally {
    await till.close();
  }
}

/**
 * Child: the Map check and apiKeyAuth() on requests as Express hands them to a middleware, their
 * prototypes set to the app's (Express does it for every request). Each object then has a hidden class
 * of its own, and every property added to it costs V8 a new one: the Map check adds one (req.apiKey).
 */
export const expressShaped = ({ config }) => mapAndTill(config, 'Express', 'requests as Express hands them', { express: true });

/** Child: the Map check and apiKeyAuth() on requests made 2,000 at a time, out of the core's cache when called (see the top of this file). */
export const madeAhead = ({ config }) => mapAndTill(config, 'Ahead', `requests made ${int(AHEAD)} ahead`, { batch: AHEAD });

function shuffle(list) {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export async function main() {
  const log = console.log;
  const config = settings({
    rounds: { env: 'BENCH_ROUNDS', value: 40, quick: 5, integer: true },
    batches: { env: 'BENCH_PERCALL_BATCHES', value: 400, quick: 40, integer: true },
    batch: { env: 'BENCH_PERCALL_BATCH', value: 50, quick: 50, integer: true },
  });
  const m = machine();
  log(header('Till per-call benchmark', m));
  log(
    `  ${config.rounds} rounds; each variant per round: ${config.batches} batches of ${int(config.batch)} calls on fresh IncomingMessage/ServerResponse objects, the event loop run between batches`,
  );
  const { list, close } = await variants();
  let perRound;
  try {
    perRound = await measure(list, config);
  } finally {
    await close();
  }
  // Requests as Express hands them, in a process of their own: their hidden classes, one per object,
  // would otherwise make the code the variants above share see many more (megamorphic), and slow them.
  const shaped = await runChild('percall', 'expressShaped', { config });
  Object.assign(perRound, shaped.perRound);
  list.push(...shaped.labels);
  const ahead = await runChild('percall', 'madeAhead', { config });
  Object.assign(perRound, ahead.perRound);
  list.push(...ahead.labels);
  const others = await runChild('percall', 'otherConfigurations', { config });
  Object.assign(perRound, others.perRound);
  list.push(...others.labels);
  // The Express-shaped variants against the Map check of their own process.
  // Each variant against the baseline of its own process: the Map check, or, for the other
  // configurations, apiKeyAuth() of the default Till beside them (their x column says how much dearer).
  const OTHERS = new Set(others.labels.map((l) => l.id));
  const baseOf = (id) =>
    id.endsWith('Express') ? perRound.mapExpress : id.endsWith('Ahead') ? perRound.mapAhead : OTHERS.has(id) ? perRound.tillOthers : perRound.map;
  const ratioOf = (id) => perRound[id].map((ns, i) => ns / baseOf(id)[i]);
  const rows = [['middleware', 'ns per call', '90% interval', 'x Map check', '90% interval']];
  const results = {};
  for (const v of list) {
    const ns = perRound[v.id];
    const ratios = ratioOf(v.id);
    const nsInterval = medianInterval(ns);
    const ratioInterval = medianInterval(ratios);
    results[v.id] = { label: v.label, ns: median(ns), nsInterval, ratioToMap: median(ratios), ratioInterval, rounds: ns };
    rows.push([
      v.label,
      fixed(median(ns), 0),
      nsInterval ? `${fixed(nsInterval.low, 0)}-${fixed(nsInterval.high, 0)}` : '-',
      fixed(median(ratios), 3),
      ratioInterval ? `${fixed(ratioInterval.low, 3)}-${fixed(ratioInterval.high, 3)}` : '-',
    ]);
  }
  log('');
  log(`Results (median over ${config.rounds} rounds; x Map check = median of the round-by-round ratios, over the Map check of the same`);
  log('process; for the rows after "beside the configurations below", over apiKeyAuth() of that process)');
  log(table(rows));
  // Decided on Map over Till >= 1 / TARGET: the same as Till over Map <= TARGET, in the form verdict() takes.
  const decision = verdict(
    ratioOf('till').map((r) => 1 / r),
    { atLeast: 1 / TARGET },
  );
  const shown = decision.interval
    ? { ...decision, interval: { ...decision.interval, low: 1 / decision.interval.high, high: 1 / decision.interval.low } }
    : decision;
  log(`  target: apiKeyAuth() (usage tracking on) <= ${TARGET} x the Map check: median ${fixed(results.till.ratioToMap, 3)}, ${verdictText(shown)}`);
  // As Express hands them, and made ahead: Till over the Map check on the same kind of objects, round by round.
  const against = (what, till, map) => {
    const ratios = perRound[till].map((ns, i) => ns / perRound[map][i]);
    const interval = medianInterval(ratios);
    log(
      `  ${what}: apiKeyAuth() ${fixed(median(ratios), 3)} x the Map check${interval ? ` (90% interval ${fixed(interval.low, 3)}-${fixed(interval.high, 3)})` : ''}`,
    );
    return { ratio: median(ratios), interval };
  };
  const expressResult = against('requests as Express hands them', 'tillExpress', 'mapExpress');
  const aheadResult = against(`requests made ${int(AHEAD)} ahead (out of the core's cache)`, 'tillAhead', 'mapAhead');
  // What the allowlist adds: ns over apiKeyAuth() without one, round by round.
  const allowlist = {};
  for (const id of ['allowlist', 'allowlistMapped', 'allowlistTurns']) {
    const added = perRound[id].map((ns, i) => ns - perRound.tillOthers[i]);
    const interval = medianInterval(added);
    allowlist[id] = { addedNs: median(added), interval, rounds: added };
    const within = interval ? interval.high <= ALLOWLIST_TARGET_NS : median(added) <= ALLOWLIST_TARGET_NS;
    log(
      `  ${results[id].label}: adds ${fixed(median(added), 1)} ns per call${interval ? ` (90% interval ${fixed(interval.low, 1)} to ${fixed(interval.high, 1)})` : ''}; target <= ${ALLOWLIST_TARGET_NS} ns: ${within ? 'met' : 'NOT MET'}`,
    );
  }
  log(
    `  saved to ${save('bench/results/percall.json', { date: new Date().toISOString(), machine: m, config, results, target: TARGET, verdict: decision.verdict, onExpress: expressResult, madeAhead: aheadResult, allowlist, allowlistTargetNs: ALLOWLIST_TARGET_NS })}`,
  );
}
