// What route guards charge and where: a refused request spends no credit and no limit unit (on the
// memory store and on real Redis), and a rateLimit() guard counts in the Till that verified the request.
import type { RequestListener } from 'node:http';
import express from 'express';
import Koa from 'koa';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, MemoryStore, silentLogger, type ConsumeRequest, type ConsumeResult, type KeyStore, type Till, type VerifiedKey } from '@till/core';
import { RedisStore } from '@till/core/redis';
import type { Redis } from 'ioredis';
import type { AdapterDriver } from '@till/testkit/adapter-suite';
import { expressDriver } from '../packages/express/test/driver.js';
import { koaDriver } from '../packages/koa/test/driver.js';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

const answer = (key: VerifiedKey | undefined) => ({ id: key?.id ?? null });
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function get(app: RequestListener, path: string, headers: Record<string, string> = {}): Promise<number> {
  return (await request(app).get(path).set(headers)).status;
}

let client: Redis;
const namespaces: string[] = [];

beforeAll(() => {
  client = newClient();
});

afterAll(async () => {
  for (const ns of namespaces) await deleteNamespace(client, ns);
  client.disconnect();
});

const stores: Array<[string, () => KeyStore]> = [
  ['memory', () => new MemoryStore()],
  [
    'Redis',
    () => {
      const namespace = uniqueNamespace();
      namespaces.push(namespace);
      return new RedisStore({ client, namespace });
    },
  ],
];

function describeCharges<M, H>(framework: string, driver: AdapterDriver<M, H>): void {
  for (const [storeName, makeStore] of stores) {
    describe(`${framework} on the ${storeName} store: a refused request spends nothing`, () => {
      let till: Till;
      beforeAll(() => {
        till = createTill({ store: makeStore(), logger: silentLogger });
      });
      afterAll(() => till.close());

      it('a requireScopes() refusal after apiKeyAuth() gives back the credit and the limit units it was charged', async () => {
        const { key, record } = await till.keys.create({
          name: 'two credits',
          scopes: ['reports:read'],
          credits: { remaining: 2 },
          limits: [{ name: 'per-hour', limit: 3, window: '1h' }],
        });
        const auth = driver.apiKeyAuth({ till, limits: [{ name: `mw-${framework}-${storeName}`.replace(/\s/g, ''), limit: 3, window: '1h' }] });
        const app = driver.app({ '/admin': [auth, driver.requireScopes('admin')], '/reports': [auth, driver.requireScopes('reports:read')] }, answer);
        for (let i = 0; i < 5; i++) expect(await get(app, '/admin', bearer(key))).toBe(403);
        expect(await till.keys.credits(record.id)).toBe(2);
        // Both credits are there, and the per-hour limits (3) were never charged by the refusals.
        expect(await get(app, '/reports', bearer(key))).toBe(200);
        expect(await get(app, '/reports', bearer(key))).toBe(200);
        expect(await get(app, '/reports', bearer(key))).toBe(429);
        expect(await till.keys.credits(record.id)).toBe(0);
      });

      it('a requireScopes() refusal gives back what a rateLimit() after an apiKeyAuth() that charged nothing took', async () => {
        // The key has no limits and no credits: apiKeyAuth() charges nothing, the guard charges the request.
        const { key } = await till.keys.create({ name: 'plain', scopes: ['reports:read'] });
        const name = `after-plain-${framework}-${storeName}`.replace(/\s/g, '');
        const auth = driver.apiKeyAuth({ till });
        const limited = driver.rateLimit({ name, limit: 1, window: '1h' });
        const app = driver.app(
          { '/admin': [auth, limited, driver.requireScopes('admin')], '/reports': [auth, limited, driver.requireScopes('reports:read')] },
          answer,
        );
        for (let i = 0; i < 3; i++) expect(await get(app, '/admin', bearer(key))).toBe(403);
        // The unit was given back each time: the one request the limit holds still passes.
        expect(await get(app, '/reports', bearer(key))).toBe(200);
        expect(await get(app, '/reports', bearer(key))).toBe(429);
      });

      it('two apiKeyAuth() on one Till that answer differently: the guards after each answer as it does', async () => {
        const { key } = await till.keys.create({ name: 'answers', scopes: ['reports:read'] });
        const plain = driver.apiKeyAuth({ till });
        const custom = driver.apiKeyAuth({ till, realm: `custom-${framework}` });
        const app = driver.app({ '/plain': [plain, driver.requireScopes('admin')], '/custom': [custom, driver.requireScopes('admin')] }, answer);
        for (let i = 0; i < 2; i++) {
          const refusedPlain = await request(app).get('/plain').set(bearer(key));
          const refusedCustom = await request(app).get('/custom').set(bearer(key));
          expect(refusedPlain.status).toBe(403);
          expect(refusedCustom.status).toBe(403);
          expect(refusedPlain.headers['www-authenticate']).not.toContain('custom-');
          expect(refusedCustom.headers['www-authenticate']).toContain(`realm="custom-${framework}"`);
        }
      });

      it('a rateLimit() refusal gives back what apiKeyAuth() and earlier guards charged', async () => {
        const { key, record } = await till.keys.create({ name: 'credits', scopes: ['a'], credits: { remaining: 5 } });
        const name = `tight-${framework}-${storeName}`.replace(/\s/g, '');
        const auth = driver.apiKeyAuth({ till });
        const loose = driver.rateLimit({ name: `${name}-loose`, limit: 2, window: '1h' });
        const tight = driver.rateLimit({ name, limit: 1, window: '1h' });
        const app = driver.app({ '/': [auth, loose, tight] }, answer);
        expect(await get(app, '/', bearer(key))).toBe(200);
        expect(await get(app, '/', bearer(key))).toBe(429);
        expect(await get(app, '/', bearer(key))).toBe(429);
        // One credit spent (the admitted request); the loose limit (2) still has its second unit, so
        // the refused requests charged it nothing either.
        expect(await till.keys.credits(record.id)).toBe(4);
        const looseOnly = driver.app({ '/': [auth, loose] }, answer);
        expect(await get(looseOnly, '/', bearer(key))).toBe(200);
        expect(await get(looseOnly, '/', bearer(key))).toBe(429);
      });
    });
  }

  describe(`${framework}: rateLimit() counts in the Till that verified the request`, () => {
    class CountingStore extends MemoryStore {
      subjects: string[] = [];
      override consume(req: ConsumeRequest): Promise<ConsumeResult> {
        this.subjects.push(req.subject);
        return super.consume(req);
      }
    }

    it('after apiKeyAuth({ till }) a guard without till charges that Till, by key and by IP', async () => {
      const store = new CountingStore();
      const till = createTill({ store, logger: silentLogger });
      const { key, record } = await till.keys.create({ name: 'k', scopes: [] });
      const auth = driver.apiKeyAuth({ till, bruteForce: false });
      const app = driver.app(
        { '/': [auth, driver.rateLimit({ name: 'by-key', limit: 1, window: '1h' }), driver.rateLimit({ name: 'by-ip', by: 'ip', limit: 5, window: '1h' })] },
        answer,
      );
      expect(await get(app, '/', bearer(key))).toBe(200);
      expect(await get(app, '/', bearer(key))).toBe(429);
      expect(store.subjects.filter((s) => s === record.id)).toHaveLength(2);
      expect(store.subjects.some((s) => s.startsWith('ip:'))).toBe(true);
      await till.close();
    });

    it('a guard with no Till on a request no apiKeyAuth() saw fails loudly, never counting elsewhere', async () => {
      const app = driver.app({ '/': [driver.rateLimit({ name: 'orphan', by: 'ip', limit: 5, window: '1h' })] }, answer);
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      expect(JSON.parse(res.text).handled).toMatch(/^\[till\] \[(express|koa)\] rate limit "orphan" has no Till to count in/);
    });
  });
}

describeCharges('Express', expressDriver(express));
describeCharges('Koa', koaDriver(Koa));
