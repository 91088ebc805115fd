// A KeyStore made once by a loader: what the loader imports (ioredis) is loaded only when such a store is made.
import { ASYNC_METHODS, type AsyncMethod, type KeyStore } from './types.js';

/** What a loader makes: the store, and what closing it must release besides (a client the loader opened). */
export interface LoadedStore {
  readonly store: KeyStore;
  readonly release?: () => void;
}

type Method = (...args: unknown[]) => unknown;

/**
 * A store of `kind` that starts `load` at once and stands in for its store: calls made before the
 * store is ready wait for it, and reject with the loader's error when it fails (`onError` hears that
 * error once, when it happens). Until the store is ready no invalidation can be heard, so
 * `invalidationsLost()` is true. `close()` closes the store, then calls the loader's `release`.
 */
export function lazyStore(kind: string, load: () => Promise<LoadedStore>, onError: (error: unknown) => void): KeyStore {
  let loaded: LoadedStore | undefined;
  const ready = (async () => {
    loaded = await load();
    return loaded.store;
  })();
  ready.catch(onError);
  // The methods that answer with a promise: each waits for the store, then calls it.
  const deferred = Object.fromEntries(
    ASYNC_METHODS.map((name) => [name, (...args: unknown[]) => ready.then((store) => (store[name] as Method | undefined)?.apply(store, args))]),
  ) as Pick<KeyStore, AsyncMethod>;
  // Required: a method added to KeyStore must be deferred or answered here, never left out.
  const answered: Required<Omit<KeyStore, AsyncMethod>> = {
    kind,
    invalidationsLost: () => loaded === undefined || loaded.store.invalidationsLost?.() === true,
    onInvalidate(listener, onStatus) {
      let off: (() => void) | undefined;
      let cancelled = false;
      ready.then(
        (store) => {
          if (!cancelled && !off) off = store.onInvalidate(listener, onStatus);
        },
        () => {},
      );
      return () => {
        cancelled = true;
        off?.();
      };
    },
    async close() {
      const store = await ready.catch(() => undefined);
      await store?.close();
      loaded?.release?.();
    },
  };
  return { ...answered, ...deferred };
}
