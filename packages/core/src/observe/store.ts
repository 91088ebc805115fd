// A view of a store through which a Till's parts call it: each call is traced on `till:store` while
// someone subscribes. The application's store object itself is never touched.
import { ASYNC_METHODS, type KeyStore } from '../store/types.js';
import type { StoreMethod } from './channels.js';
import { storeChannel } from './channels.js';
import { traceStoreCall } from './publish.js';

/**
 * The members passed through as they are; every call answered with a promise (ASYNC_METHODS) is traced.
 * A member added to the contract fails to compile here until it is one or the other.
 */
const PASSED = { onInvalidate: true, invalidationsLost: true, close: true } as const satisfies Record<Exclude<keyof KeyStore, StoreMethod | 'kind'>, true>;

type Method = (...args: unknown[]) => unknown;

/**
 * The store as `till` calls it. Each method is looked up on the store at call time (a store may be
 * changed after it is handed over); an optional method the store lacks stays absent from the view.
 */
export function observedStore(store: KeyStore, till: string): KeyStore {
  const target = store as unknown as Record<string, Method>;
  const view: Record<string, unknown> = {};
  Object.defineProperty(view, 'kind', { get: () => store.kind, enumerable: true });
  for (const name of Object.keys(PASSED)) {
    if (typeof target[name] === 'function') view[name] = (...args: unknown[]) => target[name]!(...args);
  }
  for (const name of ASYNC_METHODS) {
    if (typeof target[name] !== 'function') continue;
    view[name] = (...args: unknown[]) =>
      storeChannel.hasSubscribers ? traceStoreCall(till, store.kind, name, () => target[name]!(...args) as Promise<unknown>) : target[name]!(...args);
  }
  return view as unknown as KeyStore;
}
