// One contestant of `pnpm bench:peers` (bench/peers.mjs): the same hello-world Express 5 route
// (`GET /` answers {"hello":"world"}) behind one way of checking an API key, each in its own process:
//   bare           no authentication (it holds a key, and the load generator sends it, but nobody reads it);
//   map            a hand-written check: the Authorization header looked up in a Map, 401 otherwise;
//   passport       passport with passport-headerapikey's HeaderAPIKeyStrategy (key looked up in a Map),
//                  session: false;
//   better-auth    better-auth with its API key plugin (@better-auth/api-key: it left better-auth/plugins
//                  in 1.7) on its memory adapter; each request verified by auth.api.verifyApiKey();
//   redis          a naive Redis lookup: GET of sha256(key) per request with ioredis, JSON.parse, 401 if missing;
//   till           Till's apiKeyAuth() on a RedisStore: the key is cached in process after its first request;
//   till-limits    the same plus a per-key Redis rate limit (one billion requests an hour: never refuses).
// Every authenticating variant reads the key from `Authorization: Bearer <key>` and answers 401 without it
// or with a wrong one; bench/peers.mjs checks that before it measures anything.
// Started with fork(): argv is [variant, redisUrl, namespace]; reports { port, key } over IPC once listening
// (the key is never printed), answers 'cpu' with its CPU time, and exits when its parent goes away.
import { createHash, randomBytes } from 'node:crypto';
import express from 'express';
import { Redis } from 'ioredis';
import { apiKeyAuth } from '@till/express';
import { tillOnRedis } from './redis-run.mjs';
import { mapCheck, serveForBench } from './serve.mjs';

const PEER_VARIANTS = ['bare', 'map', 'passport', 'better-auth', 'redis', 'till', 'till-limits'];

const [variant, redisUrl, namespace] = process.argv.slice(2);
if (!PEER_VARIANTS.includes(variant) || !redisUrl || !namespace || !process.send) {
  console.error(`[bench] [peers-server] start me with fork() from bench/peers.mjs: <${PEER_VARIANTS.join('|')}> <redis url> <namespace>`);
  process.exit(2);
}

/** The per-key limit of till-limits: never reached during a run (as in bench/limits-server.mjs). */
const LIMIT = 1_000_000_000;

const closers = [];
const app = express();

/** The key of `Authorization: Bearer <key>`, or undefined. */
function bearer(req) {
  const header = req.headers.authorization;
  return typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : undefined;
}

/** A random key for the variants that make their own (no format to follow): 32 bytes, base64url. */
const randomKey = (prefix) => `${prefix}_${randomBytes(32).toString('base64url')}`;

let key;
if (variant === 'bare') {
  // Holds a key like the others, so that the load generator's requests are alike; never looks at it.
  key = randomKey('bare');
} else if (variant === 'map') {
  // The least an API key check can do: one Map lookup of the header value (as in bench/server.mjs).
  key = randomKey('map');
  app.use(mapCheck(key, 'key_1'));
} else if (variant === 'passport') {
  // passport-headerapikey's README setup: HeaderAPIKeyStrategy with a header and a prefix, the verify
  // callback finding the key's owner, passport.authenticate('headerapikey', { session: false }). With
  // session: false, passport 0.7 needs no passport.initialize(): authenticate() adds req.logIn itself.
  const { default: passport } = await import('passport');
  const { HeaderAPIKeyStrategy } = await import('passport-headerapikey');
  key = randomKey('pp');
  const keys = new Map([[key, { id: 'key_1' }]]);
  passport.use(
    new HeaderAPIKeyStrategy({ header: 'Authorization', prefix: 'Bearer ' }, false, (apiKey, done) => {
      const found = keys.get(apiKey);
      done(null, found ?? false);
    }),
  );
  app.use(passport.authenticate('headerapikey', { session: false }));
} else if (variant === 'better-auth') {
  // better-auth 1.7.5 with @better-auth/api-key 1.7.5 (the plugin's own package since 1.7; versions
  // matched so that both share one better-auth core). Memory adapter, a user made at startup, a key made
  // for that user through the plugin's API, and each request verified by the plugin's server-side
  // endpoint auth.api.verifyApiKey({ body: { key } }), the plugin's documented way to check a key on
  // the server, in a small Express middleware (401 unless { valid: true }).
  // For fairness, rate limiting is off: the plugin's per-key limit (on by default: 10 requests a day)
  // and better-auth's own request rate limiter (it does not apply to auth.api calls, off anyway); no
  // other contestant here limits requests, except till-limits, whose limit is set never to refuse.
  // The plugin still writes the key's lastRequest and updatedAt on every verification, as it does by
  // default; the memory adapter makes that an in-process update. Telemetry and logging off.
  const { betterAuth } = await import('better-auth');
  const { memoryAdapter } = await import('better-auth/adapters/memory');
  const { apiKey } = await import('@better-auth/api-key');
  const db = { user: [], session: [], account: [], verification: [], apikey: [] };
  const auth = betterAuth({
    baseURL: 'http://127.0.0.1',
    secret: randomBytes(32).toString('hex'),
    database: memoryAdapter(db),
    emailAndPassword: { enabled: true },
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    logger: { disabled: true },
    plugins: [apiKey({ rateLimit: { enabled: false } })],
  });
  const { user } = await auth.api.signUpEmail({ body: { email: 'bench@example.com', password: randomBytes(16).toString('hex'), name: 'bench' } });
  const created = await auth.api.createApiKey({ body: { userId: user.id, name: 'bench' } });
  key = created.key;
  app.use((req, res, next) => {
    const presented = bearer(req);
    if (presented === undefined) {
      res.status(401).end();
      return;
    }
    auth.api.verifyApiKey({ body: { key: presented } }).then(
      (result) => {
        if (!result.valid) {
          res.status(401).end();
          return;
        }
        req.apiKey = result.key;
        next();
      },
      next,
    );
  });
} else if (variant === 'redis') {
  // The naive way: keys stored as sha256(key) -> JSON record in Redis, one GET per request.
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  closers.push(async () => client.disconnect());
  const prefix = `${namespace}naive:`;
  const sha256 = (value) => createHash('sha256').update(value).digest('hex');
  key = randomKey('rd');
  await client.set(`${prefix}${sha256(key)}`, JSON.stringify({ id: 'key_1', name: 'bench', scopes: ['bench:read'] }));
  app.use((req, res, next) => {
    const presented = bearer(req);
    if (presented === undefined) {
      res.status(401).end();
      return;
    }
    client.get(`${prefix}${sha256(presented)}`).then(
      (value) => {
        if (value === null) {
          res.status(401).end();
          return;
        }
        req.apiKey = JSON.parse(value);
        next();
      },
      next,
    );
  });
} else {
  // Till on Redis as bench/limits-server.mjs makes it (tillOnRedis): a RedisStore in this run's namespace, a key made
  // through till.keys.create(). apiKeyAuth() with its defaults (usage tracking, audit events and
  // brute-force protection on); till-limits adds the limits benchmark's per-key limit.
  const till = tillOnRedis(redisUrl, namespace, closers);
  key = (await till.keys.create({ name: 'bench', scopes: ['bench:read'] })).key;
  app.use(apiKeyAuth({ till, ...(variant === 'till-limits' && { limits: [{ name: 'api', limit: LIMIT, window: '1h' }] }) }));
}

app.get('/', (_req, res) => {
  res.json({ hello: 'world' });
});

serveForBench(app, key, async () => {
  await Promise.allSettled(closers.map((close) => close()));
});
