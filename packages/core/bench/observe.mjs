// What the diagnostics channels cost a cached verification: `verifier.verify(key)` with no subscriber
// (the publishing code path is then one `hasSubscribers` read), with one subscriber to `till:verify`,
// and, given BENCH_BASELINE, the same call by a build without the publishing code path.
//
//   pnpm build && node packages/core/bench/observe.mjs
//   # beside a build of an older commit (one made before the channels, say):
//   git worktree add /tmp/till-base <commit> && (cd /tmp/till-base && pnpm install && pnpm build)
//   BENCH_BASELINE=/tmp/till-base/packages/core/dist/index.js node packages/core/bench/observe.mjs
//
// Prints CPU time per call (ns, median of rounds): on a machine shared with other work, CPU time moves
// less than wall time. The cases alternate within each round, so that a busy neighbour slows each alike.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import * as core from '@till/core';

const CALLS = Number(process.env.BENCH_CALLS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);

/** A loop of cached verifications by a Till of `build`; it returns how many were valid (so the calls are not optimized away). */
async function cachedVerifications(build) {
  // A long TTL: the key stays cached however long a busy machine makes the rounds take.
  const till = build.createTill({ logger: build.silentLogger, usage: false, auditEvents: false, cache: { ttl: 3_600_000 } });
  const { key } = await till.keys.create({ name: 'bench', scopes: [] });
  if (!(await till.verify(key)).valid) throw new Error('[bench] the key does not verify');
  const verifier = till.verifier;
  // Each case is a function of its own, so that V8 optimizes each on its own.
  const run = new Function('verifier', 'key', 'calls', 'let valid = 0; for (let i = 0; i < calls; i++) if (verifier.verify(key).valid) valid++; return valid;');
  return { till, loop: () => run(verifier, key, CALLS) };
}

function measure(loop) {
  const start = process.cpuUsage();
  const valid = loop();
  const used = process.cpuUsage(start);
  if (valid !== CALLS) throw new Error(`[bench] ${CALLS - valid} calls did not verify`);
  return ((used.user + used.system) * 1000) / CALLS;
}

const plain = await cachedVerifications(core);
const heard = [];
const subscriber = (message) => {
  if (heard.length < 1) heard.push(message);
};
const observed = await cachedVerifications(core);
const cases = {
  'verify(), no subscriber': plain.loop,
  'verify(), one till:verify subscriber': () => {
    subscribe('till:verify', subscriber);
    try {
      return observed.loop();
    } finally {
      unsubscribe('till:verify', subscriber);
    }
  },
};
if (process.env.BENCH_BASELINE) cases['verify() of BENCH_BASELINE'] = (await cachedVerifications(await import(process.env.BENCH_BASELINE))).loop;

const results = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
for (const loop of Object.values(cases)) measure(loop); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, loop] of Object.entries(cases)) results[name].push(measure(loop));
}
if (heard.length !== 1) throw new Error('[bench] the subscriber heard nothing');

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
console.log(`node ${process.version}, ${CALLS.toLocaleString('en')} cached verifications per round, ${ROUNDS} rounds, median CPU ns per call`);
for (const [name, values] of Object.entries(results))
  console.log(`${name.padEnd(40)} ${median(values).toFixed(1).padStart(7)} ns  (min ${Math.min(...values).toFixed(1)})`);
const base = results['verify() of BENCH_BASELINE'];
if (base !== undefined) {
  const [now, then] = [median(results['verify(), no subscriber']), median(base)];
  console.log(`no subscriber against the baseline: ${(now - then).toFixed(1)} ns per call (${(((now - then) / then) * 100).toFixed(1)}%)`);
}
await plain.till.close();
await observed.till.close();
