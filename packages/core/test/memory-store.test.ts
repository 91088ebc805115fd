import { MemoryStore } from '../src/store/memory.js';
import { describeStoreConformance } from './store-conformance.js';

describeStoreConformance('memory', async () => {
  const store = new MemoryStore();
  // One process: both views are the same store.
  return { stores: async () => [store, store], cleanup: async () => {} };
});
