// Publishing on Till's channels: each function is called only once its channel has subscribers, so
// that the request path builds no message and reads no clock for nobody.
import { performance } from 'node:perf_hooks';
import type { ConsumeRequest, ConsumeResult } from '../store/types.js';
import type { MaybePromise, VerifyResult } from '../verify/outcome.js';
import { limitChannel, storeChannel, verifyChannel, type StoreCallContext, type StoreMethod } from './channels.js';

/** Runs a verification and publishes its answer on `till:verify`. */
export function publishVerification(till: string, stats: { readonly hits: number }, verify: () => MaybePromise<VerifyResult>): MaybePromise<VerifyResult> {
  const started = performance.now();
  const hits = stats.hits;
  const answer = verify();
  // The cache is read before anything is awaited: a hit is counted within this call or not at all.
  const cacheHit = stats.hits !== hits;
  const publish = (result: VerifyResult): VerifyResult => {
    if (verifyChannel.hasSubscribers) {
      verifyChannel.publish({
        till,
        code: result.code,
        keyId: result.valid ? result.key.id : (result.keyId ?? null),
        cacheHit,
        stale: result.valid && result.stale,
        duration: performance.now() - started,
      });
    }
    return result;
  };
  return answer instanceof Promise ? answer.then(publish) : publish(answer);
}

/** Publishes a charge's answer on `till:limit` once it has one; `local` tells a charge counted in this process. */
export function publishCharge<R extends ConsumeResult | 'UNAVAILABLE'>(
  till: string,
  request: Omit<ConsumeRequest, 'now'>,
  charged: Promise<R>,
  local: (result: object) => boolean,
): Promise<R> {
  const started = performance.now();
  return charged.then((result) => {
    if (limitChannel.hasSubscribers) {
      const outcome = result === 'UNAVAILABLE' ? result : result.outcome;
      limitChannel.publish({
        till,
        subject: request.subject,
        limits:
          request.identity === undefined
            ? request.limits.map((limit) => limit.name)
            : request.limits.concat(request.identity.limits).map((limit) => limit.name),
        cost: request.cost ?? 0,
        outcome,
        admitted: outcome === 'OK',
        fallback: result !== 'UNAVAILABLE' && local(result),
        duration: performance.now() - started,
      });
    }
    return result;
  });
}

/**
 * Runs one store call as a trace on `till:store` (start, end, then asyncStart and asyncEnd, with error
 * first on failure), the way `TracingChannel.tracePromise` does, except that a synchronous throw
 * becomes a rejection (every call ends with asyncEnd) and the call's result is kept out of the context.
 */
export function traceStoreCall<T>(till: string, store: string, method: StoreMethod, call: () => Promise<T>): Promise<T> {
  const context: StoreCallContext = { till, store, method };
  const { start, end, asyncStart, asyncEnd, error } = storeChannel;
  const started = performance.now();
  return start.runStores(context, () => {
    let pending: Promise<T>;
    try {
      pending = Promise.resolve(call());
    } catch (failure) {
      pending = Promise.reject(failure);
    }
    end.publish(context);
    return pending.then(
      (value) => {
        context.ok = true;
        context.duration = performance.now() - started;
        asyncStart.publish(context);
        asyncEnd.publish(context);
        return value;
      },
      (failure: unknown) => {
        context.ok = false;
        context.duration = performance.now() - started;
        context.error = failure;
        error.publish(context);
        asyncStart.publish(context);
        asyncEnd.publish(context);
        throw failure;
      },
    );
  });
}
