// Alert rules on live traffic: once per window under a flood, revoked and leaked keys, low quotas,
// and a signed webhook retried against a real HTTP server. No secret in anything produced.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createAlerts, createTill, MemoryStore, SIGNATURE_HEADER, verifyWebhookSignature, webhookSink, type Alert, type Till } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { RedisStore } from '@till/core/redis';
import { withWrongSecret } from './helpers/adapter-support.js';
import { deleteNamespace, newClient, uniqueNamespace } from './helpers/redis.js';
import { middlewareCaller } from './helpers/call-middleware.js';

/** apiKeyAuth() of `till` as a function: a request from `ip` with `key` (or none) resolves to its status. */
function caller(till: Till) {
  const call = middlewareCaller(apiKeyAuth({ till, bruteForce: false }));
  return (ip: string, key: string | null) => call(ip, key === null ? {} : { authorization: `Bearer ${key}` });
}

const servers: Server[] = [];
const redis = newClient();
const namespaces: string[] = [];
/** A Redis store of its own for each test, on the suite's Redis. */
function redisStore(): RedisStore {
  const namespace = uniqueNamespace();
  namespaces.push(namespace);
  return new RedisStore({ client: redis, namespace });
}
afterAll(async () => {
  for (const s of servers) s.close();
  for (const ns of namespaces) await deleteNamespace(redis, ns);
  redis.disconnect();
});

describe('alerts', () => {
  it('fire once under a flood of 10,000 failures over 100 s, for the client and for the key', async () => {
    let now = Date.UTC(2030, 0, 1);
    const till = createTill({ store: redisStore(), clock: () => now, auditEvents: false, logger: { warn() {}, error() {} } });
    const { key } = await till.keys.create({ name: 'target', scopes: [] });
    const got: Alert[] = [];
    const alerts = createAlerts(till, {
      rules: [{ type: 'ip-failures', threshold: 20, window: '1m' }, { type: 'key-failures', threshold: 50, window: '5m' }],
      sinks: [(a) => void got.push(a)],
    });
    const call = caller(till);
    const wrong = withWrongSecret(key);
    // 10 ms apart: the 1-minute window fills twice; the second time, deduplication holds the alert back.
    for (let i = 0; i < 10_000; i++) {
      now += 10;
      expect(await call('203.0.113.66', wrong)).toBe(401);
    }
    await alerts.idle();
    expect(got.map((a) => [a.rule, a.subject, a.count])).toEqual([
      ['ip-failures', '203.0.113.66', 20],
      ['key-failures', key.slice(-44, -28), 50],
    ]);
    expect(alerts.stats.sent).toBe(2);
    expect(alerts.stats.suppressed).toBe(1);
    expect(JSON.stringify(got)).not.toContain(key.slice(-28, -6));
    expect(JSON.stringify(got)).not.toContain(wrong.slice(-28, -6));
    alerts.stop();
    await till.close();
  });

  it('tell of revoked keys still tried, of leaked ones apart, and of keys nearing their quota', async () => {
    const till = createTill({ store: redisStore(), auditEvents: false, logger: { warn() {}, error() {} } });
    const leaked = await till.keys.create({ name: 'leaked', scopes: [] });
    const retired = await till.keys.create({ name: 'retired', scopes: [] });
    const paying = await till.keys.create({ name: 'paying', scopes: [], credits: { remaining: 3 } });
    await till.keys.revoke(leaked.record.id, { reason: 'leaked' });
    await till.keys.revoke(retired.record.id, { reason: 'no longer used' });
    const got: Alert[] = [];
    const alerts = createAlerts(till, {
      rules: [{ type: 'revoked-key-used' }, { type: 'leaked-key-used' }, { type: 'quota-low', below: 1 }],
      sinks: [(a) => void got.push(a)],
    });
    const call = caller(till);
    for (let i = 0; i < 5; i++) {
      expect(await call('198.51.100.9', leaked.key)).toBe(401);
      expect(await call('198.51.100.9', retired.key)).toBe(401);
    }
    expect([await call('198.51.100.10', paying.key), await call('198.51.100.10', paying.key), await call('198.51.100.10', paying.key)]).toEqual([200, 200, 200]);
    expect(await call('198.51.100.10', paying.key)).toBe(429);
    await alerts.idle();
    const seen = got.map((a) => [a.rule, a.keyId]).sort();
    expect(seen).toEqual([
      ['leaked-key-used', leaked.record.id],
      ['quota-low', paying.record.id],
      ['revoked-key-used', leaked.record.id],
      ['revoked-key-used', retired.record.id],
    ].sort());
    expect(got.find((a) => a.rule === 'quota-low')!.message).toBe(`key ${paying.record.id} has 1 credits left`);
    alerts.stop();
    await till.close();
  });

  it('post to a webhook, signed, and retry until it answers', async () => {
    const received: Array<{ body: string; signature: string | undefined }> = [];
    let failuresLeft = 2;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        received.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
        res.statusCode = failuresLeft-- > 0 ? 503 : 204;
        res.end();
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const secret = 'whsec-0123456789abcdef';
    const till = createTill({ store: redisStore(), auditEvents: false, logger: { warn() {}, error() {} } });
    const { key } = await till.keys.create({ name: 'k', scopes: [] });
    await till.keys.revoke(key.slice(-44, -28));
    const alerts = createAlerts(till, {
      rules: [{ type: 'revoked-key-used' }],
      sinks: [webhookSink({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/till`, secret, backoff: 20 })],
    });
    expect(await caller(till)('192.0.2.1', key)).toBe(401);
    await alerts.idle();
    expect(received).toHaveLength(3);
    const last = received[2]!;
    expect(verifyWebhookSignature(secret, last.signature, last.body)).toBe(true);
    expect(verifyWebhookSignature('another-secret-0123456789', last.signature, last.body)).toBe(false);
    expect(verifyWebhookSignature(secret, last.signature, last.body.replace('revoked', 'Revoked'))).toBe(false);
    expect(JSON.parse(last.body).alert).toMatchObject({ rule: 'revoked-key-used', keyId: key.slice(-44, -28), ip: '192.0.2.1' });
    for (const r of received) expect(r.body.includes(key.slice(-28, -6))).toBe(false);
    alerts.stop();
    await till.close();
  });

  it('check their options when created', () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} } });
    const sink = () => {};
    for (const options of [
      { rules: [], sinks: [sink] },
      { rules: [{ type: 'ip-failures', threshold: 0, window: '1m' }], sinks: [sink] },
      { rules: [{ type: 'ip-failures', threshold: 5, window: 'soon' }], sinks: [sink] },
      { rules: [{ type: 'everything' }], sinks: [sink] },
      { rules: [{ type: 'revoked-key-used' }], sinks: [] },
      { rules: [{ type: 'revoked-key-used' }], sinks: ['log'] },
    ]) {
      expect(() => createAlerts(till, options as never), JSON.stringify(options)).toThrow(/\[alerts\]/);
    }
    expect(() => webhookSink({ url: 'ftp://x', secret: 'x'.repeat(16) })).toThrow(/http/);
    expect(() => webhookSink({ url: 'http://x', secret: 'short' })).toThrow(/secret/);
  });
});
