// The heap and RSS part of `pnpm bench memory`: what one cached key costs a verifying process, with no
// Redis in the way. A store of its own makes each key's record when it is read (parsed from JSON, as a
// Redis store's are) and keeps nothing, so the process's growth is the cache's. A fresh child (with
// --expose-gc) verifies BENCH_CACHE keys with the default settings (usage tracking on; its counts
// flushed before measuring), then reports heap growth per cached key against its own baseline (the
// same process after a first verification) and its RSS once settled. Targets: <= 400 B of heap per
// cached key; RSS <= 150 MB with a 100,000-entry cache.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { crc32 } from 'node:zlib';
import { createTill, MemoryStore, silentLogger } from '@till/core';

const MB = 1024 * 1024;
const HEAP_TARGET = 400; // bytes per cached key
const RSS_TARGET = 150 * MB;
const DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const base62 = (n, width) => {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = DIGITS[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
};

/** Key number `i`: a well-formed key (prefix, 16-character id, 22-character secret, CRC-32 check), the same every time. */
function keyOf(i) {
  const secret = createHash('sha256').update(`secret ${i}`).digest();
  let s = '';
  for (let j = 0; j < 22; j++) s += DIGITS[secret[j] % 62];
  const head = `bench_${base62(i, 16)}${s}`;
  return head + base62(crc32(head), 6);
}

const indexOf = (id) => {
  let n = 0;
  for (const c of id) n = n * 62 + DIGITS.indexOf(c);
  return n;
};

/**
 * Records made on each read (every field, as a Redis store decodes them), never kept: the keys of the Redis
 * part (a name, one of 10,000 owners, two scopes). Usage is written nowhere.
 */
class MadeStore extends MemoryStore {
  get(id) {
    const key = keyOf(indexOf(id));
    const hash = createHash('sha256').update(key).digest('base64url');
    const json =
      `{"version":1,"id":"${id}","prefix":"bench","hash":"${hash}","name":"service ${indexOf(id)}","ownerId":"team-${indexOf(id) % 10_000}","scopes":["orders:read","orders:write"],"metadata":{},"createdAt":${1_700_000_000_000 + indexOf(id)},"updatedAt":${1_700_000_000_000 + indexOf(id)},"hashAlgorithm":"sha256",` +
      '"expiresAt":null,"notBefore":null,"revokedAt":null,"revokedReason":null,"disabled":false,"rotatedFrom":null,"rotatedTo":null,"limits":[],"credits":null,"allowedIps":[],"roles":[]}';
    return Promise.resolve(JSON.parse(json));
  }

  recordUsage() {
    return Promise.resolve();
  }
}

/** Child (--expose-gc): fills a cache of `cache` keys and measures the process. */
export async function cacheHeap({ cache }) {
  const gc = globalThis.gc;
  const settle = async () => {
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 100));
    }
    return process.memoryUsage();
  };
  const till = createTill({ store: new MadeStore(), logger: silentLogger, cache: { max: cache, ttl: 3_600_000 } });
  // The code paths loaded and the usage tracker's window opened, before the baseline.
  for (let i = cache; i < cache + 100; i++) await till.verify(keyOf(i));
  await till.usage?.flush();
  till.verifier.invalidate(null);
  const baseline = await settle();
  let invalid = 0;
  for (let i = 0; i < cache; i++) {
    const key = keyOf(i);
    // A miss, then a hit: the cache holds what a key's later requests use.
    const first = await till.verify(key);
    if (!first.valid || !(await till.verify(key)).valid) invalid++;
  }
  const filled = till.verifier.stats.hits;
  await till.usage?.flush();
  const settled = await settle();
  await till.close();
  return {
    cache,
    invalid,
    hits: filled,
    heapPerKey: (settled.heapUsed - baseline.heapUsed) / cache,
    baseline: { rss: baseline.rss, heapUsed: baseline.heapUsed },
    settled: { rss: settled.rss, heapUsed: settled.heapUsed },
  };
}

/**
 * The measured process runs this file and nothing else (not the benchmark harness, whose load generator
 * alone adds 30 MB of RSS): a process with Till and its cache, as a service has.
 */
function runMeasured(cache) {
  const child = fork(fileURLToPath(import.meta.url), [String(cache)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    let result;
    child.on('message', (message) => (result = message));
    child.once('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`[bench] memory cacheHeap exited with code ${code}`))));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href && process.send) {
  const result = await cacheHeap({ cache: Number(process.argv[2]) });
  process.send(result, () => process.exit(0));
}

/** Parent: runs cacheHeap in a fresh process and prints it. */
export async function reportCacheHeap(cache) {
  const { fixed, int } = await import('./harness.mjs');
  const r = await runMeasured(cache);
  console.log(`  Cache of ${int(cache)} keys, no Redis (records made on each read), default settings:`);
  console.log(
    `    heap ${int(r.heapPerKey)} B per cached key (heap used ${fixed(r.baseline.heapUsed / MB, 1)} MB before, ${fixed(r.settled.heapUsed / MB, 1)} MB with the cache full); ` +
      `target <= ${HEAP_TARGET}: ${r.heapPerKey <= HEAP_TARGET && r.invalid === 0 ? 'PASS' : 'FAIL'}`,
  );
  console.log(
    `    RSS settled ${fixed(r.settled.rss / MB, 1)} MB (${fixed(r.baseline.rss / MB, 1)} MB before the first key); target <= ${RSS_TARGET / MB} MB` +
      `${cache === 100_000 ? `: ${r.settled.rss <= RSS_TARGET && r.invalid === 0 ? 'PASS' : 'FAIL'}` : ' (decided with BENCH_CACHE=100000 only)'}`,
  );
  if (r.invalid > 0) console.log(`    ${int(r.invalid)} keys did not verify: every key was valid, so this is a defect`);
  return r;
}
