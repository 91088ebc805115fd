// One variant of the hello-world Express 5 app for bench/limits.mjs, each in its own process:
//   bare  Express alone;
//   till  apiKeyAuth({ till, bruteForce: false, limits: [...] }): Till charges a per-key Redis limit;
//   rlf   apiKeyAuth({ till, bruteForce: false }) for authentication, then rate-limiter-flexible's
//         RateLimiterRedis as the per-key limit, as its README's Express middleware does it, setting
//         the same RateLimit and RateLimit-Policy headers Till sends.
// Started with fork(): argv is [variant, redisUrl, namespace, keys]; reports { port, keys } over IPC once
// listening, answers 'sample' with its CPU time, requests served and Redis traffic, and exits when its
// parent goes away. Every ioredis client of this process is counted: see countRedisTraffic().
import { createServer } from 'node:http';
import express from 'express';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { tillOnRedis } from './redis-run.mjs';

const [variant, redisUrl, namespace, keyCount = '1'] = process.argv.slice(2);
if (!['bare', 'till', 'rlf'].includes(variant) || !redisUrl || !namespace || !(Number(keyCount) >= 1) || !process.send) {
  console.error('[bench] [limits-server] start me with fork() from bench/limits.mjs: <bare|till|rlf> <redis url> <namespace> [keys]');
  process.exit(2);
}

/** The limit both limited variants apply per key: never reached during a run. */
const LIMIT = 1_000_000_000;

/**
 * Counts what this process's ioredis clients send, by wrapping Redis.prototype.sendCommand (every
 * command of every client, its duplicates included, goes through it, scripts too):
 * - a command sent on its own is one round trip: the caller waits for its answer;
 * - commands queued in a pipeline or MULTI/EXEC are written together by exec(), in one write: each
 *   command counts as a command, the batch as one round trip.
 * A script called by ioredis's defineCommand() is one EVALSHA (EVAL the first time on a connection, and
 * again after a NOSCRIPT answer, which the wrapper then counts as a second round trip).
 */
function countRedisTraffic() {
  const traffic = { roundTrips: 0, commands: 0, byName: {}, clients: new Set() };
  const batches = new WeakSet();
  const send = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function countedSendCommand(command, stream, ...rest) {
    traffic.clients.add(this);
    const batch = stream?.isPipeline ? stream : null;
    if (batch === null) traffic.roundTrips++;
    else if (!batches.has(batch)) {
      batches.add(batch);
      traffic.roundTrips++;
    }
    const sent = send.call(this, command, stream, ...rest);
    // Read after sending: a script command names itself eval or evalsha as it is written.
    traffic.commands++;
    traffic.byName[command.name] = (traffic.byName[command.name] ?? 0) + 1;
    return sent;
  };
  return traffic;
}

const traffic = countRedisTraffic();
const closers = [];

const redisTill = () => tillOnRedis(redisUrl, namespace, closers);

// Every variant holds a key and the load generator sends it to all of them, so requests are alike;
// bare Express keeps its key in memory and never looks at it.
const till = variant === 'bare' ? createTill({ logger: silentLogger }) : redisTill();
const keys = [];
for (let i = 0; i < Number(keyCount); i++) keys.push((await till.keys.create({ name: `bench ${i}`, scopes: [] })).key);

const app = express();
if (variant === 'till') {
  app.use(apiKeyAuth({ till, bruteForce: false, limits: [{ name: 'api', limit: LIMIT, window: '1h' }] }));
} else if (variant === 'rlf') {
  app.use(apiKeyAuth({ till, bruteForce: false }));
  // As rate-limiter-flexible's README shows it for Express (keyed here by the verified key's id).
  const redisClient = new Redis(redisUrl, { enableOfflineQueue: false });
  await new Promise((resolve, reject) => {
    redisClient.once('ready', resolve);
    redisClient.once('error', reject);
  });
  closers.push(async () => redisClient.disconnect());
  const rateLimiter = new RateLimiterRedis({ storeClient: redisClient, keyPrefix: `${namespace}rlflx`, points: LIMIT, duration: 3600 });
  // With the headers its README's header example sets, in the form Till sends them, so that both
  // variants put the same bytes on the wire.
  app.use((req, res, next) => {
    rateLimiter
      .consume(req.apiKey.id)
      .then((r) => {
        res.setHeader('ratelimit-policy', `"api";q=${LIMIT};w=3600`);
        res.setHeader('ratelimit', `"api";r=${r.remainingPoints};t=${Math.ceil(r.msBeforeNext / 1000)}`);
        next();
      })
      .catch(() => res.status(429).send('Too Many Requests'));
  });
}
app.get('/', (_req, res) => {
  res.send('ok');
});

// Requests are counted as they arrive, in every variant alike, so Redis traffic divides by what was served.
let requests = 0;
const server = createServer((req, res) => {
  requests++;
  app(req, res);
});
server.listen(0, '127.0.0.1', () => {
  // The keys go to the parent over IPC only: they are never printed.
  process.send({ port: server.address().port, keys });
});

/**
 * Resolves once every command sent has been answered, so Redis has run all of them (at most 1 s).
 * A request sends its command in the tick it arrives in; the parent reads INFO after this answers.
 */
async function drained() {
  for (let i = 0; i < 200 && [...traffic.clients].some((client) => client.commandQueue.length > 0); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

process.on('message', async (message) => {
  if (message !== 'sample') return;
  await drained();
  const { user, system } = process.cpuUsage();
  process.send({ cpu: user + system, requests, redis: { roundTrips: traffic.roundTrips, commands: traffic.commands, byName: { ...traffic.byName } } });
});

// Exiting normally (not by a signal) lets --cpu-prof write its profile.
process.on('disconnect', async () => {
  server.close();
  server.closeAllConnections();
  await Promise.allSettled(closers.map((close) => close()));
  process.exit(0);
});
