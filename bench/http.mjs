// `pnpm bench http`: a hello-world Express 5 app (`GET /` answers `ok`) in six variants, each its own
// server process: requests/s of each against bare Express in the same rounds. Targets: apiKeyAuth() >=
// 0.95 x bare; tracking, audit events, alerts and metrics on >= 0.95 x all off. Writes bench/results/http.json.
import express from 'express';
import { createAlerts, createTill, silentLogger } from '@till/core';
import { createMetrics } from '@till/core/metrics';
import { apiKeyAuth } from '@till/express';
import {
  fixed,
  header,
  httpSettings,
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
  startServers,
  summarizeRounds,
  table,
} from './harness.mjs';
import { median, roundRatios, verdict, verdictText } from './stats.mjs';

const VARIANTS = [
  { id: 'bare', label: 'express (bare)' },
  // The floor for any middleware: one more layer in Express's router that only calls next().
  { id: 'noop', label: 'express + empty middleware' },
  { id: 'till', label: 'express + apiKeyAuth()' },
  // The least an API key check can do: one Map lookup of the header, for reference.
  { id: 'map', label: 'express + Map check' },
  // What usage tracking, audit events and outcome listeners (alerts, metrics) cost: all off, all on.
  { id: 'quiet', label: 'apiKeyAuth(), tracking off' },
  { id: 'observed', label: 'apiKeyAuth() + alerts, metrics' },
];
const TARGET = 0.95;
const OVERHEAD_TARGET = 0.95;

/** BENCH_VARIANTS (ids, comma-separated; bare always runs), or all: a few variants afford the many rounds one comparison needs. */
function chosenVariants() {
  const raw = process.env.BENCH_VARIANTS?.trim();
  if (!raw) return VARIANTS;
  const ids = raw
    .split(',')
    .map((id) => id.trim())
    .filter(Boolean);
  const unknown = ids.filter((id) => !VARIANTS.some((v) => v.id === id));
  if (unknown.length > 0) throw new Error(`[bench] BENCH_VARIANTS: unknown variant ${unknown.join(', ')}; known: ${VARIANTS.map((v) => v.id).join(', ')}`);
  return VARIANTS.filter((v) => v.id === 'bare' || ids.includes(v.id));
}

export async function serve({ variant }) {
  // Every variant holds a key and is sent it, so requests are alike. till: the defaults (usage tracking and
  // audit events on, nobody listening); quiet: both off; observed: the defaults plus alerts and metrics.
  const till = createTill({ logger: silentLogger, ...(variant === 'quiet' && { usage: false, auditEvents: false }) });
  if (variant === 'observed') {
    const alerts = createAlerts(till, {
      rules: [{ type: 'ip-failures', threshold: 20, window: '1m' }, { type: 'revoked-key-used' }, { type: 'quota-low', below: 10 }],
      sinks: [() => {}],
    });
    createMetrics(till, { alerts });
  }
  const { key, record } = await till.keys.create({ name: 'bench', scopes: ['bench:read'] });
  const app = express();
  if (['till', 'quiet', 'observed'].includes(variant)) app.use(apiKeyAuth({ till }));
  else if (variant === 'noop') app.use((_req, _res, next) => next());
  else if (variant === 'map') app.use(mapCheck(key, record.id));
  app.get('/', (_req, res) => void res.send('ok'));
  listen(app, [key]);
}

export async function main() {
  const log = console.log;
  const config = httpSettings();
  const variants = chosenVariants();
  const m = machine();
  log(header('Till HTTP benchmark', m));
  log(
    `  GET / on 127.0.0.1, ${config.connections} connections, ${config.rounds} rounds x ${variants.length} variants x 2 (in a random order, then in reverse) x ` +
      `(${config.warmup} s warm-up + ${config.duration} s)` +
      (config.pin ? ', load on CPU 0, servers on CPU 1' : '') +
      (config.fresh ? ', new servers every round' : ''),
  );
  const { servers, refresh, stop } = await startServers('http', variants, config);
  let rows;
  let paired;
  try {
    const runs = await runRounds(servers, variants, config, log, { refresh });
    rows = summarizeRounds(variants, runs, { till: { atLeast: TARGET } });
    paired = await runPaired(servers, variants, config, log, refresh);
  } finally {
    await stop();
  }

  log('');
  log(
    `Results (median of ${config.rounds} rounds; ratio = median over rounds of requests/s over bare Express's in the same round; middle half = its 25th to 75th percentile)`,
  );
  log(
    table([
      ['variant', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'middle half', 'ratio by round', 'CPU us/req', 'CPU ratio'],
      ...rows.map((v) => [
        v.label,
        int(v.rps),
        v.p50,
        v.p99,
        ...ratioCells(v),
        v.roundRatios.map((x) => fixed(x, 3)).join(' '),
        fixed(v.serverCpuPerRequestUs, 1),
        fixed(v.cpuRatio, 3),
      ]),
    ]),
  );
  log("  CPU us/req: server process CPU per request; CPU ratio: bare's CPU/req over this one's (less disturbed by other load)");
  const note = loadNote(rows);
  if (note) log(note);
  if (paired)
    log(`  side by side (median of ${config.pairedRounds} rounds, x bare): ` + rows.map((v) => `${v.label} ${fixed(paired[v.id].ratio, 3)}`).join(', '));
  const find = (id) => rows.find((v) => v.id === id);
  const [till, map, observed, quiet] = ['till', 'map', 'observed', 'quiet'].map(find);
  const targets = {};
  if (till) {
    targets.till = { ratio: till.ratio, decision: till.decision };
    log(`  target: apiKeyAuth() >= ${TARGET} x bare Express: median ${fixed(till.ratio, 3)}, ${verdictText(till.decision)}`);
  }
  if (till && map) {
    const over = roundRatios(till.runs, map.runs);
    targets.overMap = { ratio: median(over), decision: verdict(over, { above: 1 }) };
    log(`  apiKeyAuth() over the Map check: median ${fixed(targets.overMap.ratio, 3)}, ${verdictText(targets.overMap.decision)} (ahead of it)`);
  }
  if (observed && quiet) {
    // Decided back to back (a server with a CPU to itself); side by side printed beside.
    const ratios = roundRatios(observed.runs, quiet.runs);
    targets.overhead = {
      ratio: median(ratios),
      paired: paired ? pairedRatio(paired, 'observed', 'quiet') : null,
      decision: verdict(ratios, { atLeast: OVERHEAD_TARGET }),
    };
    log(
      `  target: usage tracking, audit events, alerts and metrics on >= ${OVERHEAD_TARGET} x all off: back to back median ${fixed(targets.overhead.ratio, 3)}` +
        (paired ? ` (side by side ${fixed(targets.overhead.paired, 3)})` : '') +
        `, ${verdictText(targets.overhead.decision)}`,
    );
  }
  const { profileDir, ...shown } = config;
  log(
    `  saved to ${save('bench/results/http.json', { date: new Date().toISOString(), machine: m, config: { ...shown, variants: variants.map((v) => v.id) }, variants: rows, paired, targets })}`,
  );
}
