// Prometheus metrics for Till (entry `@till/core/metrics`): only this entry loads prom-client, and only
// when createMetrics() is called, so that a missing prom-client is a clear error, not a bare import failure.
import type { Registry } from 'prom-client';
import type { Alerts } from '../audit/alerts.js';
import { tillError } from '../errors.js';
import { storeChannel, type StoreCallContext } from '../observe/channels.js';
import { subscriberOf } from '../observe/subscribe.js';
import { requireOptional } from '../util/optional.js';
import { OUTCOME_CODES } from '../verify/outcome.js';
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

/**
 * Registers Till's metrics: verifications by outcome, cache hits and misses, store latency by
 * operation, rate-limit and credit refusals, and alerts sent. Labels are outcome codes, operations
 * and rule names only: never a key, an id or a client (cardinality and secrecy alike).
 */
export function createMetrics(till: Till, options: MetricsOptions = {}): TillMetrics {
  if (options === null || typeof options !== 'object') throw tillError('INVALID_OPTIONS', 'metrics', 'options must be an object');
  // prom-client first: without it, that is the error to see whatever else is wrong.
  const { Counter, Histogram, Registry } = requireOptional<PromClient>('prom-client', 'metrics');
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'till_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw tillError('INVALID_OPTIONS', 'metrics', 'prefix must be a valid metric name prefix');

  const verifications = new Counter({
    name: `${prefix}verifications_total`,
    help: 'Verifications by outcome code.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const code of OUTCOME_CODES) verifications.inc({ outcome: code }, 0);
  const refusals = new Counter({
    name: `${prefix}limit_refusals_total`,
    help: 'Requests refused by a rate limit or for lack of credits.',
    labelNames: ['outcome'],
    registers: [registry],
  });
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

  // Store latency: from the `till:store` channel (this Till's calls only); the store itself is left alone.
  const onStoreCall = subscriberOf<StoreCallContext>(till.name, till.logger, 'metrics', (call) => {
    latency.observe({ operation: call.method, result: call.ok === true ? 'ok' : 'error' }, (call.duration ?? 0) / 1000);
  });
  storeChannel.asyncEnd.subscribe(onStoreCall);

  return {
    registry,
    stop() {
      off();
      storeChannel.asyncEnd.unsubscribe(onStoreCall);
    },
  };
}
