import { defineConfig } from 'tsup';

// The tests import the testkit's TypeScript sources (vitest aliases @till/testkit/* to src/). This build is
// for what plain node runs: the child processes the tests fork (src/processes/) and the benchmarks' imports.
export default defineConfig({
  entry: ['src/*.ts', 'src/processes/*.ts'],
  format: ['esm'],
  dts: false,
  clean: true,
  target: 'node20',
  // Loaded from node_modules at run time: the processes run the BUILT packages, one copy each.
  external: [/^@till\//, 'ioredis', 'express', 'koa', 'vitest', 'supertest', 'fast-check'],
});
