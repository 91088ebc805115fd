// apiKeyAuth(), requireScopes(), requireAnyScope() and rateLimit() on real Fastify 5 apps: the shared
// adapter suite (@till/testkit/adapter-suite) with the hooks in onRequest, in preHandler and split
// between them, plus what only Fastify does.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { apiKeyAuth, rateLimit, requireScopes, sendProblem } from '@till/fastify';
import { bearer, describeAdapter } from '@till/testkit/adapter-suite';
import { describeLimits } from '@till/testkit/limits-suite';
import { expectProblem } from '@till/testkit/adapter-support';
import { fastifyDriver, listenerOf, PLACEMENTS } from './driver.js';

for (const placement of PLACEMENTS) {
  const name = `Fastify 5, hooks in ${placement === 'split' ? 'onRequest and preHandler' : placement}`;
  describeLimits(name, fastifyDriver(placement));
  describeAdapter(name, fastifyDriver(placement), {
    options: ({ appWith, get }) => {
      it('an async onFailure is awaited, and can send the default with sendProblem()', async () => {
        const app = appWith({
          onFailure: async (_f, _request, reply, response) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            reply.header('x-extra', 'yes');
            return sendProblem(reply, response);
          },
        });
        const junk = await get(app, '/', bearer('junk'));
        expectProblem(junk, 'MALFORMED');
        expect(junk.headers['x-extra']).toBe('yes');
      });

      it('an onFailure that only sets a status or headers, sending nothing, still refuses with the default', async () => {
        const app = appWith({
          onFailure: (_f, _request, reply) => {
            reply.code(200).header('x-extra', 'yes');
          },
        });
        expectProblem(await get(app, '/'), 'MISSING');
        expectProblem(await get(app, '/all'), 'MISSING');
      });
    },
  });
}

describe('Fastify: what only Fastify does', () => {
  let till: Till;
  let key: string;
  /** Requests a route handler ran for: refused requests must never show up here. */
  let ran: string[];

  beforeEach(async () => {
    till = createTill({ logger: silentLogger });
    key = (await till.keys.create({ name: 'fastify', scopes: ['keys:read'] })).key;
    ran = [];
  });

  afterEach(async () => {
    await till.close();
  });

  const handler = async (req: { url: string; method: string; apiKey?: unknown }) => {
    ran.push(`${req.method} ${req.url}`);
    return { id: (req.apiKey as { id: string } | undefined)?.id ?? null };
  };

  it('the README quick start: an onRequest hook on the app, a scope and a limit per route', async () => {
    const app = listenerOf((f) => {
      f.addHook('onRequest', apiKeyAuth({ till }));
      f.get('/v1/me', { preHandler: requireScopes('keys:read') }, async (request) => ({ id: request.apiKey!.id }));
      f.post('/v1/x', { preHandler: [requireScopes('keys:read'), rateLimit({ name: 'x', limit: 1, window: '1m' })] }, async () => ({ ok: true }));
    });
    expect((await request(app).get('/v1/me').set(bearer(key))).status).toBe(200);
    expectProblem(toSeen(await request(app).get('/v1/me')), 'MISSING');
    const first = await request(app).post('/v1/x').set(bearer(key)).send({ a: 1 });
    expect([first.status, first.headers.ratelimit]).toEqual([200, '"x";r=0;t=60']);
    expect((await request(app).post('/v1/x').set(bearer(key)).send({ a: 1 })).status).toBe(429);
  });

  it('an async onSend hook in the app never lets a refused request reach its handler', async () => {
    // Fastify runs the next hook once an async hook settles unless the reply has ended; while an
    // async onSend hook runs, it has not.
    const app = listenerOf((f) => {
      f.addHook('onSend', async (_request, _reply, payload) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return payload;
      });
      f.get('/auth-only', { onRequest: apiKeyAuth({ till }) }, handler);
      f.get('/scoped', { preHandler: [apiKeyAuth({ till, optional: true }), requireScopes('admin')] }, handler);
      // Sending from an async hook, Fastify asks to return (or await) the reply.
      f.get('/custom', { onRequest: apiKeyAuth({ till, onFailure: (_f, _r, reply) => reply.code(418).send({ no: true }) }) }, handler);
    });
    expectProblem(toSeen(await request(app).get('/auth-only')), 'MISSING');
    expectProblem(toSeen(await request(app).get('/scoped')), 'MISSING');
    expectProblem(toSeen(await request(app).get('/scoped').set(bearer(key))), 'INSUFFICIENT_SCOPE', { scopes: ['admin'] });
    const custom = await request(app).get('/custom');
    expect([custom.status, custom.body, custom.headers['www-authenticate']]).toEqual([418, { no: true }, undefined]);
    // A handler let through would have run before its response (held by onSend) was sent.
    expect(ran).toEqual([]);
    expect((await request(app).get('/auth-only').set(bearer(key))).status).toBe(200);
    expect(ran).toEqual(['GET /auth-only']);
  });

  it('a client that hangs up while the refusal is being sent never gets the handler run', async () => {
    let sending!: () => void;
    let done!: () => void;
    const started = new Promise<void>((resolve) => (sending = resolve));
    const finished = new Promise<void>((resolve) => (done = resolve));
    const app = listenerOf((f) => {
      // An onSend hook that is still at work when the client hangs up.
      f.addHook('onSend', async (_request, reply, payload) => {
        sending();
        await once(reply.raw, 'close');
        // ... and ends a turn of the event loop after that.
        await new Promise((resolve) => setImmediate(resolve));
        done();
        return payload;
      });
      f.get('/guarded', { onRequest: apiKeyAuth({ till }) }, handler);
    });
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const aborter = new AbortController();
    const pending = fetch(`http://127.0.0.1:${port}/guarded`, { signal: aborter.signal }).catch(() => null);
    await started;
    aborter.abort();
    await pending;
    await finished;
    // What Fastify would run after the hook settles runs within this turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    expect(ran).toEqual([]);
  });

  it('hooks added after the routes, or before a plugin with routes, still guard them', async () => {
    const app = listenerOf((f) => {
      f.get('/before', handler);
      f.register(async (child) => {
        child.get('/in-plugin', handler);
      });
      f.addHook('onRequest', apiKeyAuth({ till }));
    });
    for (const path of ['/before', '/in-plugin']) {
      expectProblem(toSeen(await request(app).get(path)), 'MISSING');
      expect((await request(app).get(path).set(bearer(key))).status).toBe(200);
    }
    expect(ran).toEqual(['GET /before', 'GET /in-plugin']);
  });

  it('HEAD of a guarded GET route, OPTIONS and unknown routes are refused without a key', async () => {
    const app = listenerOf((f) => {
      f.addHook('onRequest', apiKeyAuth({ till }));
      f.get('/v1/me', { preHandler: requireScopes('keys:read') }, handler);
      f.options('/v1/me', handler);
    });
    // Fastify serves HEAD for every GET route, with the GET route's hooks.
    const head = await request(app).head('/v1/me');
    expect([head.status, head.headers['www-authenticate']]).toEqual([401, 'Bearer']);
    expect((await request(app).head('/v1/me').set(bearer(key))).status).toBe(200);
    expectProblem(toSeen(await request(app).options('/v1/me')), 'MISSING');
    expectProblem(toSeen(await request(app).get('/v1/nothing-here')), 'MISSING');
    expect(ran).toEqual(['HEAD /v1/me']);
  });

  it('a URL Fastify cannot decode is refused, by Fastify (400) or by Till (401), never served', async () => {
    const app = listenerOf((f) => {
      f.addHook('onRequest', apiKeyAuth({ till }));
      f.get('/v1/:name', handler);
      f.get('/v1/me', handler);
    });
    for (const url of ['/v1/%', '/v1/me%', '/v1/%zz', '/v1/%E0%A4%A', '/v1/%C0%AE', '/v1/me%00', '/%2e%2e/v1/me', '/v1/me?%']) {
      const res = await request(app).get(url);
      expect([400, 401, 404], url).toContain(res.status);
    }
    expect(ran).toEqual([]);
  });

  it('refuses before the body is parsed: a key-less request with a body Fastify cannot parse gets 401, not 400 or 415', async () => {
    const app = listenerOf((f) => {
      f.addHook('onRequest', apiKeyAuth({ till }));
      f.post('/v1/x', handler);
    });
    for (const [type, body] of [
      ['application/json', '{not json'],
      ['application/x-unknown', 'x'],
      ['application/json', 'x'.repeat(2 * 1024 * 1024)],
    ] as const) {
      expectProblem(toSeen(await request(app).post('/v1/x').set('content-type', type).send(body)), 'MISSING');
    }
    // With a key the body is read, and Fastify answers what it cannot parse itself.
    expect((await request(app).post('/v1/x').set(bearer(key)).set('content-type', 'application/json').send('{not json')).status).toBe(400);
    expect(ran).toEqual([]);
  });

  it('an earlier hook that answered, or hijacked the reply, ends the request before Till', async () => {
    const app = listenerOf((f) => {
      f.addHook('onRequest', async (request, reply) => {
        if (request.url === '/answered') return reply.code(204).send();
        if (request.url === '/hijacked') {
          reply.hijack();
          reply.raw.writeHead(202).end('raw');
        }
      });
      f.addHook('onRequest', apiKeyAuth({ till }));
      f.get('/answered', handler);
      f.get('/hijacked', handler);
    });
    expect((await request(app).get('/answered')).status).toBe(204);
    const hijacked = await request(app).get('/hijacked');
    expect([hijacked.status, hijacked.text]).toEqual([202, 'raw']);
    expect(ran).toEqual([]);
  });

  it('a scope guard in a plugin: its routes are guarded, the routes outside it are not', async () => {
    const app: FastifyInstance = Fastify();
    app.addHook('onRequest', apiKeyAuth({ till, optional: true }));
    app.get('/public', handler);
    await app.register(
      async (admin) => {
        admin.addHook('preHandler', requireScopes('admin'));
        admin.get('/keys', handler);
      },
      { prefix: '/admin' },
    );
    await app.ready();
    expect((await app.inject({ url: '/public' })).statusCode).toBe(200);
    for (const url of ['/admin/keys', '/ADMIN/keys', '/admin/keys/', '/admin//keys', '/admin/%6Beys']) {
      const res = await app.inject({ url, headers: { authorization: `Bearer ${key}` } });
      expect([403, 404], url).toContain(res.statusCode);
    }
    expect(ran).toEqual(['GET /public']);
    await app.close();
  });
});

/** supertest's response as the shared problem assertions take it. */
function toSeen(res: request.Response) {
  return { status: res.status, text: res.text, headers: res.headers as Record<string, unknown> };
}
