import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string };

export default defineConfig({
  // A command, not a library: one ESM entry that runs when executed, so no CommonJS build and no types.
  entry: { cli: 'src/cli.ts' },
  format: ['esm'],
  dts: false,
  clean: true,
  sourcemap: true,
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  define: { __TILL_CLI_VERSION__: JSON.stringify(version) },
  // Loaded from node_modules at run time: core (and its Redis entry) stay one copy, shared with the app.
  external: ['@till/core', '@till/core/redis', '@till/console', 'ioredis', 'commander'],
});
