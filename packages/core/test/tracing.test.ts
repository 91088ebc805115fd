// OpenTelemetry spans through a real SDK (in-memory exporter), and a clear error when @opentelemetry/api is missing.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { storeUnavailable } from '../src/errors.js';
import { TRACER_NAME } from '../src/observe/tracing.js';
import type { KeyRecord } from '../src/store/record.js';
import { MemoryStore } from '../src/store/memory.js';
import { createTill } from '../src/till.js';

const quiet = { warn() {}, error() {} };
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
beforeAll(() => {
  expect(trace.setGlobalTracerProvider(provider)).toBe(true);
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
});
beforeEach(() => exporter.reset());

/** A memory store whose reads can be made to fail as an unreachable store's do. */
class SwitchedStore extends MemoryStore {
  down = false;
  override get(id: string): Promise<KeyRecord | null> {
    return this.down ? Promise.reject(storeUnavailable('test')) : super.get(id);
  }
}

const spans = () =>
  exporter.getFinishedSpans().map((s) => ({
    name: s.name,
    kind: s.kind,
    attributes: s.attributes,
    status: s.status,
    events: s.events,
    scope: s.instrumentationScope.name,
    start: s.startTime,
    end: s.endTime,
  }));

describe('tracing', () => {
  it('makes a span for each verification and store call, with the key id, outcome and cache hit, never the key', async () => {
    const store = new SwitchedStore();
    const till = createTill({ store, logger: quiet, auditEvents: false, usage: false, name: 'traced', tracing: true });
    const untraced = createTill({ logger: quiet, auditEvents: false, usage: false });
    const { key, record } = await till.keys.create({ name: 'svc', scopes: ['a'] });
    const other = await untraced.keys.create({ name: 'other', scopes: [] });
    exporter.reset();
    expect((await till.verify(key)).valid).toBe(true);
    expect((await till.verify(key)).valid).toBe(true);
    expect((await till.verify(key, { scopes: ['b'] })).code).toBe('INSUFFICIENT_SCOPE');
    expect((await untraced.verify(other.key)).valid).toBe(true);
    const made = spans();
    expect(made.map((s) => s.name)).toEqual(['till store get', 'till verify', 'till verify', 'till verify']);
    for (const s of made) expect(s.scope).toBe(TRACER_NAME);
    expect(made[0]).toMatchObject({
      kind: SpanKind.CLIENT,
      attributes: { 'till.instance': 'traced', 'till.store.kind': 'memory', 'till.store.method': 'get' },
      status: { code: SpanStatusCode.UNSET },
    });
    expect(made.slice(1).map((s) => s.attributes)).toEqual([
      { 'till.instance': 'traced', 'till.outcome': 'VALID', 'till.key.id': record.id, 'till.cache.hit': false, 'till.cache.stale': false },
      { 'till.instance': 'traced', 'till.outcome': 'VALID', 'till.key.id': record.id, 'till.cache.hit': true, 'till.cache.stale': false },
      { 'till.instance': 'traced', 'till.outcome': 'INSUFFICIENT_SCOPE', 'till.key.id': record.id, 'till.cache.hit': true, 'till.cache.stale': false },
    ]);
    // A span's start comes before its end: both from the operation's own duration.
    for (const s of made) expect(s.start[0] * 1e9 + s.start[1]).toBeLessThanOrEqual(s.end[0] * 1e9 + s.end[1]);
    const text = JSON.stringify(made);
    expect(text.includes(key)).toBe(false);
    expect(text.includes(key.slice(-28))).toBe(false);
    await till.close();
    await untraced.close();
  });

  it('records a failed store call as an error, and stops when the Till is closed', async () => {
    const store = new SwitchedStore();
    const till = createTill({ store, logger: quiet, auditEvents: false, usage: false, name: 'failing', tracing: true, cache: { staleWindow: 0 } });
    const { key, record } = await till.keys.create({ name: 'svc', scopes: [] });
    exporter.reset();
    store.down = true;
    expect((await till.verify(key)).code).toBe('STORE_UNAVAILABLE');
    const [get, verify] = spans();
    expect(get).toMatchObject({ name: 'till store get', status: { code: SpanStatusCode.ERROR, message: '[till] [test] store unavailable' } });
    expect(get!.events.map((e) => [e.name, e.attributes?.['exception.message']])).toEqual([['exception', '[till] [test] store unavailable']]);
    expect(verify).toMatchObject({
      name: 'till verify',
      attributes: { 'till.outcome': 'STORE_UNAVAILABLE', 'till.cache.hit': false },
      status: { code: SpanStatusCode.ERROR },
    });
    // No key id for an answer that names none.
    expect(verify!.attributes['till.key.id']).toBeUndefined();
    store.down = false;
    await till.close();
    exporter.reset();
    expect((await till.verify(key)).valid).toBe(true);
    expect(await till.keys.get(record.id)).not.toBeNull();
    expect(spans()).toEqual([]);
  });

  it('loads @opentelemetry/api only when tracing is asked for, and says how to install it when it is missing (ESM and CommonJS builds)', () => {
    const core = fileURLToPath(new URL('..', import.meta.url));
    expect(existsSync(join(core, 'dist/index.js')), 'packages/core/dist is built (pnpm build)').toBe(true);
    // The built package with its one dependency, in a directory where @opentelemetry/api cannot be resolved.
    const dir = mkdtempSync(join(tmpdir(), 'till-no-otel-'));
    try {
      const pkg = join(dir, 'node_modules/@till/core');
      mkdirSync(pkg, { recursive: true });
      cpSync(join(core, 'package.json'), join(pkg, 'package.json'));
      cpSync(join(core, 'dist'), join(pkg, 'dist'), { recursive: true });
      const lruCache = realpathSync(join(core, 'node_modules/lru-cache'));
      symlinkSync(lruCache, join(dir, 'node_modules/lru-cache'), 'dir');
      const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '' };
      const run = (args: string[]) => JSON.parse(execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8', env }).trim()) as unknown;
      const probe = `let resolvable = true; try { req.resolve('@opentelemetry/api'); } catch { resolvable = false; }
        const plain = m.createTill({ logger: m.silentLogger }); const name = typeof plain.name;
        let error = null; try { m.createTill({ logger: m.silentLogger, tracing: true }); } catch (e) { error = { name: e.name, code: e.code, message: e.message }; }
        plain.close().then(() => console.log(JSON.stringify({ resolvable, name, error })));`;
      const esm = [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const req = createRequire(process.cwd() + '/node_modules/@till/core/dist/'); const m = await import('@till/core'); ${probe}`,
      ];
      const cjs = [
        '-e',
        `const req = require('node:module').createRequire(process.cwd() + '/node_modules/@till/core/dist/'); const m = require('@till/core'); ${probe}`,
      ];
      const expected = {
        resolvable: false,
        name: 'string',
        error: {
          name: 'TillError',
          code: 'MISSING_DEPENDENCY',
          message: '[till] [tracing] @opentelemetry/api is not installed: npm install @opentelemetry/api',
        },
      };
      expect(run(esm)).toEqual(expected);
      expect(run(cjs)).toEqual(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
