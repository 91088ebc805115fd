// `pnpm bench http`: a hello-world Express 5 app (`GET /` answers `ok`) in six variants, each its own
// server process pinned to CPU 1 with the load generator on CPU 0: requests/s of each against bare
// Express in the same rounds, and each one's server CPU per request with its spread. The target is one
// this machine can decide: apiKeyAuth() is not decidably slower than a hand-written Map check (the 90%
// interval of its requests/s over the Map check's reaches 1.0). A few points against bare Express cannot
// be decided here (bare's own CPU per request wanders by a quarter within minutes); `pnpm bench percall`
// carries that weight. Writes bench/results/http.json and, in a full run, the chart docs/bench-http.svg.
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
  quick,
  ratioCells,
  runPaired,
  runRounds,
  save,
  serve as listen,
  startServers,
  summarizeRounds,
  table,
} from './harness.mjs';
import { median, medianInterval, quartiles, roundRatios, verdict, verdictText } from './stats.mjs';

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
const OVERHEAD_TARGET = 0.95;

/** The decisive set by default: bare, the Map check and Till, as many rounds as a decision needs. */
const DEFAULT_VARIANTS = ['map', 'till'];

/** BENCH_VARIANTS (ids, comma-separated; bare always runs), `all`, or the default set. */
function chosenVariants() {
  const raw = process.env.BENCH_VARIANTS?.trim();
  if (raw === 'all') return VARIANTS;
  if (!raw) return VARIANTS.filter((v) => v.id === 'bare' || DEFAULT_VARIANTS.includes(v.id));
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
  // 40 pinned rounds: what the interval of a ratio of a few points needs on this kind of machine.
  const config = httpSettings({ rounds: { value: 40 } });
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
    rows = summarizeRounds(variants, runs);
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
  log('  server CPU per request over the rounds (us): ' + rows.map((v) => `${v.label} ${cpuSpread(v)}`).join('; '));
  const note = loadNote(rows);
  if (note) log(note);
  if (paired)
    log(`  side by side (median of ${config.pairedRounds} rounds, x bare): ` + rows.map((v) => `${v.label} ${fixed(paired[v.id].ratio, 3)}`).join(', '));
  const find = (id) => rows.find((v) => v.id === id);
  const [till, map, observed, quiet] = ['till', 'map', 'observed', 'quiet'].map(find);
  const targets = {};
  if (till && map) {
    const over = roundRatios(till.runs, map.runs);
    const interval = medianInterval(over);
    // Not decidably slower: the interval of the median reaches 1.0. FAIL only when all of it lies below.
    const decision =
      interval === null
        ? { verdict: 'NOT DECIDED', interval: null, why: `${over.length} rounds are too few for a 90% interval` }
        : { verdict: interval.high >= 1 ? 'PASS' : 'FAIL', interval };
    targets.overMap = { ratio: median(over), rounds: over.length, decision, cpu: { till: cpuSpread(till), map: cpuSpread(map) } };
    log(
      `  target: apiKeyAuth() not decidably slower than the Map check (interval reaches 1.0) over ${over.length} rounds: median ${fixed(targets.overMap.ratio, 3)}, ${verdictText(decision)}`,
    );
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
  const result = { date: new Date().toISOString(), machine: m, config: { ...shown, variants: variants.map((v) => v.id) }, variants: rows, paired, targets };
  const chartNote =
    quick || config.rounds < 20 ? 'chart not drawn (a quick run, or fewer than 20 rounds)' : `chart ${save('docs/bench-http.svg', chart(result))}`;
  log(`  saved to ${save('bench/results/http.json', result)}; ${chartNote}`);
}

/** A variant's server CPU per request over the rounds: median (25th-75th percentile). */
function cpuSpread(v) {
  const values = v.runs.map((r) => r.serverCpuPerRequestUs);
  const [q1, q3] = quartiles(values);
  return `${fixed(median(values), 1)} (${fixed(q1, 1)}-${fixed(q3, 1)})`;
}

/** The chart of docs/performance.md: each variant's requests/s over bare Express (median, middle half) and its CPU per request. */
function chart({ variants, config, date, targets }) {
  const width = 760;
  const rowHeight = 34;
  const top = 64;
  const left = 250;
  const plot = 330;
  const height = top + variants.length * rowHeight + 40;
  const max = Math.max(1.1, ...variants.map((v) => v.ratioQuartiles[1]));
  const x = (ratio) => left + (ratio / max) * plot;
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = variants.map((v, i) => {
    const y = top + i * rowHeight;
    const cpu = v.runs.map((r) => r.serverCpuPerRequestUs);
    return [
      `<text x="${left - 10}" y="${y + 17}" text-anchor="end">${esc(v.label)}</text>`,
      `<rect x="${left}" y="${y + 6}" width="${(x(v.ratio) - left).toFixed(1)}" height="16" fill="${v.id === 'till' ? '#1f6feb' : '#8c959f'}"/>`,
      `<line x1="${x(v.ratioQuartiles[0]).toFixed(1)}" x2="${x(v.ratioQuartiles[1]).toFixed(1)}" y1="${y + 14}" y2="${y + 14}" stroke="#24292f" stroke-width="2"/>`,
      `<text x="${left + plot + 12}" y="${y + 17}">${fixed(v.ratio, 3)} x bare · ${fixed(median(cpu), 1)} us CPU/req</text>`,
    ].join('');
  });
  const over = targets.overMap;
  const subtitle = over
    ? `apiKeyAuth() over the Map check: ${fixed(over.ratio, 3)}, ${over.decision.interval ? `${Math.round(over.decision.interval.coverage * 100)}% interval ${fixed(over.decision.interval.low, 3)}-${fixed(over.decision.interval.high, 3)}` : 'no interval'} (${over.decision.verdict})`
    : '';
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13" fill="#24292f">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="15" font-weight="600">Express 5, GET /: requests/s over bare Express (median of ${config.rounds} pinned rounds, bar: middle half)</text>`,
    `<text x="16" y="44" fill="#57606a">${esc(subtitle)} · ${esc(date.slice(0, 10))}</text>`,
    `<line x1="${x(1).toFixed(1)}" x2="${x(1).toFixed(1)}" y1="${top - 4}" y2="${top + variants.length * rowHeight}" stroke="#cf222e" stroke-dasharray="4 3"/>`,
    ...rows,
    `<text x="${x(1).toFixed(1)}" y="${top + variants.length * rowHeight + 18}" text-anchor="middle" fill="#cf222e">1.0 = bare</text>`,
    '</svg>',
  ].join('\n');
}
