// The dashboard's first screen with 10,000 keys in Redis: how long the requests it makes take, on this
// machine. Run from the repository root after `pnpm build`: node packages/console/bench/first-screen.mjs
// (REDIS_URL, default redis://127.0.0.1:6379; it uses a namespace of its own and deletes it).
// The first screen is index.html, app.js and app.css, the session check, then the first page of keys
// (one store page of 500 records read, 25 keys shown, 25 usage reads) and the events stream's first read.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { createConsole } from '@till/console';
import { Redis } from 'ioredis';

const KEYS = Number(process.env.KEYS ?? 10_000);
const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const namespace = `till-bench:${randomBytes(6).toString('hex')}:`;
const store = new RedisStore({ client, namespace });
const till = createTill({ store, logger: silentLogger });
const admin = await till.keys.create({ name: 'admin', scopes: ['till:admin'] });
for (let made = 0; made < KEYS; ) {
  const batch = [];
  for (let i = 0; i < 200 && made < KEYS; i++, made++)
    batch.push(till.keys.create({ name: `key ${made}`, scopes: ['orders:read'], ownerId: `team-${made % 50}`, expiresIn: '90d' }));
  await Promise.all(batch);
}
const console_ = createConsole({ till });
const server = createServer((req, res) => void console_.handle(req, res, req.url ?? '/')).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const base = `http://127.0.0.1:${server.address().port}`;
const auth = { authorization: `Bearer ${admin.key}` };

async function firstScreen() {
  const started = performance.now();
  await Promise.all(['/', '/app.js', '/app.css'].map((p) => fetch(base + p).then((r) => r.arrayBuffer())));
  await fetch(`${base}/api/session`, { headers: auth }).then((r) => r.json());
  const page = await fetch(`${base}/api/keys?limit=25`, { headers: auth }).then((r) => r.json());
  if (page.keys.length !== 25) throw new Error('no first page');
  return performance.now() - started;
}

const runs = [];
for (let i = 0; i < 11; i++) runs.push(await firstScreen());
runs.sort((a, b) => a - b);
console.log(JSON.stringify({ keys: KEYS + 1, runs: runs.length, medianMs: Math.round(runs[5]), worstMs: Math.round(runs[10]) }));
server.closeAllConnections();
server.close();
await till.close();
// The store's own subscriber connection (the application's client is closed below).
await store.close();
let cursor = '0';
do {
  const [next, found] = await client.scan(cursor, 'MATCH', `${namespace}*`, 'COUNT', 1000);
  if (found.length > 0) await client.del(...found);
  cursor = next;
} while (cursor !== '0');
client.disconnect();
