// Prometheus metrics for Till (entry `@till/core/metrics`): only this entry loads prom-client, and only
// when createMetrics() is called, so that a missing prom-client is a clear error, not a bare import failure.
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { Alerts } from '../audit/alerts.js';
import { tillError } from '../errors.js';
import { installHint } from '../util/install-hint.js';
import { OUTCOME_CODES } from '../verify/outcome.js';
import type { KeyStore } from '../store/types.js';
import type { Till } from '../till.js';

export interface MetricsOptions {
  /** Where the metrics go. Default: a new Registry (serve `registry.metrics()` at /metrics). */
  registry?: Registry;
  /** Name prefix. Default `till_`. */
  prefix?: string;
  /** Alerts to count (sent, held back by deduplication, dropped for a sink that is behind). */
  alerts?: Alerts;
}

export interface TillMetrics {
  readonly registry: Registry;
  /** Stops counting (the metrics stay registered). */
  stop(): void;
}

type PromClient = typeof import('prom-client');
let promClient: PromClient | undefined;

/** prom-client, loaded on first use: it is an optional peer dependency. */
function loadPromClient(): PromClient {
  if (promClient !== undefined) return promClient;
  let loaded: PromClient;
  try {
    loaded = createRequire(import.meta.url)('prom-client') as PromClient;
  } catch (cause) {
    const code = (cause as { code?: unknown } | null)?.code;
    const missing = (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') && String((cause as Error).message).includes("'prom-client'");
    throw tillError(
      'MISSING_DEPENDENCY',
      'metrics',
      missing
        ? `prom-client is not installed: ${installHint('prom-client')}`
        : `prom-client could not be loaded (${cause instanceof Error ? cause.message : String(cause)}): reinstall it with ${installHint('prom-client')}`,
      { cause },
    );
  }
  promClient = loaded;
  return loaded;
}

const TIMED: ReadonlyArray<keyof KeyStore> = ['get', 'consume', 'insert', 'replace', 'remove', 'list', 'appendAudit', 'recordUsage', 'readAudit', 'readUsage'];

/**
 * Registers Till's metrics: verifications by outcome, cache hits and misses, store latency by
 * operation, rate-limit and credit refusals, and alerts sent. Labels are outcome codes, operations
 * and rule names only: never a key, an id or a client (cardinality and secrecy alike).
 */
export function createMetrics(till: Till, options: MetricsOptions = {}): TillMetrics {
  if (options === null || typeof options !== 'object') throw tillError('INVALID_OPTIONS', 'metrics', 'options must be an object');
  const { Counter, Histogram, Registry } = loadPromClient();
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'till_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw tillError('INVALID_OPTIONS', 'metrics', 'prefix must be a valid metric name prefix');

  const verifications = new Counter({ name: `${prefix}verifications_total`, help: 'Verifications by outcome code.', labelNames: ['outcome'], registers: [registry] });
  for (const code of OUTCOME_CODES) verifications.inc({ outcome: code }, 0);
  const refusals = new Counter({ name: `${prefix}limit_refusals_total`, help: 'Requests refused by a rate limit or for lack of credits.', labelNames: ['outcome'], registers: [registry] });
  const stats = till.verifier.stats;
  /** A counter whose value is a running count Till keeps elsewhere, read at each scrape. */
  const runningCount = (name: string, help: string, read: () => number) =>
    new Counter({
      name: `${prefix}${name}`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  runningCount('cache_hits_total', 'Verifications answered from the in-process cache.', () => stats.hits);
  runningCount('cache_misses_total', 'Verifications that read the store.', () => stats.misses);
  runningCount('stale_hits_total', 'Verifications served from the stale window while the store was unreachable.', () => stats.staleHits);
  const latency = new Histogram({
    name: `${prefix}store_latency_seconds`,
    help: 'Store operations by name and result.',
    labelNames: ['operation', 'result'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const alerts = options.alerts;
  if (alerts !== undefined) {
    runningCount('alerts_sent_total', 'Alerts delivered to the sinks.', () => alerts.stats.sent);
    runningCount('alerts_suppressed_total', 'Alerts held back by deduplication.', () => alerts.stats.suppressed);
    runningCount('alerts_dropped_total', 'Alert deliveries dropped because a sink had maxInFlight deliveries unsettled.', () => alerts.stats.dropped);
  }

  const off = till.events.onVerification((event) => {
    verifications.inc({ outcome: event.code });
    if (event.code === 'RATE_LIMITED' || event.code === 'USAGE_EXCEEDED') refusals.inc({ outcome: event.code });
  });

  // Store latency: the store's own methods, timed in place (this Till's store only).
  const store = till.store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const originals = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  for (const name of TIMED) {
    const original = store[name];
    if (typeof original !== 'function') continue;
    originals.set(name, original);
    store[name] = function timed(this: unknown, ...args: unknown[]) {
      const end = latency.startTimer({ operation: name });
      let result: Promise<unknown>;
      try {
        result = original.apply(till.store, args);
      } catch (error) {
        end({ result: 'error' });
        throw error;
      }
      return result.then(
        (value) => {
          end({ result: 'ok' });
          return value;
        },
        (error: unknown) => {
          end({ result: 'error' });
          throw error;
        },
      );
    };
  }

  return {
    registry,
    stop() {
      off();
      for (const [name, original] of originals) store[name] = original;
    },
  };
}
