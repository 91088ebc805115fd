// The same console mounted in Express (with and without an app-wide express.json()), Koa and Fastify:
// each answers the API under its mount point, parses bodies the same way, and sends the dashboard's
// root to its slash.
import { createServer, type Server } from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { tillConsole as expressConsole } from '@till/console/express';
import { tillConsole as fastifyConsole } from '@till/console/fastify';
import { tillConsole as koaConsole } from '@till/console/koa';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { listening } from './harness.js';

const client = newClient();
const namespace = uniqueNamespace();
let till: Till;
let store: RedisStore;
let admin: string;
const servers: Server[] = [];
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  store = new RedisStore({ client, namespace });
  till = createTill({ store, logger: { warn() {}, error() {} } });
  admin = (await till.keys.create({ name: 'admin', scopes: ['till:admin'] })).key;
});
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const c of closers) await c();
  await till.close();
  await store.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

const mounts: Record<string, () => Promise<string>> = {
  express: async () => {
    const app = express();
    app.use('/admin/console', expressConsole({ till }));
    const server = createServer(app);
    servers.push(server);
    return `${await listening(server)}/admin/console`;
  },
  'express with express.json() before it': async () => {
    const app = express();
    app.use(express.json());
    app.use('/console', expressConsole({ till }));
    const server = createServer(app);
    servers.push(server);
    return `${await listening(server)}/console`;
  },
  koa: async () => {
    const app = new Koa();
    app.use(koaConsole({ till, prefix: '/console' }));
    app.use((ctx) => {
      ctx.body = 'the app';
    });
    const server = createServer(app.callback());
    servers.push(server);
    return `${await listening(server)}/console`;
  },
  fastify: async () => {
    const app = Fastify();
    await app.register(fastifyConsole, { till, prefix: '/console' });
    app.get('/other', async () => ({ app: true }));
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return `${address}/console`;
  },
};

for (const [name, mount] of Object.entries(mounts)) {
  describe(`mounted in ${name}`, () => {
    let base: string;
    beforeAll(async () => {
      base = await mount();
    });
    const call = (method: string, path: string, body?: string, key: string | null = admin) =>
      fetch(`${base}${path}`, {
        method,
        redirect: 'manual',
        headers: { ...(key !== null && { authorization: `Bearer ${key}` }), ...(body !== undefined && { 'content-type': 'application/json' }) },
        ...(body !== undefined && { body }),
      });

    it('answers the API under its mount point', async () => {
      expect((await call('GET', '/api/keys', undefined, null)).status).toBe(401);
      const listed = await call('GET', '/api/keys?limit=1');
      expect(listed.status).toBe(200);
      expect(listed.headers.get('cache-control')).toBe('no-store');
      const created = await call('POST', '/api/keys', JSON.stringify({ name: `via ${name}`, scopes: ['x:y'] }));
      expect(created.status).toBe(201);
      const { record } = (await created.json()) as { record: { id: string } };
      const updated = await call('PATCH', `/api/keys/${record.id}`, JSON.stringify({ name: 'renamed' }));
      expect(((await updated.json()) as { name: string }).name).toBe('renamed');
      expect((await call('POST', `/api/keys/${record.id}/disable`)).status).toBe(200);
    });

    it('takes PUT and DELETE bodies: a role defined and deleted with force, an identity made and deleted', async () => {
      const role = `role-${name.replace(/[^a-z]/g, '')}`;
      expect((await call('PUT', `/api/roles/${role}`, JSON.stringify({ scopes: ['a:b'], reason: 'mount' }))).status).toBe(201);
      const identity = await call('POST', '/api/identities', JSON.stringify({ name: `via ${name}`, roles: [role] }));
      expect(identity.status).toBe(201);
      const { id } = (await identity.json()) as { id: string };
      const refused = await call('DELETE', `/api/roles/${role}`, JSON.stringify({ reason: 'mount' }));
      expect(refused.status).toBe(409);
      expect((await call('DELETE', `/api/roles/${role}`, JSON.stringify({ force: true, reason: 'mount' }))).status).toBe(200);
      expect((await call('DELETE', `/api/identities/${id}`, JSON.stringify({ reason: 'mount' }))).status).toBe(200);
      expect((await call('GET', `/api/identities/${id}`)).status).toBe(404);
    });

    it('answers bad JSON, a wrong method and an unknown path with problems', async () => {
      const bad = await call('POST', '/api/keys', '{"name": nope');
      expect(bad.status).toBe(400);
      // An app-wide express.json() before the console answers bad JSON itself (its own 400 page).
      if (!name.includes('express.json')) expect(bad.headers.get('content-type')).toBe('application/problem+json');
      expect((await call('PUT', '/api/keys')).status).toBe(405);
      expect((await call('GET', '/api/unknown')).status).toBe(404);
    });

    it('sends the mount point without its slash to it', async () => {
      const answer = await call('GET', '?x=1', undefined, null);
      expect(answer.status).toBe(308);
      expect(answer.headers.get('location')).toBe(`${base.slice(base.lastIndexOf('/') + 1)}/?x=1`);
    });
  });
}

describe('client address', () => {
  it("is the framework's, by its trust-proxy setting: a failed sign-in is audited with it", async () => {
    const app = express();
    app.set('trust proxy', true);
    app.use('/console', expressConsole({ till }));
    const server = createServer(app);
    servers.push(server);
    const base = await listening(server);
    const answer = await fetch(`${base}/console/api/keys`, { headers: { authorization: 'Bearer till_nonsense', 'x-forwarded-for': '203.0.113.9' } });
    expect(answer.status).toBe(401);
    const audited = async () => (await till.keys.audit({ types: ['auth.failed'] })).entries.some((e) => e.ip === '203.0.113.9');
    expect(await waitFor(audited, 10_000)).toBe(true);
  });
});

describe('options', () => {
  it('are checked when the console is made', () => {
    expect(() => expressConsole({} as never)).toThrow(/needs \{ till \}/);
    expect(() => expressConsole({ till, eventsPollInterval: 0 })).toThrow(/eventsPollInterval/);
    expect(() => koaConsole({ till, prefix: 'no slash' })).toThrow(/prefix/);
  });
});
