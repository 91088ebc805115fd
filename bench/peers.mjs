// `pnpm bench peers`: Till beside other ways of checking an API key, in one run. The same Express 5 route
// (`GET /` answers {"hello":"world"}) behind seven variants, each its own server process; each
// authenticating one must answer 200 with its key and 401 without, with a wrong one and with junk before
// it is measured. Targets: Till cached >= 0.95 x bare; Till ahead of every other authenticating contestant.
// Writes bench/results/peers.json and the chart docs/bench-peers.svg.
import { createHash, randomBytes } from 'node:crypto';
import express from 'express';
import { Redis } from 'ioredis';
import { apiKeyAuth } from '@till/express';
import {
  fixed,
  header,
  httpSettings,
  quick,
  int,
  loadNote,
  machine,
  mapCheck,
  pairedRatio,
  ratioCells,
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
import { allOf, median, roundRatios, verdict, verdictText } from './stats.mjs';

const VARIANTS = [
  { id: 'bare', label: 'express (bare)', authenticates: false },
  { id: 'map', label: 'hand-written Map check', authenticates: true },
  { id: 'passport', label: 'passport-headerapikey', authenticates: true },
  { id: 'better-auth', label: 'better-auth apiKey()', authenticates: true },
  { id: 'redis', label: 'naive Redis GET', authenticates: true },
  { id: 'till', label: 'Till, cached key', authenticates: true },
  { id: 'till-limits', label: 'Till, cached + limit', authenticates: true },
];
const TILL = new Set(['till', 'till-limits']);
const TARGET = 0.95;
const BODY = JSON.stringify({ hello: 'world' });

const randomKey = (prefix) => `${prefix}_${randomBytes(32).toString('base64url')}`;
const bearer = (req) => (req.headers.authorization?.startsWith('Bearer ') ? req.headers.authorization.slice(7) : undefined);

/** A middleware that answers 401 unless `check(presented key)` resolves to a record. */
const checkedBy = (check) => (req, res, next) => {
  const presented = bearer(req);
  if (presented === undefined) return void res.status(401).end();
  check(presented).then((found) => {
    if (!found) return void res.status(401).end();
    req.apiKey = found;
    next();
  }, next);
};

/** Each contestant as its own documentation sets it up; returns its key. */
const CONTESTANTS = {
  bare: async () => randomKey('bare'), // holds a key like the others, never looks at it
  map: async (app) => {
    const key = randomKey('map');
    app.use(mapCheck(key, 'key_1'));
    return key;
  },
  // passport-headerapikey's README setup; with session: false, passport 0.7 needs no initialize().
  passport: async (app) => {
    const { default: passport } = await import('passport');
    const { HeaderAPIKeyStrategy } = await import('passport-headerapikey');
    const key = randomKey('pp');
    const keys = new Map([[key, { id: 'key_1' }]]);
    passport.use(new HeaderAPIKeyStrategy({ header: 'Authorization', prefix: 'Bearer ' }, false, (apiKey, done) => done(null, keys.get(apiKey) ?? false)));
    app.use(passport.authenticate('headerapikey', { session: false }));
    return key;
  },
  // better-auth 1.7.5 with @better-auth/api-key 1.7.5 (one shared core) on its memory adapter; each request
  // verified by auth.api.verifyApiKey(), the plugin's server-side check. Rate limiting off for fairness
  // (the plugin's default is 10 requests a day); it still records lastRequest on every verification.
  'better-auth': async (app) => {
    const { betterAuth } = await import('better-auth');
    const { memoryAdapter } = await import('better-auth/adapters/memory');
    const { apiKey } = await import('@better-auth/api-key');
    const auth = betterAuth({
      baseURL: 'http://127.0.0.1',
      secret: randomBytes(32).toString('hex'),
      database: memoryAdapter({ user: [], session: [], account: [], verification: [], apikey: [] }),
      emailAndPassword: { enabled: true },
      rateLimit: { enabled: false },
      telemetry: { enabled: false },
      logger: { disabled: true },
      plugins: [apiKey({ rateLimit: { enabled: false } })],
    });
    const { user } = await auth.api.signUpEmail({ body: { email: 'bench@example.com', password: randomBytes(16).toString('hex'), name: 'bench' } });
    const { key } = await auth.api.createApiKey({ body: { userId: user.id, name: 'bench' } });
    app.use(
      checkedBy(async (presented) => {
        const result = await auth.api.verifyApiKey({ body: { key: presented } });
        return result.valid ? result.key : null;
      }),
    );
    return key;
  },
  // The naive way: sha256(key) -> JSON record in Redis, one GET per request.
  redis: async (app, { redisUrl, namespace }, closers) => {
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    closers.push(async () => client.disconnect());
    const sha256 = (value) => createHash('sha256').update(value).digest('hex');
    const key = randomKey('rd');
    await client.set(`${namespace}naive:${sha256(key)}`, JSON.stringify({ id: 'key_1', name: 'bench', scopes: ['bench:read'] }));
    app.use(
      checkedBy(async (presented) => {
        const value = await client.get(`${namespace}naive:${sha256(presented)}`);
        return value === null ? null : JSON.parse(value);
      }),
    );
    return key;
  },
  // apiKeyAuth() with its defaults on a RedisStore; till-limits adds a per-key limit that never refuses.
  till: async (app, { redisUrl, namespace, variant }, closers) => {
    const till = tillOnRedis(redisUrl, namespace, closers);
    const { key } = await till.keys.create({ name: 'bench', scopes: ['bench:read'] });
    app.use(apiKeyAuth({ till, ...(variant === 'till-limits' && { limits: [{ name: 'api', limit: NEVER_REACHED, window: '1h' }] }) }));
    return key;
  },
};
CONTESTANTS['till-limits'] = CONTESTANTS.till;

export async function serve(args) {
  const closers = [];
  const app = express();
  const key = await CONTESTANTS[args.variant](app, args, closers);
  app.get('/', (_req, res) => void res.json({ hello: 'world' }));
  listen(app, [key], { close: () => Promise.allSettled(closers.map((close) => close())) });
}

/** Fails loudly unless the server answers 200 and the body with its key and, when it authenticates, 401 to a missing, wrong or junk key. */
async function check(variant, server) {
  const get = async (key) => {
    const res = await fetch(server.url, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  };
  const [key] = server.keys;
  const valid = await get(key);
  const seen = { valid: valid.status };
  const problems = valid.status === 200 && valid.body === BODY ? [] : [`answered ${valid.status} with its valid key, expected 200 and ${BODY}`];
  if (variant.authenticates) {
    const wrong = key.slice(0, -1) + (key.at(-1) === 'A' ? 'B' : 'A');
    for (const [name, k] of [
      ['missing', undefined],
      ['wrong', wrong],
      ['junk', 'not-a-key'],
    ]) {
      seen[name] = (await get(k)).status;
      if (seen[name] !== 401) problems.push(`answered ${seen[name]} to a request with ${name === 'missing' ? 'no' : `a ${name}`} key, expected 401`);
    }
  }
  if (problems.length > 0) throw new Error(`[bench] ${variant.label} does not authenticate as it should, so it is not measured: ${problems.join('; ')}`);
  return seen;
}

/** Back to back decides (a server with a CPU to itself, as deployed); side by side is printed beside. */
function targetsOf(rows, paired) {
  const till = rows.find((v) => v.id === 'till');
  const over = (id) => {
    const ratios = roundRatios(till.runs, rows.find((v) => v.id === id).runs);
    return { backToBack: median(ratios), paired: paired ? pairedRatio(paired, 'till', id) : null, decision: verdict(ratios, { above: 1 }) };
  };
  const ahead = Object.fromEntries(rows.filter((v) => v.authenticates && !TILL.has(v.id)).map((v) => [v.id, over(v.id)]));
  return {
    bare: { target: TARGET, backToBack: till.ratio, paired: paired?.till.ratio ?? null, decision: till.decision },
    ahead: { over: ahead, verdict: allOf(Object.values(ahead).map((r) => r.decision)) },
  };
}

function print(rows, paired, targets, config, log) {
  log('');
  log(
    `Results (median of ${config.rounds} back-to-back rounds; x bare = median over rounds of requests/s over bare Express's in the same round, middle half = its 25th to 75th percentile` +
      (paired ? `; side by side = the same over ${config.pairedRounds} rounds with all variants loaded at once` : '') +
      ')',
  );
  log(
    table([
      ['variant', 'req/s', 'p50 ms', 'p99 ms', 'x bare', 'middle half', ...(paired ? ['side by side x bare'] : []), 'server CPU us/req'],
      ...rows.map((v) => [
        v.label,
        int(v.rps),
        v.p50,
        v.p99,
        ...ratioCells(v),
        ...(paired ? [fixed(paired[v.id].ratio, 3)] : []),
        fixed(v.serverCpuPerRequestUs, 1),
      ]),
    ]),
  );
  log(
    `  bare Express in this run: ${int(rows[0].rps)} req/s; server CPU us/req leaves out Redis's own CPU (naive Redis GET and Till with a limit use it per request)`,
  );
  const note = loadNote(rows);
  if (note) log(note);
  log('');
  log(`Targets (decided back to back${paired ? '; side by side beside it' : ''})`);
  const b = targets.bare;
  log(
    `  Till cached >= ${b.target} x bare Express: ` +
      (b.paired === null ? '' : `side by side ${fixed(b.paired, 3)}, `) +
      `back to back median ${fixed(b.backToBack, 3)}, ${verdictText(b.decision)}`,
  );
  const parts = Object.entries(targets.ahead.over).map(
    ([id, r]) =>
      `${rows.find((v) => v.id === id).label} ` +
      (r.paired === null ? '' : `${fixed(r.paired, 3)} side by side, `) +
      `${fixed(r.backToBack, 3)} back to back (${verdictText(r.decision)})`,
  );
  log(`  Till cached ahead of every other authenticating contestant (Till's req/s over theirs): ${parts.join('; ')} -> ${targets.ahead.verdict}`);
}

const escapeXml = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Horizontal bars of requests/s (back-to-back medians) with the ratio to bare, as a hand-written SVG. */
function chart({ rows, paired, machine: m, config, date }) {
  const [width, labelW, barMax, rowH, top] = [940, 200, 360, 34, 58];
  const height = top + rows.length * rowH + 62;
  const max = Math.max(...rows.map((v) => v.rps));
  const colour = (v) => (TILL.has(v.id) ? '#2f6fde' : v.id === 'bare' ? '#8a8f98' : '#c9923a');
  const bars = rows.map((v, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, Math.round((v.rps / max) * barMax));
    const note = v.id === 'bare' ? 'baseline' : `${fixed(v.ratio, 3)}x bare` + (paired ? ` (side by side ${fixed(paired[v.id].ratio, 3)}x)` : '');
    return [
      `  <text x="${labelW - 10}" y="${y + 18}" text-anchor="end" font-weight="${TILL.has(v.id) ? 'bold' : 'normal'}">${escapeXml(v.label)}</text>`,
      `  <rect x="${labelW}" y="${y + 4}" width="${w}" height="${rowH - 12}" rx="3" fill="${colour(v)}"/>`,
      `  <text x="${labelW + w + 8}" y="${y + 18}">${escapeXml(`${int(v.rps)} req/s, ${note}`)}</text>`,
    ].join('\n');
  });
  const sub = `${m.cores} x ${m.cpu}, Node ${m.node}, ${date.slice(0, 10)}; median of ${config.rounds} rounds of ${config.duration} s, ${config.connections} connections`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13" fill="#24292f">`,
    `  <rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `  <text x="16" y="24" font-size="15" font-weight="bold">${escapeXml('Express 5 hello world, API key checked per request: requests/s (higher is better)')}</text>`,
    `  <text x="16" y="44" font-size="12" fill="#57606a">${escapeXml(sub)}</text>`,
    ...bars,
    `  <text x="16" y="${height - 30}" font-size="11" fill="#57606a">${escapeXml('pnpm bench peers. Bars: median requests/s of the back-to-back rounds (one server loaded at a time).')}</text>`,
    `  <text x="16" y="${height - 14}" font-size="11" fill="#57606a">${escapeXml("Ratios: median of each round's ratio to bare Express in the same run; side by side: all seven servers loaded at once on one CPU.")}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

export async function main() {
  const log = console.log;
  const config = {
    // Fewer rounds than `pnpm bench http` (seven variants), so a default run stays near 6 minutes.
    ...httpSettings({ rounds: { value: 5 }, pairedRounds: { value: 5 } }),
    ...settings({ timeout: { env: 'BENCH_PEERS_TIMEOUT', value: 720 } }),
  };
  const m = machine();
  const { redis, namespace, admin, version } = await benchRedis('peers');
  log(header('Till against peers', m));
  log(`  Redis ${version} at ${redis.host}, key prefix ${namespace} (deleted afterwards)`);
  log(
    `  GET / on 127.0.0.1, ${config.connections} connections, ${config.rounds} rounds x ${VARIANTS.length} variants x 2 (in a random order, then in reverse) x ` +
      `(${config.warmup} s warm-up + ${config.duration} s)` +
      (config.pairedRounds > 0 ? `, then ${config.pairedRounds} side-by-side rounds` : '') +
      (config.pin ? '; load on CPU 0, servers on CPU 1, Redis where the scheduler puts it' : ''),
  );
  let stop = async () => {};
  const { cleanup, deadline } = boundedRun({
    name: 'bench peers',
    envName: 'BENCH_PEERS_TIMEOUT',
    seconds: config.timeout,
    redis,
    admin,
    namespace,
    stop: () => stop(),
  });
  try {
    const started = await startServers('peers', VARIANTS, config, { redisUrl: redis.url, namespace });
    stop = started.stop;
    log('');
    log('Checks before measuring (status with the valid key; then without a key, with a wrong key, with junk):');
    const checks = {};
    for (const v of VARIANTS) {
      const s = (checks[v.id] = await check(v, started.servers[v.id]));
      log(`  ${v.label.padEnd(24)} ${s.valid}` + (v.authenticates ? ` / ${s.missing} ${s.wrong} ${s.junk}: authenticates` : ': no authentication (bare)'));
    }
    log('');
    log(`Back to back: ${config.rounds} rounds`);
    const runs = await runRounds(started.servers, VARIANTS, config, log, { refresh: started.refresh });
    const rows = summarizeRounds(VARIANTS, runs, { till: { atLeast: TARGET } });
    const paired = await runPaired(started.servers, VARIANTS, config, log, started.refresh);
    const targets = targetsOf(rows, paired);
    print(rows, paired, targets, config, log);
    const { found, left } = await cleanup();
    const { profileDir, ...shown } = config;
    const result = {
      date: new Date().toISOString(),
      machine: m,
      redis: { version, host: redis.host, namespace },
      config: shown,
      checks,
      rows,
      paired,
      targets,
    };
    log('');
    log(`Redis: ${found ?? '?'} keys under ${namespace} deleted, ${left ?? '?'} left`);
    // A quick run decides nothing: it leaves the repository's chart alone.
    log(`saved to ${save('bench/results/peers.json', result)}; chart ${quick ? 'not drawn in a quick run' : save('docs/bench-peers.svg', chart(result))}`);
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}
