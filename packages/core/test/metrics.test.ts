// Prometheus metrics of a live app: verifications by outcome, cache, store latency, refusals, alerts; no key in a label.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { middlewareCaller } from '@till/testkit/call-middleware';
import { createAlerts } from '../src/audit/alerts.js';
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
    expect(value('till_alerts_dropped_total')).toBe(0);
    for (const secret of [good.key, gone.key, good.record.id, gone.record.id]) expect(text.includes(secret)).toBe(false);
    metrics.stop();
    alerts.stop();
    await till.close();
  });

  it('never put a client address in a label, whatever the address looks like', async () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} }, auditEvents: false });
    const alerts = createAlerts(till, { rules: [{ type: 'ip-failures', threshold: 1, window: '1m' }, { type: 'revoked-key-used' }], sinks: [() => {}] });
    const metrics = createMetrics(till, { alerts });
    const good = await till.keys.create({ name: 'good', scopes: [], limits: [{ name: 'per-minute', limit: 1, window: '1m' }] });
    const gone = await till.keys.create({ name: 'gone', scopes: [] });
    await till.keys.revoke(gone.record.id);
    const clients = [
      '203.0.113.7',
      '2001:db8::1',
      '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
      '::1',
      '::ffff:198.51.100.4',
      'fe80::1%eth0',
      '[2001:db8::2]:443',
      '198.51.100.23, 10.0.0.1',
      ' 192.0.2.9 ',
      'unknown-client-\u2603',
      '"><script>x</script>',
      'client\nlabel="injected"',
    ];
    // Brute-force blocking on, with a low threshold: BLOCKED outcomes too.
    const call = middlewareCaller(apiKeyAuth({ till, bruteForce: { threshold: 3 } }));
    const auth = (key: string) => ({ authorization: `Bearer ${key}` });
    const blocked = new Set<string>();
    till.events.onVerification((e) => {
      if (e.code === 'BLOCKED' && e.ip !== undefined) blocked.add(e.ip);
    });
    for (const ip of clients) {
      await call(ip, auth(good.key));
      await call(ip, auth(gone.key));
      await call(ip, auth(`${good.key.slice(0, -3)}zzz`));
      await call(ip, {});
      // Wrong secrets until the client is blocked (blocking follows the failures asynchronously).
      for (let i = 0; i < 50 && !blocked.has(ip); i++) await call(ip, auth(withWrongSecret(good.key)));
    }
    expect(blocked.size).toBeGreaterThan(0);
    await alerts.idle();
    expect(alerts.stats.sent).toBeGreaterThanOrEqual(clients.length);
    const json = await metrics.registry.getMetricsAsJSON();
    const labelValues = json.flatMap((m) => m.values.flatMap((v) => Object.values(v.labels).map(String)));
    expect(new Set(labelValues)).toEqual(new Set([...labelValues].filter((v) => /^[A-Za-z_+.0-9]+$/.test(v))));
    for (const ip of clients) {
      for (const value of labelValues) expect(value.includes(ip.trim()), `${JSON.stringify(value)} holds ${JSON.stringify(ip)}`).toBe(false);
    }
    const text = await metrics.registry.metrics();
    for (const ip of clients) expect(text.includes(ip.trim()), ip).toBe(false);
    const outcomes = json
      .find((m) => m.name === 'till_verifications_total')!
      .values.filter((v) => v.value > 0)
      .map((v) => v.labels.outcome);
    expect(outcomes).toEqual(expect.arrayContaining(['VALID', 'RATE_LIMITED', 'REVOKED', 'MALFORMED', 'MISSING', 'NOT_FOUND', 'BLOCKED']));
    metrics.stop();
    alerts.stop();
    await till.close();
  });

  it('serve the registry with its own content type (the README example)', async () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} }, auditEvents: false });
    const { registry } = createMetrics(till);
    const app = express();
    app.get('/metrics', async (_req, res) => {
      res.type(registry.contentType).send(await registry.metrics());
    });
    const res = await request(app).get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.text).toContain('till_verifications_total{outcome="VALID"} 0');
    await till.close();
  });

  it('load prom-client only when createMetrics is called, and say how to install it when it is missing (ESM and CommonJS builds)', () => {
    const core = fileURLToPath(new URL('..', import.meta.url));
    expect(existsSync(join(core, 'dist/metrics.js')), 'packages/core/dist is built (pnpm build)').toBe(true);
    // The built package alone, in a directory where prom-client cannot be resolved.
    const dir = mkdtempSync(join(tmpdir(), 'till-no-prom-'));
    try {
      const pkg = join(dir, 'node_modules/@till/core');
      mkdirSync(pkg, { recursive: true });
      cpSync(join(core, 'package.json'), join(pkg, 'package.json'));
      cpSync(join(core, 'dist'), join(pkg, 'dist'), { recursive: true });
      const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '' };
      const run = (args: string[], agent?: string) =>
        JSON.parse(
          execFileSync(process.execPath, args, {
            cwd: dir,
            encoding: 'utf8',
            env: agent === undefined ? env : { ...env, npm_config_user_agent: agent },
          }).trim(),
        ) as unknown;
      const probe = `let resolvable = true; try { req.resolve('prom-client'); } catch { resolvable = false; }
        let error = null; try { m.createMetrics({}); } catch (e) { error = { name: e.name, code: e.code, message: e.message }; }
        console.log(JSON.stringify({ resolvable, loaded: typeof m.createMetrics, error }));`;
      const esm = [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const req = createRequire(process.cwd() + '/node_modules/@till/core/dist/'); const m = await import('@till/core/metrics'); ${probe}`,
      ];
      const cjs = [
        '-e',
        `const req = require('node:module').createRequire(process.cwd() + '/node_modules/@till/core/dist/'); const m = require('@till/core/metrics'); ${probe}`,
      ];
      const expected = (hint: string) => ({
        resolvable: false,
        loaded: 'function',
        error: { name: 'TillError', code: 'MISSING_DEPENDENCY', message: `[till] [metrics] prom-client is not installed: ${hint}` },
      });
      expect(run(esm)).toEqual(expected('npm install prom-client'));
      expect(run(cjs)).toEqual(expected('npm install prom-client'));
      expect(run(cjs, 'pnpm/9.15.0 npm/? node/v20.19.0 linux x64')).toEqual(expected('pnpm add prom-client'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('load prom-client from both built entries when it is installed', () => {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const probe = `const till = core.createTill({ logger: core.silentLogger }); const { registry } = m.createMetrics(till);
      const own = registry instanceof prom.Registry; registry.metrics().then((text) => console.log(JSON.stringify({ own, type: registry.contentType.split(';')[0], has: text.includes('till_verifications_total') })));`;
    const out = (args: string[]) => JSON.parse(execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim()) as unknown;
    const expected = { own: true, type: 'text/plain', has: true };
    expect(
      out([
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const prom = createRequire(process.cwd() + '/packages/core/package.json')('prom-client'); const core = await import('@till/core'); const m = await import('@till/core/metrics'); ${probe}`,
      ]),
    ).toEqual(expected);
    expect(
      out([
        '-e',
        `const prom = require('node:module').createRequire(process.cwd() + '/packages/core/package.json')('prom-client'); const core = require('@till/core'); const m = require('@till/core/metrics'); ${probe}`,
      ]),
    ).toEqual(expected);
  });

  it('checks its options', () => {
    const till = createTill({ store: new MemoryStore(), logger: { warn() {}, error() {} } });
    expect(() => createMetrics(till, { prefix: 'bad prefix' })).toThrow(/prefix/);
  });
});
