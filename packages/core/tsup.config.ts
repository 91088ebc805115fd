import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', http: 'src/http/index.ts', redis: 'src/redis/index.ts', metrics: 'src/metrics/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  // Shared chunks in the CommonJS build too: the root and http entries must share one module state
  // (one defaultTill(), one context per request), not each carry a copy of it.
  splitting: true,
  // import.meta.url in the CommonJS build (the metrics entry's createRequire of prom-client).
  shims: true,
  // The Redis entry loads ioredis and the metrics entry prom-client; the root and http entries must pull in neither.
  external: ['ioredis', 'prom-client', '@till/core/redis', '@till/core/metrics'],
});
