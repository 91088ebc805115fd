// Core microbenchmark: cached `verifier.verify(key)` calls per second on one core, beside the pieces it is
// made of (parseKey, SHA-256, Map.get) and, as a second figure, with a pepper (HMAC-SHA-256).
// Run alone with `node bench/core.mjs` (after `pnpm build`), or through `pnpm bench`.
import { createHmac, hash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createTill, parseKey, silentLogger } from '@till/core';
import { envNumber, fixed, int, machineBusy, median, table } from './stats.mjs';

/** The target: cached verifications per second on one core. */
export const CORE_TARGET = 500_000;

export function coreConfigFromEnv() {
  return {
    calls: envNumber('BENCH_CORE_CALLS', 1_000_000, { integer: true }),
    repetitions: envNumber('BENCH_CORE_REPS', 5, { integer: true }),
  };
}

/**
 * Each case is its own loop function (so V8 optimizes each on its own) that returns how many calls
 * gave the expected answer: the count keeps the work from being optimized away and proves it was done.
 * `refresh` runs before each timed repetition (it re-warms the verifier's cache, whose TTL is 30 s).
 */
async function makeCases() {
  const pepper = 'bench-pepper-0123456789abcdef';
  const plain = createTill({ logger: silentLogger });
  const peppered = createTill({ logger: silentLogger, pepper });
  // The same verifier without usage tracking and audit events: what they cost on the cached path.
  const untracked = createTill({ logger: silentLogger, usage: false, auditEvents: false });
  const { key, record } = await plain.keys.create({ name: 'bench', scopes: ['bench:read'] });
  const { key: untrackedKey } = await untracked.keys.create({ name: 'bench', scopes: ['bench:read'] });
  const { key: pepperedKey } = await peppered.keys.create({ name: 'bench', scopes: ['bench:read'] });
  const map = new Map([[record.id, record]]);
  const id = record.id;
  const refresh = (till, k) => async () => {
    const r = await till.verify(k);
    if (!r.valid) throw new Error(`[bench] the benchmark key does not verify: ${r.code}`);
  };
  return {
    cases: [
      {
        id: 'verify',
        label: 'verifier.verify(key), cached',
        refresh: refresh(plain, key),
        run(n) {
          const verifier = plain.verifier;
          let ok = 0;
          // A promise (a cache miss) has no `valid`, so it would not count.
          for (let i = 0; i < n; i++) if (verifier.verify(key).valid === true) ok++;
          return ok;
        },
      },
      {
        id: 'verifyUntracked',
        label: 'verify, cached, no usage tracking',
        refresh: refresh(untracked, untrackedKey),
        run(n) {
          const verifier = untracked.verifier;
          let ok = 0;
          for (let i = 0; i < n; i++) if (verifier.verify(untrackedKey).valid === true) ok++;
          return ok;
        },
      },
      {
        id: 'parseKey',
        label: 'parseKey(key) alone',
        run(n) {
          let ok = 0;
          for (let i = 0; i < n; i++) if (parseKey(key).ok) ok++;
          return ok;
        },
      },
      {
        id: 'sha256',
        label: "crypto.hash('sha256', key) alone",
        run(n) {
          let ok = 0;
          for (let i = 0; i < n; i++) if (hash('sha256', key).length === 64) ok++;
          return ok;
        },
      },
      {
        // The call hash.ts makes: the same digest, returned as a Buffer.
        id: 'sha256Buffer',
        label: "crypto.hash('sha256', key, 'buffer')",
        run(n) {
          let ok = 0;
          for (let i = 0; i < n; i++) if (hash('sha256', key, 'buffer').length === 32) ok++;
          return ok;
        },
      },
      {
        id: 'mapGet',
        label: 'Map.get(id) alone',
        run(n) {
          let ok = 0;
          for (let i = 0; i < n; i++) if (map.get(id) !== undefined) ok++;
          return ok;
        },
      },
      {
        id: 'verifyPepper',
        label: 'verifier.verify(key), cached, pepper',
        refresh: refresh(peppered, pepperedKey),
        run(n) {
          const verifier = peppered.verifier;
          let ok = 0;
          for (let i = 0; i < n; i++) if (verifier.verify(pepperedKey).valid === true) ok++;
          return ok;
        },
      },
      {
        id: 'hmac',
        label: 'HMAC-SHA-256 of key alone',
        run(n) {
          let ok = 0;
          for (let i = 0; i < n; i++) if (createHmac('sha256', pepper).update(pepperedKey).digest().length === 32) ok++;
          return ok;
        },
      },
    ],
    close: () => Promise.all([plain.close(), peppered.close(), untracked.close()]),
  };
}

function timeOnce(c, calls) {
  const start = process.hrtime.bigint();
  const ok = c.run(calls);
  const ns = Number(process.hrtime.bigint() - start);
  if (ok !== calls) throw new Error(`[bench] ${c.label}: only ${ok} of ${calls} calls gave the expected answer`);
  return ns;
}

export async function runCore(config = coreConfigFromEnv(), log = console.log) {
  log(`Core: ${int(config.calls)} calls per repetition, ${config.repetitions} repetitions, one core (median reported)`);
  const { cases, close } = await makeCases();
  const results = {};
  try {
    for (const c of cases) {
      await c.refresh?.();
      timeOnce(c, Math.min(config.calls, 200_000)); // warm-up: let V8 optimize the loop
      const rates = [];
      const before = { machine: machineBusy(), self: process.cpuUsage(), at: process.hrtime.bigint() };
      for (let i = 0; i < config.repetitions; i++) {
        await c.refresh?.();
        rates.push(config.calls / (timeOnce(c, config.calls) / 1e9));
      }
      const self = process.cpuUsage(before.self);
      const machine = machineBusy();
      // CPU that this process did not use: other programs, which make the figures noisy.
      const otherCores = machine === null || before.machine === null ? null
        : Math.max(0, (machine - before.machine - self.user - self.system) / (Number(process.hrtime.bigint() - before.at) / 1000));
      const perSecond = median(rates);
      results[c.id] = { label: c.label, perSecond, nsPerCall: 1e9 / perSecond, rates, otherCores };
      log(`  ${c.label.padEnd(40)} ${int(perSecond).padStart(12)} calls/s` + (otherCores === null ? '' : `   other load ${fixed(otherCores, 2)} cores`));
    }
  } finally {
    await close();
  }
  const verify = results.verify.perSecond;
  return {
    config,
    results,
    // How fast verify runs relative to each piece: verify calls/s divided by the piece's calls/s.
    ratios: {
      verifyToParseKey: verify / results.parseKey.perSecond,
      verifyToSha256: verify / results.sha256.perSecond,
      verifyToSha256Buffer: verify / results.sha256Buffer.perSecond,
      verifyToMapGet: verify / results.mapGet.perSecond,
      verifyPepperToVerify: results.verifyPepper.perSecond / verify,
      verifyPepperToHmac: results.verifyPepper.perSecond / results.hmac.perSecond,
      trackedToUntracked: verify / results.verifyUntracked.perSecond,
    },
    target: CORE_TARGET,
    pass: verify >= CORE_TARGET,
  };
}

export function printCore(result, log = console.log) {
  const r = result.results;
  const verify = r.verify.perSecond;
  const rel = (id, base) => fixed(r[id].perSecond / base, 3);
  log('');
  log(`Core results (median of ${result.config.repetitions} repetitions of ${int(result.config.calls)} calls; ratio = this / verify)`);
  log(table([
    ['case', 'calls/s', 'ns/call', 'ratio'],
    ...['verify', 'verifyUntracked', 'parseKey', 'sha256', 'sha256Buffer', 'mapGet'].map((id) => [r[id].label, int(r[id].perSecond), fixed(r[id].nsPerCall, 0), rel(id, verify)]),
    ...['verifyPepper', 'hmac'].map((id) => [r[id].label, int(r[id].perSecond), fixed(r[id].nsPerCall, 0), rel(id, verify)]),
  ]));
  // A cached verification is one JavaScript SHA-256 of the key (no native call) plus the cache
  // lookup and status checks; parseKey runs only for keys that are not cached.
  log(`  verify ${fixed(r.verify.nsPerCall, 0)} ns per cached key, against node:crypto's SHA-256 alone at ${fixed(r.sha256.nsPerCall, 0)} ns (hex) ` +
    `and ${fixed(r.sha256Buffer.nsPerCall, 0)} ns (Buffer) in this tight loop`);
  log(`  with a pepper: ${int(r.verifyPepper.perSecond)}/s, ${fixed(result.ratios.verifyPepperToVerify, 3)} x the SHA-256 figure`);
  log(`  usage tracking and audit events on (the default) against off: ${fixed(result.ratios.trackedToUntracked, 3)} x (target >= 0.95: ` +
    `${result.ratios.trackedToUntracked >= 0.95 ? 'PASS' : 'FAIL'})`);
  const busiest = Math.max(...Object.values(r).map((x) => x.otherCores ?? 0));
  if (busiest > 0.15) log(`  note: other programs used up to ${fixed(busiest, 2)} cores meanwhile: the figures are noisy`);
  log(`  target: >= ${int(result.target)} cached verifications/s: ${int(verify)} -> ${result.pass ? 'PASS' : 'FAIL'}`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runCore();
  if (process.send) process.send(result);
  else printCore(result);
}
