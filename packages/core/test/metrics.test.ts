// Prometheus metrics of a live app: verifications by outcome, cache, store latency, refusals, alerts; no key in a label.
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createAlerts } from '../src/alerts.js';
import { createMetrics } from '../src/metrics/index.js';
import { MemoryStore } from '../src/store/memory.js';
import { createTill } from '../src/till.js';
import { apiKeyAuth } from '../../express/src/index.js';

describe('metrics', () => {
  it('count verifications by outcome, cache hits and misses, store latency, refusals and alerts', async () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} }, auditEvents: false });
    const alerts = createAlerts(till, { rules: [{ type: 'revoked-key-used' }], sinks: [() => {}] });
    const metrics = createMetrics(till, { alerts });
    const good = await till.keys.create({ name: 'good', scopes: [], limits: [{ name: 'per-minute', limit: 2, window: '1m' }] });
    const gone = await till.keys.create({ name: 'gone', scopes: [] });
    await till.keys.revoke(gone.record.id);
    const app = express();
    app.get('/', apiKeyAuth({ till, bruteForce: false }), (_req, res) => {
      res.send('ok');
    });
    const get = (key: string) => request(app).get('/').set('authorization', `Bearer ${key}`);
    await get(good.key).expect(200);
    await get(good.key).expect(200);
    await get(good.key).expect(429);
    await get(gone.key).expect(401);
    await get(gone.key).expect(401);
    await request(app).get('/').expect(401);
    await alerts.idle();
    const text = await metrics.registry.metrics();
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text)?.[1]);
    expect(value('till_verifications_total{outcome="VALID"}')).toBe(2);
    expect(value('till_verifications_total{outcome="RATE_LIMITED"}')).toBe(1);
    expect(value('till_verifications_total{outcome="REVOKED"}')).toBe(2);
    expect(value('till_verifications_total{outcome="MISSING"}')).toBe(1);
    expect(value('till_verifications_total{outcome="NOT_FOUND"}')).toBe(0);
    expect(value('till_limit_refusals_total{outcome="RATE_LIMITED"}')).toBe(1);
    expect(value('till_cache_misses_total')).toBeGreaterThanOrEqual(2);
    expect(value('till_cache_hits_total')).toBeGreaterThanOrEqual(3);
    expect(value('till_store_latency_seconds_count{operation="consume",result="ok"}')).toBe(3);
    expect(value('till_store_latency_seconds_count{operation="get",result="ok"}')).toBeGreaterThanOrEqual(2);
    expect(value('till_alerts_sent_total')).toBe(1);
    for (const secret of [good.key, gone.key, good.record.id, gone.record.id]) expect(text.includes(secret)).toBe(false);
    metrics.stop();
    alerts.stop();
    await till.close();
  });

  it('checks its options', () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} } });
    expect(() => createMetrics(till, { prefix: 'bad prefix' })).toThrow(/prefix/);
  });
});
