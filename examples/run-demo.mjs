// What every demo does: three keys in an in-memory Till, an example app on PORT, and curl lines to try.
import { createTill, generateKey } from '@till/core';

const DAY = 24 * 60 * 60 * 1000;

/**
 * Runs a demo: `createApp({ till })` returns something whose `listen(port)` gives a Node server (an
 * Express or Koa app; the Fastify demo wraps its app so). `framework` and `command` only change what
 * is printed. With `console: true` the app serves the Till console at /console (the Express demo), and
 * an admin key for it is made and printed.
 */
export async function runDemo({ framework, command, createApp, console: withConsole = false }) {
  const port = Number(process.env.PORT || 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`[demo] PORT must be a port number (0-65535), not ${JSON.stringify(process.env.PORT)}`);
    process.exit(1);
  }

  // The embedded memory store: nothing to set up, and the keys vanish when the demo stops.
  const till = createTill();
  const expiresAt = Date.now() + 30 * DAY;
  // The reader may make 5 requests a minute (a burst of 5, then one every 12 s): its responses carry
  // the RateLimit headers, and a sixth request at once gets 429.
  const read = await till.keys.create({ name: 'demo reader', scopes: ['reports:read'], expiresAt, limits: [{ name: 'per-minute', limit: 5, window: '1m' }] });
  const admin = await till.keys.create({ name: 'demo admin', scopes: ['reports:*', 'keys:admin'], expiresAt });
  // The office key works only from its office's addresses (a documentation range here), so a request
  // from this machine is refused with 403 IP_NOT_ALLOWED: the key alone is not enough.
  const office = await till.keys.create({ name: 'demo office', scopes: ['reports:read'], expiresAt, allowedIps: ['203.0.113.0/24'] });
  // The console's own admin key: till:admin changes keys there, and nothing of the example app.
  const consoleAdmin = withConsole ? await till.keys.create({ name: 'console admin', scopes: ['till:admin'], expiresAt }) : null;

  const server = createApp({ till }).listen(port);

  server.once('error', async (error) => {
    if (error.code === 'EADDRINUSE') {
      console.error(`[demo] port ${port} is already in use. Stop what listens there, or pick another port: PORT=${port + 1} ${command}`);
    } else if (error.code === 'EACCES') {
      console.error(`[demo] not allowed to listen on port ${port}. Pick a port above 1023: PORT=3000 ${command}`);
    } else {
      console.error(`[demo] could not listen on port ${port}: ${error.message}`);
    }
    await till.close();
    process.exitCode = 1;
  });

  server.once('listening', () => {
    const base = `http://localhost:${server.address().port}`;
    // A well-formed key that this Till never issued: refused exactly like a wrong secret.
    const bogus = generateKey('till').key;
    const bearer = (key) => `-H "Authorization: Bearer ${key}"`;
    const until = new Date(expiresAt).toISOString().slice(0, 10);
    const limits = (record) => record.limits.map((l) => `   limit ${l.limit}/${l.window / 60_000}min`).join('');
    const ips = (record) => (record.allowedIps.length === 0 ? '' : `   from ${record.allowedIps.join(' ')}`);
    const describe = ({ key, record }) =>
      `  ${record.name.padEnd(12)} id ${record.id}   scopes ${record.scopes.join(' ')}   expires ${until}${limits(record)}${ips(record)}\n    ${key}`;
    console.log(`
Till demo (${framework}) listening on ${base}

Three API keys were created just now, in this process's memory (they vanish when it stops).
Each full key is shown here once, at creation: Till stores only its hash and can never show it again.
Anywhere else (logs, the audit trail, GET /v1/me) a key appears only by its public id.

${describe(read)}
${describe(admin)}
${describe(office)}

Try it (paste one line at a time):

# allowed: the read key lists reports -> 200, with RateLimit: "per-minute";r=4;t=12
curl -i ${bearer(read.key)} ${base}/v1/reports
# wrong scope: the read key cannot create a report -> 403 insufficient_scope
curl -i -X POST ${bearer(read.key)} -H "Content-Type: application/json" -d '{"title":"Q2"}' ${base}/v1/reports
# bad key: well-formed but never issued -> 401 invalid_token
curl -i ${bearer(bogus)} ${base}/v1/reports
# IP allowlist: the office key works only from 203.0.113.0/24, not from here -> 403, code IP_NOT_ALLOWED
curl -i ${bearer(office.key)} ${base}/v1/reports
# rate limit: the read key makes 5 requests a minute; a burst of 6 ends in 429 with Retry-After
for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w "%{http_code} " ${bearer(read.key)} ${base}/v1/reports; done; echo
# revoke: the admin key revokes the read key -> 204
curl -i -X DELETE ${bearer(admin.key)} -H "Content-Type: application/json" -d '{"reason":"demo"}' ${base}/v1/keys/${read.record.id}
# after that the read key is refused -> 401, code REVOKED
curl -i ${bearer(read.key)} ${base}/v1/reports

${
  consoleAdmin === null
    ? ''
    : `The Till console (keys, usage, audit findings, live events) is at ${base}/console/
Sign in there with its admin key (scope till:admin):

    ${consoleAdmin.key}

`
}Press Ctrl+C to stop.
`);
  });

  let stopping = false;
  async function stop(signal) {
    if (stopping) process.exit(1); // A second Ctrl+C does not wait.
    stopping = true;
    console.log(`\n[demo] ${signal}: stopping`);
    // Keep-alive connections (curl, browsers) would hold close() open: end them too.
    server.close();
    server.closeAllConnections();
    await till.close();
    // Everything is closed, so the process ends by itself; this only guards against a stuck socket.
    setTimeout(() => process.exit(0), 2000).unref();
  }
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
