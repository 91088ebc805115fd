// One variant of the hello-world Express 5 app, run as a child of bench/http.mjs so load and server use different cores.
// Started with fork(): it reports { port, key } over IPC once listening and exits when its parent goes away.
import express from 'express';
import { createAlerts, createTill, silentLogger } from '@till/core';
import { createMetrics } from '@till/core/metrics';
import { apiKeyAuth } from '@till/express';
import { mapCheck, serveForBench } from './serve.mjs';

const variant = process.argv[2];
const VARIANTS = ['bare', 'noop', 'till', 'map', 'quiet', 'observed'];
if (!VARIANTS.includes(variant)) {
  console.error(`[bench] [server] variant must be one of ${VARIANTS.join(', ')}`);
  process.exit(2);
}
if (!process.send) {
  console.error('[bench] [server] start me with child_process.fork() from bench/http.mjs');
  process.exit(2);
}

// Every variant holds a key, and the load generator sends it to all of them, so requests are alike.
// till: the defaults (usage tracking and audit events on, nobody listening to outcomes); quiet: both
// off; observed: the defaults plus alert rules and Prometheus metrics listening to every outcome.
const till = createTill({ logger: silentLogger, ...(variant === 'quiet' && { usage: false, auditEvents: false }) });
if (variant === 'observed') {
  const alerts = createAlerts(till, { rules: [{ type: 'ip-failures', threshold: 20, window: '1m' }, { type: 'revoked-key-used' }, { type: 'quota-low', below: 10 }], sinks: [() => {}] });
  createMetrics(till, { alerts });
}
const { key, record } = await till.keys.create({ name: 'bench', scopes: ['bench:read'] });

const app = express();
if (variant === 'till' || variant === 'quiet' || variant === 'observed') {
  app.use(apiKeyAuth({ till }));
} else if (variant === 'noop') {
  // The least any middleware costs: one more layer in Express's router that only calls next().
  app.use((_req, _res, next) => next());
} else if (variant === 'map') {
  // The least an API key check can do: one Map lookup of the header value, for reference.
  app.use(mapCheck(key, record.id));
}
app.get('/', (_req, res) => {
  res.send('ok');
});

serveForBench(app, key);
