// One variant of the hello-world Express 5 app, run as a child of bench/http.mjs so load and server use different cores.
// Started with fork(): it reports { port, key } over IPC once listening and exits when its parent goes away.
import { createServer } from 'node:http';
import express from 'express';
import { createAlerts, createTill, silentLogger } from '@till/core';
import { createMetrics } from '@till/core/metrics';
import { apiKeyAuth } from '@till/express';

const variant = process.argv[2];
const VARIANTS = ['bare', 'till', 'map', 'quiet', 'observed'];
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
} else if (variant === 'map') {
  // The least an API key check can do: one Map lookup of the header value, for reference.
  const keys = new Map([[`Bearer ${key}`, { id: record.id }]]);
  app.use((req, res, next) => {
    const found = keys.get(req.headers.authorization);
    if (found === undefined) {
      res.status(401).end();
      return;
    }
    req.apiKey = found;
    next();
  });
}
app.get('/', (_req, res) => {
  res.send('ok');
});

const server = createServer(app);
server.listen(0, '127.0.0.1', () => {
  // The key goes to the parent over IPC only: it is never printed.
  process.send({ port: server.address().port, key });
});

// The parent asks for this process's CPU time around each measured run: CPU per request is a figure
// that other load on the machine disturbs far less than requests per second.
process.on('message', (message) => {
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send({ cpu: user + system });
  }
});

// Exiting normally (not by a signal) lets --cpu-prof write its profile.
process.on('disconnect', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
