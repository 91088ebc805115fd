// The built packages, loaded the way users load them: ESM import, CommonJS require, and their types.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
/** What applications call and what only adapters or core itself use: the first in the root entry, never the others. */
const ROOT_NAMES = [
  'createTill',
  'defaultTill',
  'MemoryStore',
  'TillError',
  'isTillError',
  'verifyWebhookSignature',
  'createAlerts',
  'generateKey',
  'parseKey',
];
const NOT_ROOT_NAMES = [
  'createAuthenticator',
  'createScopeCheck',
  'createRateLimitGuard',
  'checkOptionNames',
  'createAdapter',
  'problemResponse',
  'contextOf',
  'LocalBuckets',
  'Limiter',
  'crc32',
  'evaluate',
  'tillError',
  'tillMessage',
];
const HTTP_NAMES = ['createAdapter', 'problemResponse', 'rateLimitHeaders', 'createExtractor', 'keyHeaderReader', 'contextOf', 'tillError'];

describe('built packages', () => {
  it('are built (pnpm test builds first), core with its http, redis and metrics entries', () => {
    const entries: Array<[string, string]> = [
      ['core', 'index'],
      ['core', 'http'],
      ['core', 'redis'],
      ['core', 'metrics'],
      ['express', 'index'],
      ['koa', 'index'],
      ['fastify', 'index'],
    ];
    for (const [pkg, entry] of entries) {
      for (const ext of ['js', 'cjs', 'd.ts', 'd.cts']) {
        const file = `${entry}.${ext}`;
        expect(existsSync(`${root}packages/${pkg}/dist/${file}`), `${pkg}/dist/${file}`).toBe(true);
      }
    }
  });

  it('keep the root entry to what applications call; the adapter kit is in @till/core/http', () => {
    const probe = `JSON.stringify({ root: Object.keys(core), http: Object.keys(http) })`;
    const esm = node([
      '--input-type=module',
      '-e',
      `const core = await import('@till/core'); const http = await import('@till/core/http'); console.log(${probe});`,
    ]);
    const cjs = node(['-e', `const core = require('@till/core'); const http = require('@till/core/http'); console.log(${probe});`]);
    for (const out of [esm, cjs]) {
      const { root: rootNames, http } = JSON.parse(out) as { root: string[]; http: string[] };
      expect(rootNames).toEqual(expect.arrayContaining(ROOT_NAMES));
      for (const name of NOT_ROOT_NAMES) expect(rootNames, name).not.toContain(name);
      expect(http).toEqual(expect.arrayContaining(HTTP_NAMES));
    }
  });

  it('share one defaultTill() between the root and the adapters in CommonJS (one module state, not a copy per entry)', () => {
    const out = node([
      '-e',
      `const core = require('@till/core');
       const ex = require('@till/express');
       (async () => {
         // Made here first (in memory, quietly); the middleware given no Till must find this one.
         const { key } = await core.defaultTill({}, core.silentLogger).keys.create({ name: 'shared', scopes: ['a'] });
         const auth = ex.apiKeyAuth();
         const req = { headers: { authorization: 'Bearer ' + key }, rawHeaders: [], ip: '127.0.0.1' };
         const res = { status() { return res; }, setHeader() {}, getHeader() {}, end(body) { console.log(JSON.stringify({ refused: JSON.parse(body).code })); } };
         auth(req, res, (error) => console.log(JSON.stringify({ passed: error === undefined && req.apiKey !== undefined })));
       })();`,
    ]);
    expect(JSON.parse(out)).toEqual({ passed: true });
  });

  it('load as ESM, and the root entry of core loads neither ioredis nor prom-client', () => {
    const out = node([
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module';
       const core = await import('@till/core');
       const ex = await import('@till/express');
       const koa = await import('@till/koa');
       const fastify = await import('@till/fastify');
       const loaded = Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/ioredis/') || p.includes('/prom-client/'));
       const till = core.createTill({ logger: core.silentLogger });
       const { key } = await till.keys.create({ name: 'esm', scopes: ['a'] });
       const r = await till.verify(key);
       const redis = await import('@till/core/redis');
       const http = await import('@till/core/http');
       const loadedByHttp = Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/ioredis/') || p.includes('/prom-client/'));
       console.log(JSON.stringify({ loaded, loadedByHttp, valid: r.valid, fns: [typeof ex.apiKeyAuth, typeof ex.requireScopes, typeof koa.apiKeyAuth, typeof redis.RedisStore, typeof http.createAdapter, typeof fastify.apiKeyAuth] }));`,
    ]);
    expect(JSON.parse(out)).toEqual({
      loaded: false,
      loadedByHttp: false,
      valid: true,
      fns: ['function', 'function', 'function', 'function', 'function', 'function'],
    });
  });

  it('load as CommonJS, and the root entry of core loads neither ioredis nor prom-client', () => {
    const out = node([
      '-e',
      `const core = require('@till/core');
       const ex = require('@till/express');
       const koa = require('@till/koa');
       const fastify = require('@till/fastify');
       const http = require('@till/core/http');
       const loaded = Object.keys(require.cache).some((p) => p.includes('/ioredis/') || p.includes('/prom-client/'));
       const { RedisStore } = require('@till/core/redis');
       const { createMetrics } = require('@till/core/metrics');
       const err = (() => { try { core.createTill({ pepper: 'x' }); } catch (e) { return e; } })();
       (async () => {
         const till = core.createTill();
         const { key } = await till.keys.create({ name: 'cjs', scopes: ['a'] });
         const r = await till.verify(key);
         console.log(JSON.stringify({ loaded, valid: r.valid, tillError: err instanceof core.TillError, code: err.code,
           fns: [typeof ex.apiKeyAuth, typeof koa.requireScopes, typeof RedisStore, typeof createMetrics, typeof http.createAdapter, typeof fastify.rateLimit] }));
       })();`,
    ]);
    expect(JSON.parse(out)).toEqual({
      loaded: false,
      valid: true,
      tillError: true,
      code: 'INVALID_OPTIONS',
      fns: ['function', 'function', 'function', 'function', 'function', 'function'],
    });
  });

  it('carry type declarations that resolve for ESM and CommonJS users', () => {
    const tsc = `${root}node_modules/typescript/bin/tsc`;
    expect(() => node([tsc, '-p', 'test/fixtures/consumer/tsconfig.json'])).not.toThrow();
  }, 120_000); // a whole tsc run: 6 s on an idle machine, 27 s seen on a busy one (a budget, not a bound)
});
