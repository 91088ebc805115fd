// The Express demo: two keys in an in-memory Till, the example app on PORT, and curl lines to try;
// the Till console at /console, with an admin key to sign in with.
// Run with `pnpm demo` from the repository root (it builds the packages first).
import express from 'express';
import { tillConsole } from '@till/console/express';
import { runDemo } from '../run-demo.mjs';
import { createApp } from './app.mjs';

await runDemo({
  framework: 'Express',
  command: 'pnpm demo',
  console: true,
  createApp: ({ till }) => {
    const app = express();
    app.disable('x-powered-by');
    // Before the example app, whose own handlers answer what they do not know with 404.
    app.use('/console', tillConsole({ till }));
    app.use(createApp({ till }));
    return app;
  },
});
