// One run through everything Till produces (responses, logs, events, audit entries in Redis, usage,
// alerts, webhook bodies, metrics, scan findings), then a search of all of it for the secrets it made.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { inspect } from 'node:util';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createAlerts, createTill, findKeys, loggerSink, TILL_CHANNELS, toJsonLines, webhookSink, type Till } from '@till/core';
import { createMetrics } from '@till/core/metrics';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth, rateLimit, requireScopes } from '@till/express';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';

const namespace = uniqueNamespace();
const client = newClient();
let hook: Server | undefined;
afterAll(async () => {
  hook?.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

describe('secrets in what Till produces', () => {
  it('appear nowhere: not in responses, logs, events, the audit trail, usage, alerts, webhooks, metrics or scans', async () => {
    const produced: string[] = [];
    const logger = { warn: (m: string) => void produced.push(m), error: (m: string) => void produced.push(m) };
    const bodies: string[] = [];
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        bodies.push(`${JSON.stringify(req.headers)}\n${body}`);
        res.end();
      });
    });
    await new Promise<void>((r) => hook!.listen(0, '127.0.0.1', r));
    const store = new RedisStore({ client, namespace });
    const till: Till = createTill({ store, logger, pepper: 'sweep-pepper-0123456789abcdef', auditEvents: { interval: 60_000 }, usage: { interval: 60_000 } });
    till.events.on((e) => void produced.push(JSON.stringify(e)));
    till.events.onVerification((e) => void produced.push(JSON.stringify(e)));
    // Every diagnostics-channel message, as a subscriber would print it (the verifier's cache holds the
    // keys it confirmed: none of them may reach a message).
    const onMessage = (message: unknown) => void produced.push(inspect(message, { depth: 8 }), JSON.stringify(message));
    for (const name of Object.values(TILL_CHANNELS)) subscribe(name, onMessage);
    const alerts = createAlerts(till, {
      rules: [
        { type: 'ip-failures', threshold: 3, window: '1m' },
        { type: 'key-failures', threshold: 3, window: '1m' },
        { type: 'revoked-key-used' },
        { type: 'leaked-key-used' },
        { type: 'quota-low', below: 1 },
      ],
      sinks: [
        loggerSink(logger),
        webhookSink({ url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/`, secret: 'sweep-webhook-secret-0123', backoff: 10 }),
        (a) => void produced.push(JSON.stringify(a)),
      ],
    });
    const metrics = createMetrics(till, { alerts });

    const made = [
      await till.keys.create({
        name: 'reader',
        scopes: ['reports:read'],
        ownerId: 'team-s',
        limits: [{ name: 'per-minute', limit: 3, window: '1m' }],
        credits: { remaining: 2 },
      }),
      await till.keys.create({ name: 'leaky', scopes: ['*'], ownerId: 'team-s' }),
      await till.keys.create({ name: 'doomed', scopes: ['a:read'] }),
    ];
    const rotated = await till.keys.rotate(made[2]!.record.id, { grace: '1h', actor: 'sweeper' });
    const keys = [...made.map((m) => m.key), rotated.key];
    // The stored digests, read now: one of these keys is deleted below, and its digest must be searched for too.
    const digests: string[] = [];
    for (const m of [...made, rotated]) {
      const stored = await store.get(m.record.id);
      expect(stored, `record ${m.record.id}`).not.toBeNull();
      digests.push(stored!.hash);
    }
    expect(digests).toHaveLength(4);
    const wrong = withWrongSecret(made[0]!.key);

    const app = express();
    app.set('trust proxy', true);
    app.use(apiKeyAuth({ till, bruteForce: { threshold: 4, window: '1m', block: '1m' } }));
    app.get('/reports', requireScopes('reports:read'), rateLimit({ till, name: 'sweep', limit: 5, window: '1m' }), (_req, res) => {
      res.json({ ok: true });
    });
    const send = (key: string | null, ip = '198.51.100.20') => {
      let r = request(app).get('/reports').set('x-forwarded-for', ip).set('user-agent', 'sweeper/1');
      if (key !== null) r = r.set('authorization', `Bearer ${key}`);
      return r.then((res) => {
        produced.push(`${res.status}\n${JSON.stringify(res.headers)}\n${res.text}`);
        return res.status;
      });
    };
    for (let i = 0; i < 4; i++) await send(made[0]!.key);
    await send(made[1]!.key);
    await send(rotated.key);
    for (let i = 0; i < 6; i++) await send(wrong, '198.51.100.21');
    await send('till_not-a-real-key', '198.51.100.22');
    await till.keys.revoke(made[1]!.record.id, { reason: 'leaked' });
    await send(made[1]!.key, '198.51.100.23');
    await till.keys.delete(made[2]!.record.id, { reason: 'sweep' });

    await till.auditWriter!.flush();
    await till.usage!.flush();
    await alerts.idle();
    for (let cursor: string | undefined, first = true; first || cursor !== undefined; first = false) {
      const page = await till.keys.audit({ limit: 1000, ...(cursor !== undefined && { cursor }) });
      produced.push(toJsonLines(page.entries));
      cursor = page.cursor;
    }
    for (const m of [...made, rotated]) {
      produced.push(JSON.stringify(await till.keys.usage(m.record.id, { days: 2 })));
      produced.push(toJsonLines((await till.keys.audit({ keyId: m.record.id, limit: 1000 })).entries));
    }
    produced.push(JSON.stringify(await till.keys.report({ neverUsedAfter: 0 })));
    produced.push(await metrics.registry.metrics());
    produced.push(JSON.stringify(findKeys(`config: ${keys.join('\n')}`)));
    produced.push(...bodies);
    produced.push(inspect(till.verifier.stats), JSON.stringify(till.verifier.stats));
    for (const name of Object.values(TILL_CHANNELS)) unsubscribe(name, onMessage);
    // Everything Redis holds but the records themselves (which hold the digests by design): lists
    // (the keys' trails), streams (the log), hashes, sorted sets and strings; an unknown type fails.
    for await (const batch of client.scanStream({ match: `${namespace}*`, count: 500 })) {
      for (const k of batch as string[]) {
        if (k.endsWith(':k')) continue;
        const type = await client.type(k);
        if (type === 'stream') produced.push(JSON.stringify(await client.xrange(k, '-', '+')));
        else if (type === 'list') produced.push(JSON.stringify(await client.lrange(k, 0, -1)));
        else if (type === 'hash') produced.push(JSON.stringify(await client.hgetall(k)));
        else if (type === 'zset') produced.push(JSON.stringify(await client.zrange(k, 0, -1, 'WITHSCORES')));
        else if (type === 'string') produced.push(String(await client.get(k)));
        else expect.fail(`a Redis key of type ${type} the sweep does not read`);
      }
    }

    const everything = produced.join('\n');
    expect(everything.length).toBeGreaterThan(10_000);
    expect(bodies.length).toBeGreaterThan(0);
    const secrets: string[] = [];
    for (const key of [...keys, wrong]) secrets.push(key, key.slice(-28, -6));
    for (const hash of digests) secrets.push(hash, Buffer.from(hash, 'base64url').toString('hex'), Buffer.from(hash, 'base64url').toString('base64'));
    expect(secrets).toHaveLength(2 * 5 + 3 * 4);
    secrets.push('sweep-pepper-0123456789abcdef', 'sweep-webhook-secret-0123');
    for (const [i, secret] of secrets.entries()) {
      expect(everything.includes(secret), `secret #${i} found in what Till produced`).toBe(false);
    }
    metrics.stop();
    alerts.stop();
    await till.close();
  });
});
