// The Express demo: two keys in an in-memory Till, the example app on PORT, and curl lines to try.
// Run with `pnpm demo` from the repository root (it builds the packages first).
import { runDemo } from '../run-demo.mjs';
import { createApp } from './app.mjs';

await runDemo({ framework: 'Express', command: 'pnpm demo', createApp });
