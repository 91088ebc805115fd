// A Redis client and a namespace of its own for each suite, cleaned up afterwards.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

// The URL test/global-setup.ts provides: the Redis it found answering, or the one it started.
declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export function redisUrl(): string {
  return inject('redisUrl');
}

export function newClient(url = redisUrl()): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  return client;
}

/** A namespace no other run uses: `till-test:<random>:`. */
export function uniqueNamespace(): string {
  return `till-test:${randomBytes(6).toString('hex')}:`;
}

export { deleteNamespace } from './redis-tools.js';
