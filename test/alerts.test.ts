// Alert rules on live traffic: once per window under a flood, revoked and leaked keys, low quotas,
// and a signed webhook retried against a real HTTP server. No secret in anything produced.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createAlerts,
  createTill,
  MemoryStore,
  SIGNATURE_HEADER,
  signWebhook,
  verifyWebhookSignature,
  webhookSink,
  type Alert,
  type KeyRecord,
  type Till,
} from '@till/core';
import { apiKeyAuth } from '@till/express';
import { RedisStore } from '@till/core/redis';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { middlewareCaller } from '@till/testkit/call-middleware';

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
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const ns of namespaces) await deleteNamespace(redis, ns);
  redis.disconnect();
});

/** A local HTTP server on 127.0.0.1 answering with `handler`; closed after the suite. */
async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Heap in use after a full collection (gc exposed at run time, for this process only). */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** A REVOKED outcome of key `keyId`, as the middleware would emit it. */
const revokedTry = (till: Till, keyId: string, ip = '192.0.2.44') => till.events.emitVerification({ code: 'REVOKED', keyId, ip, at: Date.now() });

const quiet = { warn() {}, error() {} };
const alertOf = (subject: string): Alert => ({
  id: '0123456789abcdef',
  rule: 'revoked-key-used',
  at: Date.now(),
  subject,
  keyId: subject,
  count: 1,
  message: `revoked key ${subject} was tried`,
});

describe('alerts', () => {
  it('fire once under a flood of 10,000 wrong secrets over 100 s, for the client and as probing of the id, never as the key failing', async () => {
    let now = Date.UTC(2030, 0, 1);
    const till = createTill({ store: redisStore(), clock: () => now, auditEvents: false, logger: { warn() {}, error() {} } });
    const { key } = await till.keys.create({ name: 'target', scopes: [] });
    const got: Alert[] = [];
    const alerts = createAlerts(till, {
      rules: [
        { type: 'ip-failures', threshold: 20, window: '1m' },
        { type: 'key-failures', threshold: 50, window: '5m' },
        { type: 'key-probing', threshold: 50, window: '5m' },
      ],
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
      ['key-probing', key.slice(-44, -28), 50],
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
    expect([await call('198.51.100.10', paying.key), await call('198.51.100.10', paying.key), await call('198.51.100.10', paying.key)]).toEqual([
      200, 200, 200,
    ]);
    expect(await call('198.51.100.10', paying.key)).toBe(429);
    await alerts.idle();
    const seen = got.map((a) => [a.rule, a.keyId]).sort();
    expect(seen).toEqual(
      [
        ['leaked-key-used', leaked.record.id],
        ['quota-low', paying.record.id],
        ['revoked-key-used', leaked.record.id],
        ['revoked-key-used', retired.record.id],
      ].sort(),
    );
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

  it('hold at most maxInFlight deliveries of a sink that never settles: 50,000 alerts, the rest dropped, counted and logged once', async () => {
    const errors: string[] = [];
    const till = createTill({ store: new MemoryStore(), auditEvents: false, logger: { warn() {}, error: (m: string) => void errors.push(m) } });
    let delivered = 0;
    const alerts = createAlerts(till, {
      rules: [{ type: 'revoked-key-used' }],
      // A hung receiver, and beside it a sink that keeps up: only the hung one drops.
      sinks: [() => new Promise<void>(() => {}), () => void delivered++],
      dedupWindow: 0,
    });
    for (let i = 0; i < 1000; i++) revokedTry(till, `key${i % 50}`);
    const filled = { ...alerts.stats };
    const before = heapAfterGc();
    for (let i = 0; i < 50_000; i++) revokedTry(till, `key${i % 50}`);
    const after = heapAfterGc();
    // About 1 KB an alert was retained before (50 MB here); nothing is retained for a dropped one now.
    expect(after - before, `heap grew by ${((after - before) / 2 ** 20).toFixed(1)} MB`).toBeLessThan(10 * 2 ** 20);
    expect(filled).toEqual({ sent: 1000, suppressed: 0, dropped: 0, inFlight: 1000 });
    expect(alerts.stats).toEqual({ sent: 51_000, suppressed: 0, dropped: 50_000, inFlight: 1000 });
    expect(delivered).toBe(51_000);
    expect(errors.filter((m) => m.includes('maxInFlight'))).toHaveLength(1);
    expect(errors.join('\n')).not.toMatch(/key\d/);
    alerts.stop();
    await till.close();
  });

  it('idle() resolves once the deliveries raised so far have settled, and a sink that catches up is delivered to again', async () => {
    const errors: string[] = [];
    const till = createTill({ store: new MemoryStore(), auditEvents: false, logger: { warn() {}, error: (m: string) => void errors.push(m) } });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const seen: string[] = [];
    const alerts = createAlerts(till, {
      rules: [{ type: 'revoked-key-used' }],
      sinks: [
        (a) => {
          seen.push(a.subject);
          return a.subject.startsWith('hung') ? new Promise<void>(() => {}) : gate;
        },
      ],
      maxInFlight: 5,
    });
    for (let i = 0; i < 20; i++) revokedTry(till, `gated${i}`);
    expect(alerts.stats).toMatchObject({ sent: 20, dropped: 15, inFlight: 5 });
    expect(seen).toHaveLength(5);
    const first = alerts.idle();
    open();
    await first;
    expect(alerts.stats.inFlight).toBe(0);
    // Caught up: delivered again. idle() waits for what was raised before it, not for a later hung delivery.
    revokedTry(till, 'after');
    const second = alerts.idle();
    revokedTry(till, 'hung0');
    await second;
    expect(seen.slice(5)).toEqual(['after', 'hung0']);
    expect(alerts.stats).toMatchObject({ sent: 22, dropped: 15, inFlight: 1 });
    // A second burst logs once more.
    for (let i = 1; i < 10; i++) revokedTry(till, `hung${i}`);
    expect(alerts.stats).toMatchObject({ dropped: 20, inFlight: 5 });
    expect(errors.filter((m) => m.includes('maxInFlight'))).toHaveLength(2);
    alerts.stop();
    await till.close();
  });

  it('a webhook whose receiver hangs drops alerts beyond maxPending and logs that once, not once per alert', async () => {
    let arrived!: () => void;
    const bothArrived = new Promise<void>((resolve) => (arrived = resolve));
    let requests = 0;
    const { server, url } = await listen(() => {
      // Accepts the request and never answers.
      if (++requests === 2) arrived();
    });
    const errors: string[] = [];
    const secret = 'whsec-hung-0123456789abcdef';
    const sink = webhookSink({ url, secret, retries: 0, timeout: 60_000, maxPending: 2, logger: { warn() {}, error: (m: string) => void errors.push(m) } });
    const held = [sink(alertOf('k0')), sink(alertOf('k1'))];
    await Promise.all(Array.from({ length: 100 }, (_, i) => sink(alertOf(`dropped${i}`))));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/queue full/);
    expect(errors[0]).not.toContain(secret);
    await bothArrived;
    server.closeAllConnections();
    expect((await Promise.allSettled(held)).map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });

  it('never follow a webhook redirect: a 307 to another host fails the delivery, unretried, and that host receives nothing', async () => {
    const secret = 'whsec-redirect-0123456789abcdef';
    const other: string[] = [];
    const elsewhere = await listen((req, res) => {
      other.push(`${req.method} ${req.url}`);
      req.resume();
      res.statusCode = 204;
      res.end();
    });
    let asked = 0;
    const first = await listen((req, res) => {
      asked++;
      req.resume();
      res.statusCode = 307;
      res.setHeader('location', `${elsewhere.url}/stolen`);
      res.end();
    });
    const errors: string[] = [];
    const sink = webhookSink({ url: `${first.url}/hooks/till`, secret, backoff: 1 });
    const failure = await Promise.resolve(sink(alertOf('redirected'))).then(
      () => null,
      (error: Error) => error,
    );
    expect(failure?.message).toMatch(/HTTP 307/);
    expect(asked).toBe(1);
    expect(other).toEqual([]);
    // Through createAlerts the failure is logged with the status, never the body or the secret.
    const till = createTill({ store: new MemoryStore(), auditEvents: false, logger: { warn() {}, error: (m: string) => void errors.push(m) } });
    const alerts = createAlerts(till, { rules: [{ type: 'revoked-key-used' }], sinks: [sink] });
    revokedTry(till, 'redirected2');
    await alerts.idle();
    expect(asked).toBe(2);
    expect(other).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/HTTP 307/);
    expect(errors[0]).not.toContain(secret);
    expect(errors[0]).not.toContain('"alert"');
    expect(errors[0]).not.toContain('stolen');
    alerts.stop();
    await till.close();
  });

  it('read why a revoked key was revoked once, not on every request: 2,000 tries of a key revoked "expired by policy" cost at most one read', async () => {
    class CountingStore extends MemoryStore {
      gets = 0;
      override get(id: string): Promise<KeyRecord | null> {
        this.gets++;
        return super.get(id);
      }
    }
    const store = new CountingStore();
    const till = createTill({ store, auditEvents: false, logger: quiet });
    const expired = await till.keys.create({ name: 'expired', scopes: [] });
    const leaked = await till.keys.create({ name: 'leaked', scopes: [] });
    await till.keys.revoke(expired.record.id, { reason: 'expired by policy' });
    await till.keys.revoke(leaked.record.id, { reason: 'leaked' });
    const got: Alert[] = [];
    const alerts = createAlerts(till, { rules: [{ type: 'leaked-key-used' }], sinks: [(a) => void got.push(a)], dedupWindow: 0 });
    store.gets = 0;
    // 1,000 at once (one shared read), then 1,000 more after it answered (the reason is remembered).
    for (let i = 0; i < 1000; i++) revokedTry(till, expired.record.id);
    await alerts.idle();
    for (let i = 0; i < 1000; i++) revokedTry(till, expired.record.id);
    await alerts.idle();
    expect(store.gets).toBeLessThanOrEqual(1);
    expect(got).toEqual([]);
    // A leaked key still alerts, each time the window allows, from its remembered reason.
    store.gets = 0;
    for (let i = 0; i < 3; i++) revokedTry(till, leaked.record.id);
    await alerts.idle();
    for (let i = 0; i < 3; i++) revokedTry(till, leaked.record.id);
    await alerts.idle();
    expect(store.gets).toBeLessThanOrEqual(1);
    expect(got.map((a) => [a.rule, a.keyId])).toEqual(Array.from({ length: 6 }, () => ['leaked-key-used', leaked.record.id]));
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

describe('verifyWebhookSignature', () => {
  const secret = 'whsec-verify-0123456789abcdef';
  const body = JSON.stringify({ alert: { id: '0123456789abcdef', rule: 'leaked-key-used', subject: 'abc' } });
  const t = 1_900_000_000;
  const header = signWebhook(secret, body, t);
  const mac = header.slice(header.indexOf('v1=') + 3);

  it('accepts a signature exactly 300 s old or 300 s ahead, and refuses one 301 s old or ahead', () => {
    expect(verifyWebhookSignature(secret, header, body, 300, t * 1000)).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, 300, (t + 300) * 1000)).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, 300, (t - 300) * 1000)).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, 300, (t + 301) * 1000)).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, 300, (t + 300) * 1000 + 1)).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, 300, (t - 301) * 1000)).toBe(false);
    // The default tolerance is 5 minutes.
    expect(verifyWebhookSignature(secret, header, body, undefined, (t + 301) * 1000)).toBe(false);
    expect(verifyWebhookSignature(secret, signWebhook(secret, body), body)).toBe(true);
    expect(verifyWebhookSignature(secret, signWebhook(secret, body, Math.floor(Date.now() / 1000) - 301), body)).toBe(false);
    expect(verifyWebhookSignature(secret, signWebhook(secret, body, Math.floor(Date.now() / 1000) + 3600), body)).toBe(false);
  });

  it('refuses a tampered body, another secret, or a timestamp changed after signing', () => {
    const now = t * 1000;
    expect(verifyWebhookSignature(secret, header, body.replace('abc', 'abd'), 300, now)).toBe(false);
    expect(verifyWebhookSignature(secret, header, `${body} `, 300, now)).toBe(false);
    expect(verifyWebhookSignature('whsec-other-0123456789abcdef', header, body, 300, now)).toBe(false);
    expect(verifyWebhookSignature(secret, `t=${t + 1},v1=${mac}`, body, 300, now)).toBe(false);
  });

  it('refuses malformed headers without throwing', () => {
    const now = t * 1000;
    const other = signWebhook(secret, 'another body', t).slice(header.indexOf('v1=') + 3);
    for (const [i, bad] of [
      undefined,
      '',
      ',',
      '=',
      `t=${t}`,
      `v1=${mac}`,
      `t=,v1=${mac}`,
      `t=${t},v1=`,
      `t=${t}.5,v1=${mac}`,
      `t=0x${t.toString(16)},v1=${mac}`,
      `t= ${t},v1=${mac}`,
      `t=${t},v1=${mac.slice(0, 63)}`,
      `t=${t},v1=${mac}0`,
      `t=${t},v1=${mac.slice(0, 62)}zz`,
      `t=${t},v1=${mac.toUpperCase()}`,
      `t=${t},v1=${mac}=extra`,
      `t=${t},v1=${mac},v1=${mac}`,
      `t=${t},t=${t},v1=${mac}`,
      `t=${t},v1=${other},v1=${mac}`,
      `t=${t},v1=${mac},v1=${other}`,
      `t=${t}, v1=${mac}`,
      `${header},`,
      `__proto__=x,${header}`,
      'x'.repeat(100_000),
    ].entries()) {
      // The case's index names it: a header holds a signature, which stays out of the output.
      expect(() => verifyWebhookSignature(secret, bad, body, 300, now), `case ${i}`).not.toThrow();
      expect(verifyWebhookSignature(secret, bad, body, 300, now), `case ${i}`).toBe(false);
    }
    expect(verifyWebhookSignature(secret, 42 as never, body, 300, now)).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, 300, now)).toBe(true);
  });
});
