// The Redis store (entry `@till/core/redis`): only this entry loads ioredis.
export { RedisStore, type RedisStoreOptions, type RedisClient } from './store.js';
