// What the diagnostics channels cost a cached verification: `verifier.verify(key)` (one
// `hasSubscribers` read, then the answer) against the same answer without the publishing code path
// (the verifier's private `answer`), with no subscriber; then with one subscriber to `till:verify`.
// Run with `node packages/core/bench/observe.mjs` after `pnpm build`. Prints ns per call, median of rounds.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { createTill, silentLogger } from '@till/core';

const CALLS = Number(process.env.BENCH_CALLS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);

// A long TTL: the key stays cached however long a busy machine makes the rounds take.
const till = createTill({ logger: silentLogger, usage: false, auditEvents: false, cache: { ttl: 3_600_000 } });
const { key } = await till.keys.create({ name: 'bench', scopes: [] });
if (!(await till.verify(key)).valid) throw new Error('[bench] the key does not verify');
const verifier = till.verifier;

// Each case is its own loop, so that V8 optimizes each on its own; the count keeps the calls from being optimized away.
const cases = {
  'verify() (publishing path, no subscriber)': () => {
    let valid = 0;
    for (let i = 0; i < CALLS; i++) if (verifier.verify(key).valid) valid++;
    return valid;
  },
  'answer() (no publishing path)': () => {
    let valid = 0;
    for (let i = 0; i < CALLS; i++) if (verifier.answer(key).valid) valid++;
    return valid;
  },
};

function measure(run) {
  const start = performance.now();
  const valid = run();
  const ns = ((performance.now() - start) * 1e6) / CALLS;
  if (valid !== CALLS) throw new Error(`[bench] ${CALLS - valid} calls did not verify`);
  return ns;
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
const results = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
for (const run of Object.values(cases)) measure(run); // warm-up
// Rounds alternate the cases, so that a busy neighbour slows both alike.
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of Object.entries(cases)) results[name].push(measure(run));
}
const heard = [];
const subscriber = (message) => {
  if (heard.length < 1) heard.push(message);
};
subscribe('till:verify', subscriber);
const subscribed = [];
measure(cases['verify() (publishing path, no subscriber)']);
for (let round = 0; round < ROUNDS; round++) subscribed.push(measure(cases['verify() (publishing path, no subscriber)']));
unsubscribe('till:verify', subscriber);
if (heard.length !== 1) throw new Error('[bench] the subscriber heard nothing');

console.log(`node ${process.version}, ${CALLS.toLocaleString('en')} cached verifications per round, ${ROUNDS} rounds, median ns per call`);
for (const [name, values] of Object.entries(results)) console.log(`${name.padEnd(46)} ${median(values).toFixed(1).padStart(7)} ns  (min ${Math.min(...values).toFixed(1)})`);
console.log(`${'verify() with one till:verify subscriber'.padEnd(46)} ${median(subscribed).toFixed(1).padStart(7)} ns  (min ${Math.min(...subscribed).toFixed(1)})`);
const [withPath, without] = Object.values(results).map(median);
console.log(`publishing path, no subscriber: ${(withPath - without).toFixed(1)} ns per call (${(((withPath - without) / without) * 100).toFixed(1)}%)`);
await till.close();
