// `pnpm bench:clients`: the memory one process spends on failing clients. BENCH_CLIENTS distinct client
// addresses (default 1,000,000; half IPv4, half IPv6 from distinct /56 prefixes) each send one malformed
// key through apiKeyAuth() on the memory store, with brute-force protection, audit events and usage on,
// as a scan from a botnet would. Prints the heap growth against the same process before the flood
// (after a GC both times). With BENCH_WINDOW (a brute-force window like 5s, instead of the default
// 5m), it also waits out the window and the block and prints what stays. Exit code 0 either way.
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { envNumber, int, fixed } from './stats.mjs';

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc (pnpm bench:clients does)');
  process.exit(1);
}
const CLIENTS = envNumber('BENCH_CLIENTS', 1_000_000);
const MB = 1024 * 1024;
const WINDOW = process.env.BENCH_WINDOW;
const till = createTill({ logger: silentLogger });
const auth = apiKeyAuth({ till, ...(WINDOW !== undefined && { bruteForce: { window: WINDOW, block: WINDOW } }) });
const res = { status() { return res; }, setHeader() {}, getHeader() {}, end() {} };
const call = (ip) => new Promise((resolve) => {
  const req = { headers: { authorization: 'Bearer till_not-a-key' }, rawHeaders: ['authorization', 'Bearer till_not-a-key'], ip };
  res.end = resolve;
  auth(req, res, resolve);
});
const heap = async () => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
};

const before = await heap();
for (let i = 0; i < CLIENTS; i++) {
  const ip = i % 2 === 0 ? `10.${(i >> 17) & 255}.${(i >> 9) & 255}.${(i >> 1) & 255}` : `2001:db8:${((i >> 9) & 0xffff).toString(16)}:${((i & 0x1ff) << 7).toString(16)}::1`;
  await call(ip);
  if (i % 10_000 === 0) await till.auditWriter.flush();
}
await till.auditWriter.flush();
const flooded = await heap();
console.log(`${int(CLIENTS)} failing clients, one malformed key each (memory store, brute-force window ${WINDOW ?? '5m (default)'}):`);
console.log(`  heap growth after the flood:        ${fixed((flooded - before) / MB, 1)} MB`);
if (WINDOW !== undefined) {
  // Past the window and the block (and the sweep that follows them): what is left is what stays.
  const ms = Number.parseInt(WINDOW, 10) * (WINDOW.endsWith('ms') ? 1 : WINDOW.endsWith('s') ? 1000 : 60_000);
  await new Promise((r) => setTimeout(r, 2 * ms + 1000));
  await call('192.0.2.1');
  await till.auditWriter.flush();
  const later = await heap();
  console.log(`  heap growth once the window passed: ${fixed((later - before) / MB, 1)} MB`);
}
await till.close();
