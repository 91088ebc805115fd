// The protocol of the benchmarks' HTTP servers (children of http.mjs): listen on a free loopback port and
// report { port, key } over IPC (the key never printed), answer 'cpu' with the process's CPU time so far,
// and exit normally when the parent goes away (so --cpu-prof writes its profile), after `close`.
import { createServer } from 'node:http';

export function serveForBench(app, key, close = async () => {}) {
  const server = createServer(app);
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port, key }));
  // CPU per request is a figure that other load on the machine disturbs far less than requests/s.
  process.on('message', (message) => {
    if (message === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send({ cpu: user + system });
    }
  });
  process.on('disconnect', async () => {
    server.close();
    server.closeAllConnections();
    await close().catch(() => {});
    process.exit(0);
  });
  return server;
}

/** The least an API key check can do, for reference: one Map lookup of the Authorization header. */
export function mapCheck(key, id) {
  const keys = new Map([[`Bearer ${key}`, { id }]]);
  return (req, res, next) => {
    const found = keys.get(req.headers.authorization);
    if (found === undefined) {
      res.status(401).end();
      return;
    }
    req.apiKey = found;
    next();
  };
}
