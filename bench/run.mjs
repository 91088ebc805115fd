// `pnpm bench`: the HTTP benchmark, then the core microbenchmark in a fresh process; prints a summary
// and saves it to bench/results/latest.json. Targets print PASS, FAIL or NOT DECIDED; the exit code is 0 either way.
// Quick run: BENCH_DURATION=2 BENCH_ROUNDS=1 BENCH_CORE_CALLS=200000 pnpm bench
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { coreConfigFromEnv, printCore } from './core.mjs';
import { httpConfigFromEnv, OVERHEAD_TARGET, overheadOf, printHttp, runHttp } from './http.mjs';
import { fixed, int, machineInfo, runHeader, sourceState, verdictText } from './stats.mjs';

/** The core benchmark runs in its own process, so the HTTP run's heap and JIT state cannot touch it. */
function runCoreInChild() {
  const child = fork(fileURLToPath(new URL('./core.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    let result;
    child.once('message', (message) => (result = message));
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`[bench] the core benchmark exited with code ${code}`))));
  });
}

const httpConfig = httpConfigFromEnv();
coreConfigFromEnv(); // checked here too, so a bad setting fails before the long HTTP run
const machine = machineInfo();
const source = sourceState();
console.log(runHeader('Till benchmarks', machine, source));
console.log('');

const http = await runHttp(httpConfig);
printHttp(http);
console.log('');
const core = await runCoreInChild();
printCore(core);

const till = http.variants.find((v) => v.id === 'till');
console.log('');
console.log('Summary');
if (till !== undefined) {
  console.log(`  HTTP: express + apiKeyAuth() = ${fixed(till.ratio, 3)} x bare Express requests/s (${int(till.rps)} vs ${int(http.variants[0].rps)}); ` +
    `CPU ratio ${fixed(till.cpuRatio, 3)}; target >= ${http.target}: ${verdictText(http.decision)}`);
}
const overhead = overheadOf(http);
if (overhead !== null) {
  console.log(`  Overhead: usage tracking, audit events, alerts and metrics on = ${fixed(overhead.backToBack, 3)} x all off back to back` +
    `${overhead.paired === null ? '' : ` (side by side ${fixed(overhead.paired, 3)})`}; target >= ${OVERHEAD_TARGET}: ${verdictText(overhead.decision)}`);
}
console.log(`  Core: ${int(core.results.verify.perSecond)} cached verifications/s (pepper: ${int(core.results.verifyPepper.perSecond)}/s); ` +
  `target >= ${int(core.target)}: ${core.pass ? 'PASS' : 'FAIL'}`);

const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const file = `${dir}latest.json`;
writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), machine, source, http, core }, null, 2)}\n`);
console.log(`  saved to ${file.slice(fileURLToPath(new URL('..', import.meta.url)).length)}`);
