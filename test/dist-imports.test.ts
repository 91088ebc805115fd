// The built packages, loaded the way users load them: ESM import, CommonJS require, and their types.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();

describe('built packages', () => {
  it('are built (pnpm test builds first)', () => {
    for (const pkg of ['core', 'express', 'koa', 'fastify']) {
      for (const file of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts']) {
        expect(existsSync(`${root}packages/${pkg}/dist/${file}`), `${pkg}/dist/${file}`).toBe(true);
      }
    }
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
       console.log(JSON.stringify({ loaded, valid: r.valid, fns: [typeof ex.apiKeyAuth, typeof ex.requireScopes, typeof koa.apiKeyAuth, typeof redis.RedisStore, typeof fastify.apiKeyAuth] }));`,
    ]);
    expect(JSON.parse(out)).toEqual({ loaded: false, valid: true, fns: ['function', 'function', 'function', 'function', 'function'] });
  });

  it('load as CommonJS, and the root entry of core loads neither ioredis nor prom-client', () => {
    const out = node([
      '-e',
      `const core = require('@till/core');
       const ex = require('@till/express');
       const koa = require('@till/koa');
       const fastify = require('@till/fastify');
       const loaded = Object.keys(require.cache).some((p) => p.includes('/ioredis/') || p.includes('/prom-client/'));
       const { RedisStore } = require('@till/core/redis');
       const { createMetrics } = require('@till/core/metrics');
       const err = (() => { try { core.createTill({ pepper: 'x' }); } catch (e) { return e; } })();
       (async () => {
         const till = core.createTill();
         const { key } = await till.keys.create({ name: 'cjs', scopes: ['a'] });
         const r = await till.verify(key);
         console.log(JSON.stringify({ loaded, valid: r.valid, tillError: err instanceof core.TillError, code: err.code,
           fns: [typeof ex.apiKeyAuth, typeof koa.requireScopes, typeof RedisStore, typeof createMetrics, typeof fastify.rateLimit] }));
       })();`,
    ]);
    expect(JSON.parse(out)).toEqual({ loaded: false, valid: true, tillError: true, code: 'INVALID_OPTIONS', fns: ['function', 'function', 'function', 'function', 'function'] });
  });

  it('carry type declarations that resolve for ESM and CommonJS users', () => {
    const tsc = `${root}node_modules/typescript/bin/tsc`;
    expect(() => node([tsc, '-p', 'test/fixtures/consumer/tsconfig.json'])).not.toThrow();
  }, 120_000); // a whole tsc run: 6 s on an idle machine, 27 s seen on a busy one (a budget, not a bound)
});
