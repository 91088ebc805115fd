import { defineConfig } from 'vitest/config';

// `pnpm test:pack`: the packed packages installed with npm outside the workspace (test/packed). No
// aliases here: everything comes from the tarballs.
export default defineConfig({
  test: {
    include: ['test/packed/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
