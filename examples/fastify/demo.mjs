// The Fastify demo: two keys in an in-memory Till, the example app on PORT, and curl lines to try.
// Run with `pnpm demo:fastify` from the repository root (it builds the packages first).
import { createServer } from 'node:http';
import { runDemo } from '../run-demo.mjs';
import { createApp } from './app.mjs';

/**
 * The demo listens on a Node server of its own, as with Express and Koa, so that it reports a port in
 * use the same way; Fastify's `app.routing` is the handler its own server would use.
 */
function serve({ till }) {
  const app = createApp({ till });
  const ready = app.ready();
  return { listen: (port) => createServer((req, res) => void ready.then(() => app.routing(req, res))).listen(port) };
}

await runDemo({ framework: 'Fastify', command: 'pnpm demo:fastify', createApp: serve });
