// OpenTelemetry spans for one Till's verifications and store calls (`createTill({ tracing: true })`),
// made by a subscriber to its channels. @opentelemetry/api is an optional peer dependency, loaded only
// when tracing is asked for.
import { performance } from 'node:perf_hooks';
import type { Logger } from '../util/logger.js';
import { requireOptional } from '../util/optional.js';
import { storeChannel, verifyChannel, type StoreCallContext, type VerifyMessage } from './channels.js';
import { subscriberOf } from './subscribe.js';

type OpenTelemetry = typeof import('@opentelemetry/api');

/** The tracer's name: the instrumentation scope of every span Till makes. */
export const TRACER_NAME = '@till/core';

/**
 * Starts making spans for `till`'s messages through the global tracer provider; returns the stop.
 * Each span is made when its operation has ended, from its duration, under the context active where
 * the operation was called (the request's span, with an HTTP instrumentation):
 * - `till verify`: attributes `till.key.id` (when the answer names a key), `till.outcome`,
 *   `till.cache.hit`, `till.cache.stale`; status ERROR only for STORE_UNAVAILABLE (a refused key is an
 *   answer, not an error).
 * - `till store <method>` (kind CLIENT): `till.store.kind`, `till.store.method`; a failed call records
 *   its error and has status ERROR.
 * Every span carries `till.instance`, the Till's name.
 */
export function startTracing(till: string, logger: Pick<Logger, 'error'>): () => void {
  const { trace, SpanKind, SpanStatusCode } = requireOptional<OpenTelemetry>('@opentelemetry/api', 'tracing');
  const tracer = trace.getTracer(TRACER_NAME);
  /** Start and end of an operation that has just ended, as epoch milliseconds. */
  const times = (duration: number) => {
    const end = performance.timeOrigin + performance.now();
    return { startTime: end - duration, end };
  };
  const onVerify = subscriberOf<VerifyMessage>(till, logger, 'tracing', (message) => {
    const { startTime, end } = times(message.duration);
    const span = tracer.startSpan('till verify', {
      startTime,
      attributes: {
        'till.instance': till,
        'till.outcome': message.code,
        'till.cache.hit': message.cacheHit,
        'till.cache.stale': message.stale,
        ...(message.keyId !== null && { 'till.key.id': message.keyId }),
      },
    });
    if (message.code === 'STORE_UNAVAILABLE') span.setStatus({ code: SpanStatusCode.ERROR, message: 'store unavailable' });
    span.end(end);
  });
  const onStore = subscriberOf<StoreCallContext>(till, logger, 'tracing', (context) => {
    const { startTime, end } = times(context.duration ?? 0);
    const span = tracer.startSpan(`till store ${context.method}`, {
      kind: SpanKind.CLIENT,
      startTime,
      attributes: { 'till.instance': till, 'till.store.kind': context.store, 'till.store.method': context.method },
    });
    if (context.ok === false) {
      const error = context.error;
      span.recordException(error instanceof Error ? error : String(error), end);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    span.end(end);
  });
  verifyChannel.subscribe(onVerify);
  storeChannel.asyncEnd.subscribe(onStore);
  return () => {
    verifyChannel.unsubscribe(onVerify);
    storeChannel.asyncEnd.unsubscribe(onStore);
  };
}
