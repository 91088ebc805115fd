import { defineConfig } from 'tsup';

// The dashboard: one browser script (no framework, no CDN) and the files of dashboard/public, into
// dist/dashboard, where the console serves them from. Built after the library (its build cleans dist).
export default defineConfig({
  entry: { app: 'dashboard/app.ts' },
  outDir: 'dist/dashboard',
  format: ['iife'],
  platform: 'browser',
  target: 'es2022',
  dts: false,
  clean: false,
  sourcemap: false,
  minify: true,
  outExtension: () => ({ js: '.js' }),
  publicDir: 'dashboard/public',
  tsconfig: 'dashboard/tsconfig.json',
});
