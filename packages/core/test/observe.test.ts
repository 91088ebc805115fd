// The diagnostics channels: what each publishes, for which Till, never a secret, nothing for nobody.
import { channel, tracingChannel } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { storeUnavailable, TillError } from '../src/errors.js';
import { createAlerts } from '../src/audit/alerts.js';
import { createMetrics } from '../src/metrics/index.js';
import {
  TILL_CHANNELS,
  type EventMessage,
  type LimitMessage,
  type RequestMessage,
  type StoreCallContext,
  type VerifyMessage,
} from '../src/observe/channels.js';
import type { KeyRecord } from '../src/store/record.js';
import { MemoryStore } from '../src/store/memory.js';
import type { ConsumeRequest, ConsumeResult } from '../src/store/types.js';
import { createTill, type Till } from '../src/till.js';
import { apiKeyAuth } from '../../express/src/index.js';

const quiet = { warn() {}, error() {} };

/** The digest a store holds for `id`: no message may carry it either. */
async function storedHash(t: Till, id: string): Promise<string> {
  const hash = (await t.store.get(id))?.hash;
  expect(hash).toMatch(/^[A-Za-z0-9_-]{40,}$/);
  return hash!;
}

/** A memory store that can be switched off: reads and charges then fail as an unreachable store's do. */
class SwitchedStore extends MemoryStore {
  down = false;
  override get(id: string): Promise<KeyRecord | null> {
    return this.down ? Promise.reject(storeUnavailable('test')) : super.get(id);
  }
  override consume(request: ConsumeRequest): Promise<ConsumeResult> {
    return this.down ? Promise.reject(storeUnavailable('test')) : super.consume(request);
  }
}

const STORE_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const;

/** Subscribes to every channel Till publishes on, and records what each hears, in order. */
function listenAll() {
  const heard = {
    verify: [] as VerifyMessage[],
    request: [] as RequestMessage[],
    limit: [] as LimitMessage[],
    event: [] as EventMessage[],
    store: [] as { event: (typeof STORE_EVENTS)[number]; context: StoreCallContext }[],
  };
  const plain = {
    verify: channel(TILL_CHANNELS.verify),
    request: channel(TILL_CHANNELS.request),
    limit: channel(TILL_CHANNELS.limit),
    event: channel(TILL_CHANNELS.event),
  };
  const hear = {
    verify: (m: unknown) => heard.verify.push(m as VerifyMessage),
    request: (m: unknown) => heard.request.push(m as RequestMessage),
    limit: (m: unknown) => heard.limit.push(m as LimitMessage),
    event: (m: unknown) => heard.event.push(m as EventMessage),
  };
  for (const name of ['verify', 'request', 'limit', 'event'] as const) plain[name].subscribe(hear[name]);
  const store = tracingChannel<unknown, StoreCallContext>(TILL_CHANNELS.store);
  const handlers = Object.fromEntries(
    STORE_EVENTS.map((event) => [event, (context: StoreCallContext) => heard.store.push({ event, context: { ...context } })]),
  ) as unknown as Parameters<typeof store.subscribe>[0];
  store.subscribe(handlers);
  return {
    heard,
    /** Every message heard, as one text (for searching it for secrets). */
    text: () =>
      JSON.stringify(heard, (_key, value: unknown) => (value instanceof Error ? { message: value.message, stack: value.stack, cause: value.cause } : value)),
    off() {
      for (const name of ['verify', 'request', 'limit', 'event'] as const) plain[name].unsubscribe(hear[name]);
      store.unsubscribe(handlers);
    },
  };
}

/** Whether any channel of Till has a subscriber left. */
function anySubscriber(): boolean {
  const store = tracingChannel(TILL_CHANNELS.store);
  return (
    [TILL_CHANNELS.verify, TILL_CHANNELS.request, TILL_CHANNELS.limit, TILL_CHANNELS.event].some((name) => channel(name).hasSubscribers) ||
    STORE_EVENTS.some((e) => store[e].hasSubscribers)
  );
}

const tills: Till[] = [];
function till(options: Parameters<typeof createTill>[0] = {}): Till {
  const t = createTill({ logger: quiet, auditEvents: false, ...options });
  tills.push(t);
  return t;
}
afterEach(async () => {
  for (const t of tills.splice(0)) await t.close();
  vi.restoreAllMocks();
  expect(anySubscriber(), 'a test left a subscriber behind').toBe(false);
});

describe('diagnostics channels', () => {
  it('publish each verification with its outcome, key id, cache hit and duration', async () => {
    const t = till({ name: 'api' });
    const { key, record } = await t.keys.create({ name: 'svc', scopes: ['a'] });
    const gone = await t.keys.create({ name: 'gone', scopes: [] });
    await t.keys.revoke(gone.record.id);
    const all = listenAll();
    try {
      expect((await t.verify(key)).valid).toBe(true);
      expect((await t.verify(key)).valid).toBe(true);
      expect((await t.verify(key, { scopes: ['b'] })).code).toBe('INSUFFICIENT_SCOPE');
      expect((await t.verify(gone.key)).code).toBe('REVOKED');
      expect((await t.verify(`${key.slice(0, -8)}abcdefgh`)).code).not.toBe('VALID');
      expect((await t.verify('')).code).toBe('MISSING');
    } finally {
      all.off();
    }
    const { verify } = all.heard;
    expect(verify.map(({ till, code, keyId, cacheHit, stale }) => ({ till, code, keyId, cacheHit, stale }))).toEqual([
      { till: 'api', code: 'VALID', keyId: record.id, cacheHit: false, stale: false },
      { till: 'api', code: 'VALID', keyId: record.id, cacheHit: true, stale: false },
      { till: 'api', code: 'INSUFFICIENT_SCOPE', keyId: record.id, cacheHit: true, stale: false },
      { till: 'api', code: 'REVOKED', keyId: gone.record.id, cacheHit: false, stale: false },
      { till: 'api', code: 'MALFORMED', keyId: null, cacheHit: false, stale: false },
      { till: 'api', code: 'MISSING', keyId: null, cacheHit: false, stale: false },
    ]);
    for (const m of verify) expect(m.duration).toBeGreaterThanOrEqual(0);
    // The first read of each key went to the store, traced from start to end.
    const gets = all.heard.store.filter((s) => s.context.method === 'get');
    expect(gets.map((s) => s.event)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd', 'start', 'end', 'asyncStart', 'asyncEnd']);
    const ended = gets.filter((s) => s.event === 'asyncEnd').map((s) => s.context);
    for (const c of ended) {
      expect(c).toMatchObject({ till: 'api', store: 'memory', method: 'get', ok: true });
      expect(c.duration).toBeGreaterThanOrEqual(0);
      // Neither the call's arguments nor its result (a record, with its hash).
      expect(Object.keys(c).sort()).toEqual(['duration', 'method', 'ok', 'store', 'till']);
    }
    for (const secret of [key, gone.key, key.slice(-28), await storedHash(t, record.id)]) expect(all.text().includes(secret)).toBe(false);
  });

  it('publish one message per verification when many run at once, each with its own answer', async () => {
    const t = till({ name: 'many' });
    const keys = await Promise.all([1, 2, 3].map((n) => t.keys.create({ name: `k${n}`, scopes: [] })));
    const all = listenAll();
    try {
      const results = await Promise.all([...keys, ...keys].map(({ key }) => t.verify(key)));
      expect(results.every((r) => r.valid)).toBe(true);
    } finally {
      all.off();
    }
    const ids = keys.map((k) => k.record.id);
    expect(all.heard.verify.map((m) => m.keyId).sort()).toEqual([...ids, ...ids].sort());
    // The three first reads share the store with the three second (single-flight): six answers, three reads.
    expect(all.heard.store.filter((s) => s.event === 'asyncEnd' && s.context.method === 'get')).toHaveLength(3);
  });

  it('publish requests, limit charges and store calls of an app, and never a key, a secret or a hash', async () => {
    const t = till({ name: 'web' });
    const good = await t.keys.create({ name: 'good', scopes: [], limits: [{ name: 'per-minute', limit: 1, window: '1m' }] });
    const app = express();
    app.get('/', apiKeyAuth({ till: t, bruteForce: false }), (_req, res) => {
      res.send('ok');
    });
    const all = listenAll();
    try {
      await request(app).get('/').set('authorization', `Bearer ${good.key}`).set('x-forwarded-for', '203.0.113.7').expect(200);
      await request(app).get('/').set('authorization', `Bearer ${good.key}`).expect(429);
      await request(app).get('/').set('x-api-key', 'nonsense').expect(401);
    } finally {
      all.off();
    }
    const { request: requests, limit, store } = all.heard;
    expect(requests.map(({ till, code, keyId }) => ({ till, code, keyId }))).toEqual([
      { till: 'web', code: 'VALID', keyId: good.record.id },
      { till: 'web', code: 'RATE_LIMITED', keyId: good.record.id },
      { till: 'web', code: 'MALFORMED', keyId: null },
    ]);
    expect(limit.map(({ till, subject, limits, cost, outcome, admitted, fallback }) => ({ till, subject, limits, cost, outcome, admitted, fallback }))).toEqual(
      [
        { till: 'web', subject: good.record.id, limits: ['per-minute'], cost: 1, outcome: 'OK', admitted: true, fallback: false },
        { till: 'web', subject: good.record.id, limits: ['per-minute'], cost: 1, outcome: 'RATE_LIMITED', admitted: false, fallback: false },
      ],
    );
    expect(store.filter((s) => s.event === 'asyncEnd').map((s) => `${s.context.method}:${s.context.ok}`)).toEqual(
      expect.arrayContaining(['get:true', 'consume:true']),
    );
    const text = all.text();
    for (const secret of [good.key, good.key.slice(-28), await storedHash(t, good.record.id)]) expect(text.includes(secret)).toBe(false);
  });

  it('say which Till each message came from, and deliver till.events of one Till only', async () => {
    const one = till({ name: 'one' });
    const two = till();
    expect(two.name).toMatch(/^till-\d+$/);
    expect(till().name).not.toBe(two.name);
    const a = await one.keys.create({ name: 'a', scopes: [] });
    const b = await two.keys.create({ name: 'b', scopes: [] });
    const heardOne: string[] = [];
    const heardTwo: string[] = [];
    const offOne = one.events.onVerification((e) => heardOne.push(`${e.code}:${e.keyId}`));
    const offTwo = two.events.onVerification((e) => heardTwo.push(`${e.code}:${e.keyId}`));
    const all = listenAll();
    try {
      await one.verify(a.key);
      await two.verify(b.key);
      one.events.emitVerification({ code: 'REVOKED', keyId: a.record.id, at: 1 });
      two.events.emitVerification({ code: 'EXPIRED', keyId: b.record.id, at: 2 });
    } finally {
      all.off();
      offOne();
      offTwo();
    }
    expect(all.heard.verify.map((m) => `${m.till}:${m.keyId}`)).toEqual([`one:${a.record.id}`, `${two.name}:${b.record.id}`]);
    expect(all.heard.request.map((m) => m.till)).toEqual(['one', two.name]);
    // Listeners get the event as it was emitted, without the channel's `till`.
    expect(heardOne).toEqual([`REVOKED:${a.record.id}`]);
    expect(heardTwo).toEqual([`EXPIRED:${b.record.id}`]);
  });

  it('publish a fallback of the limits, the failed store calls with their errors, and the way back', async () => {
    const store = new SwitchedStore();
    const t = till({ store, name: 'down' });
    const { key, record } = await t.keys.create({ name: 'limited', scopes: [], limits: [{ name: 'per-second', limit: 100, window: '1s' }] });
    const events: unknown[] = [];
    const off = t.events.on((e) => events.push(e));
    const all = listenAll();
    try {
      expect((await t.verify(key)).valid).toBe(true);
      store.down = true;
      const during = await t.verify(key);
      expect(during.valid).toBe(true);
      store.down = false;
      expect((await t.verify(key)).valid).toBe(true);
    } finally {
      all.off();
      off();
    }
    expect(all.heard.limit.map(({ outcome, admitted, fallback }) => ({ outcome, admitted, fallback }))).toEqual([
      { outcome: 'OK', admitted: true, fallback: false },
      { outcome: 'OK', admitted: true, fallback: true },
      { outcome: 'OK', admitted: true, fallback: false },
    ]);
    expect(all.heard.event.map(({ till, type }) => `${till}:${type}`)).toEqual(['down:limits.fallback', 'down:limits.restored']);
    expect(events).toEqual([
      { type: 'limits.fallback', store: 'memory', reason: expect.stringContaining('store unavailable') },
      { type: 'limits.restored', store: 'memory' },
    ]);
    const failed = all.heard.store.filter((s) => s.context.ok === false);
    expect(failed.map((s) => s.event)).toEqual(['error', 'asyncStart', 'asyncEnd']);
    expect(failed[2]!.context).toMatchObject({ till: 'down', method: 'consume', ok: false });
    expect(failed[2]!.context.error).toBeInstanceOf(TillError);
    expect(all.text().includes(key.slice(-28))).toBe(false);
    expect(all.text().includes(await storedHash(t, record.id))).toBe(false);
  });

  it('trace a store call that throws instead of rejecting as a failed call, and pass the throw on as a rejection', async () => {
    const store = new MemoryStore();
    const t = till({ store, name: 'throws' });
    const all = listenAll();
    store.list = () => {
      throw new Error('broken list');
    };
    try {
      await expect(t.keys.list()).rejects.toThrow('broken list');
    } finally {
      all.off();
    }
    expect(all.heard.store.map((s) => `${s.event}:${s.context.method}`)).toEqual(['start:list', 'end:list', 'error:list', 'asyncStart:list', 'asyncEnd:list']);
  });

  it('cost nothing without subscribers: no message, no clock read', async () => {
    const t = till();
    const { key } = await t.keys.create({ name: 'k', scopes: [], limits: [{ name: 'per-minute', limit: 1000, window: '1m' }] });
    await t.verify(key);
    const now = vi.spyOn(performance, 'now');
    for (let i = 0; i < 100; i++) await t.verify(key);
    await t.keys.list();
    expect(now).not.toHaveBeenCalled();
    const all = listenAll();
    try {
      await t.verify(key);
    } finally {
      all.off();
    }
    expect(now).toHaveBeenCalled();
    expect(all.heard.verify).toHaveLength(1);
  });

  it('leave no subscriber behind: till.events, metrics and alerts unsubscribe when stopped', async () => {
    const t = till();
    const offEvent = t.events.on(() => {});
    const offOutcome = t.events.onVerification(() => {});
    const metrics = createMetrics(t);
    const alerts = createAlerts(t, { rules: [{ type: 'revoked-key-used' }], sinks: [() => {}] });
    expect(channel(TILL_CHANNELS.event).hasSubscribers).toBe(true);
    expect(channel(TILL_CHANNELS.request).hasSubscribers).toBe(true);
    expect(tracingChannel(TILL_CHANNELS.store).asyncEnd.hasSubscribers).toBe(true);
    offEvent();
    offEvent();
    offOutcome();
    expect(channel(TILL_CHANNELS.request).hasSubscribers).toBe(true);
    metrics.stop();
    expect(channel(TILL_CHANNELS.request).hasSubscribers).toBe(true);
    alerts.stop();
    expect(anySubscriber()).toBe(false);
  });

  it('check the name and tracing options', () => {
    for (const name of ['', 'has space', 'x'.repeat(65), 7, 'caf\u00e9']) {
      expect(() => createTill({ name: name as string })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringContaining('name must be') }),
      );
    }
    expect(() => createTill({ tracing: 'yes' as unknown as boolean })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: '[till] [createTill] tracing must be true or false' }),
    );
  });
});
