// `pnpm bench [--quick] [name...]`: runs benchmarks, each in a fresh process (so one's heap and JIT state
// cannot touch the next). Without a name, lists them and runs the default set; `pnpm bench list` only lists. `--quick` gives each its
// short settings, to check that it runs (its figures then decide nothing). Targets print PASS, FAIL or
// NOT DECIDED; the exit code is 0 either way, 1 when a benchmark could not run.
import { fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Every benchmark: its module is bench/<name>.mjs, which exports main() (and serve() when it forks servers). */
export const BENCHMARKS = {
  http: { default: true, about: 'Express 5 bare, with apiKeyAuth() on a cached key, an empty middleware, a Map check, tracking off and on: requests/s x bare' },
  percall: {
    about: 'what the function apiKeyAuth() returns costs per call on real request objects, beside an empty middleware and a Map check: ns x Map check',
  },
  core: { default: true, about: 'cached verify() calls/s on one core, beside parseKey, SHA-256, Map.get, HMAC' },
  limits: { about: 'a per-key Redis rate limit: Till against rate-limiter-flexible, x bare Express, Redis round trips counted' },
  peers: { about: 'the same route bare, with a Map check, passport, better-auth, a naive Redis GET and Till: x bare, Till over each' },
  revocation: { about: 'how long a revoked key, or a key whose identity changed, keeps working in 4 other processes, beside a plain Redis PUBLISH' },
  memory: { about: "1,000,000 keys in a Redis of its own: bytes per key, a verifying process's memory, hit rates; misses with reads batched and not" },
  clients: { about: 'heap growth of one process after 1,000,000 failing clients, against itself before', execArgv: ['--expose-gc'] },
};

function runOne(name, quick) {
  const child = fork(fileURLToPath(new URL('./child.mjs', import.meta.url)), [name, 'main', '{}'], {
    execArgv: BENCHMARKS[name].execArgv ?? [],
    env: { ...process.env, ...(quick && { BENCH_QUICK: '1' }) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
}

// Also imported by child.mjs for the list of names: it runs only as the entry.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const listOnly = args.includes('list');
  const names = args.filter((a) => a !== '--quick' && a !== 'list');
  const unknown = names.filter((n) => !Object.hasOwn(BENCHMARKS, n));
  if (unknown.length > 0 || args.includes('--help')) {
    if (unknown.length > 0) console.error(`[bench] unknown benchmark ${unknown.join(', ')}`);
    console.error(`usage: pnpm bench [list] [--quick] [${Object.keys(BENCHMARKS).join('|')}]...`);
    process.exit(2);
  }
  const chosen = names.length > 0 ? names : Object.keys(BENCHMARKS).filter((n) => BENCHMARKS[n].default);
  if (names.length === 0) {
    console.log('Benchmarks (pnpm bench <name>; * runs by default; see bench/README.md):');
    for (const [name, b] of Object.entries(BENCHMARKS)) console.log(`  ${b.default ? '*' : ' '} ${name.padEnd(11)} ${b.about}`);
    if (listOnly) process.exit(0);
    console.log('');
  }
  let failed = 0;
  for (const name of chosen) {
    if (chosen.length > 1) console.log(`=== ${name}`);
    if ((await runOne(name, quick)) !== 0) failed++;
    if (chosen.length > 1) console.log('');
  }
  process.exitCode = failed > 0 ? 1 : 0;
}
