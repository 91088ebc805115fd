// The drills (test/drills): real failures staged on real servers, run alone by `pnpm test:drills`.
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/drills/**/*.test.ts'], exclude: ['**/node_modules/**'], fileParallelism: false },
});
