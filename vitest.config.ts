import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the sources; test/dist-imports.test.ts checks the built packages.
    alias: [
      { find: /^@till\/core\/http$/, replacement: src('./packages/core/src/http/index.ts') },
      { find: /^@till\/core\/redis$/, replacement: src('./packages/core/src/redis/index.ts') },
      { find: /^@till\/core\/metrics$/, replacement: src('./packages/core/src/metrics/index.ts') },
      { find: /^@till\/core$/, replacement: src('./packages/core/src/index.ts') },
      { find: /^@till\/express$/, replacement: src('./packages/express/src/index.ts') },
      { find: /^@till\/koa$/, replacement: src('./packages/koa/src/index.ts') },
      // The testkit too; only the processes the tests fork run its build (tools/testkit/dist).
      { find: /^@till\/testkit\/(.+)$/, replacement: src('./tools/testkit/src/$1.ts') },
      { find: /^@till\/console\/(express|koa|fastify)$/, replacement: src('./packages/console/src/$1.ts') },
      { find: /^@till\/console$/, replacement: src('./packages/console/src/index.ts') },
      { find: /^@till\/fastify$/, replacement: src('./packages/fastify/src/index.ts') },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Drills run alone, by `pnpm test:drills` (see test/drills).
    exclude: ['**/node_modules/**', 'test/drills/**', 'test/packed/**'],
    globalSetup: ['./test/global-setup.ts'],
    reporters: ['default', './tools/testkit/src/summary-reporter.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Two test files at a time: vitest's default is one fewer than the CPUs, which on a 2-core machine
    // ran the suite one file after another. Every test waits on conditions, not on time, so the load
    // of the other file is no excuse for a failure (the suite also runs beside a CPU-bound process).
    maxWorkers: 2,
  },
});
