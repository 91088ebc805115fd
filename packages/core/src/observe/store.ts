// A view of a store through which a Till's parts call it: each call is traced on `till:store` while
// someone subscribes. The application's store object itself is never touched.
import type { KeyStore } from '../store/types.js';
import type { StoreMethod } from './channels.js';
import { storeChannel } from './channels.js';
import { traceStoreCall } from './publish.js';

/** Every member of the store contract: traced, or passed through as it is. A new member fails to compile until it is listed. */
const MEMBERS = {
  get: 'traced',
  insert: 'traced',
  replace: 'traced',
  remove: 'traced',
  appendAudit: 'traced',
  readAudit: 'traced',
  recordUsage: 'traced',
  readUsage: 'traced',
  list: 'traced',
  consume: 'traced',
  refund: 'traced',
  confirmChanges: 'traced',
  onInvalidate: 'passed',
  invalidationsLost: 'passed',
  close: 'passed',
} as const satisfies Record<Exclude<keyof KeyStore, 'kind'>, 'traced' | 'passed'>;

type Method = (...args: unknown[]) => unknown;

/**
 * The store as `till` calls it. Each method is looked up on the store at call time (a store may be
 * changed after it is handed over); an optional method the store lacks stays absent from the view.
 */
export function observedStore(store: KeyStore, till: string): KeyStore {
  const target = store as unknown as Record<string, Method>;
  const view: Record<string, unknown> = {};
  Object.defineProperty(view, 'kind', { get: () => store.kind, enumerable: true });
  for (const [name, how] of Object.entries(MEMBERS)) {
    if (typeof target[name] !== 'function') continue;
    view[name] =
      how === 'passed'
        ? (...args: unknown[]) => target[name]!(...args)
        : (...args: unknown[]) =>
            storeChannel.hasSubscribers
              ? traceStoreCall(till, store.kind, name as StoreMethod, () => target[name]!(...args) as Promise<unknown>)
              : target[name]!(...args);
  }
  return view as unknown as KeyStore;
}
