// One admin process for packages/core/test/rotation-race.test.ts (started with child_process.fork): a key manager on
// the BUILT packages (vitest's aliases do not reach child processes) with a Redis client of its own,
// that rotates, narrows or revokes a key when asked over IPC, each after the delay asked for (ms, may
// be fractional) so that over the rounds the changes land before, inside and after each other's steps.
// Replies say only whether the change was acknowledged, and the error code when not; no key is sent.
import { Redis } from 'ioredis';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { answerRequests, send } from './worker-ipc.js';

const namespace = process.env.TILL_NAMESPACE;
if (!namespace || typeof process.send !== 'function') {
  console.error('[rotation-race-worker] start me with fork() and TILL_NAMESPACE set');
  process.exit(2);
}
const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
client.on('error', () => {});
const store = new RedisStore({ client, namespace });
const till = createTill({ store, logger: silentLogger });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What each change request carries: the key's id, and the delay before the change (ms). */
type Change = { id: string; delay: number };

answerRequests({
  async rotate({ id, delay }: Change) {
    await pause(delay);
    const rotated = await till.keys.rotate(id, { grace: '1h', actor: `race-${process.pid}` });
    return { id: rotated.record.id };
  },
  async narrow({ id, delay }: Change) {
    await pause(delay);
    await till.keys.update(id, { scopes: ['read'] }, { actor: `race-${process.pid}` });
    return {};
  },
  async revoke({ id, delay }: Change) {
    await pause(delay);
    await till.keys.revoke(id, { reason: 'leaked', actor: `race-${process.pid}` });
    return {};
  },
  async close() {
    setImmediate(async () => {
      await till.close();
      await store.close();
      client.disconnect();
      process.exit(0);
    });
    return {};
  },
});
send({ type: 'ready' });
