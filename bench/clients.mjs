// `pnpm bench clients`: the memory one process spends on failing clients. BENCH_CLIENTS distinct client
// addresses (default 1,000,000; half IPv4, half IPv6 from distinct /56 prefixes) each send one malformed
// key through apiKeyAuth() on the memory store, with brute-force protection, audit events and usage on, as
// a scan from a botnet would. Prints the heap growth against the same process before the flood (after a
// GC both times). With BENCH_WINDOW (a brute-force window like 5s instead of the default 5m), it also waits
// out the window and the block and prints what stays. Runs under --expose-gc (the runner sets it).
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { fixed, header, int, machine, settings } from './harness.mjs';

const MB = 1024 * 1024;

/** Heap used after a few full collections. */
async function heap() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

export async function main() {
  if (typeof globalThis.gc !== 'function') throw new Error('[bench] clients runs under node --expose-gc: start it with pnpm bench clients');
  const { clients } = settings({ clients: { env: 'BENCH_CLIENTS', value: 1_000_000, quick: 100_000, integer: true } });
  const window = process.env.BENCH_WINDOW;
  console.log(header('Till failing-clients benchmark', machine()));
  const till = createTill({ logger: silentLogger });
  const auth = apiKeyAuth({ till, ...(window !== undefined && { bruteForce: { window, block: window } }) });
  const res = { status: () => res, setHeader() {}, getHeader() {}, end() {} };
  const call = (ip) =>
    new Promise((resolve) => {
      res.end = resolve;
      auth({ headers: { authorization: 'Bearer till_not-a-key' }, rawHeaders: ['authorization', 'Bearer till_not-a-key'], ip }, res, resolve);
    });

  const before = await heap();
  for (let i = 0; i < clients; i++) {
    await call(
      i % 2 === 0
        ? `10.${(i >> 17) & 255}.${(i >> 9) & 255}.${(i >> 1) & 255}`
        : `2001:db8:${((i >> 9) & 0xffff).toString(16)}:${((i & 0x1ff) << 7).toString(16)}::1`,
    );
    if (i % 10_000 === 0) await till.auditWriter.flush();
  }
  await till.auditWriter.flush();
  const flooded = await heap();
  console.log(`  ${int(clients)} failing clients, one malformed key each (memory store, brute-force window ${window ?? '5m (default)'}):`);
  console.log(`  heap growth after the flood:        ${fixed((flooded - before) / MB, 1)} MB (against ${fixed(before / MB, 1)} MB before it, same process)`);
  if (window !== undefined) {
    // Past the window and the block (and the sweep that follows them): what is left is what stays.
    const ms = Number.parseInt(window, 10) * (window.endsWith('ms') ? 1 : window.endsWith('s') ? 1000 : 60_000);
    await new Promise((r) => setTimeout(r, 2 * ms + 1000));
    await call('192.0.2.1');
    await till.auditWriter.flush();
    console.log(`  heap growth once the window passed: ${fixed(((await heap()) - before) / MB, 1)} MB`);
  }
  await till.close();
}
