// `till --replicas`: every change the CLI makes is confirmed by replicas, on a real primary and replica
// (loopback ports, started and stopped here); a change they do not confirm exits 1 with NOT_REPLICATED.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { startReplicated, type ReplicatedRedis } from '@till/testkit/redis-replication';
import { uniqueNamespace } from '@till/testkit/redis';
import { assertBuilt, keysIn, runTill } from './harness.js';

let pair: ReplicatedRedis | undefined;
const tills: Till[] = [];

function tillOn(url: 'primary' | 'replica', namespace: string): Till {
  const till = createTill({
    store: new RedisStore({ client: pair!.client(pair![url]), namespace }),
    logger: silentLogger,
    cache: { ttl: 0, negativeTtl: 0 },
    auditEvents: false,
    usage: false,
  });
  tills.push(till);
  return till;
}

beforeAll(() => assertBuilt());

afterEach(async () => {
  for (const till of tills.splice(0)) await till.close();
  await pair?.stop();
  pair = undefined;
});

describe('till --replicas', () => {
  it('a revocation confirmed by the replica (exit 0) survives a failover right after', async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const till = tillOn('primary', namespace);
    const { key, record } = await till.keys.create({ name: 'leaked', scopes: ['a:read'] });
    const run = await runTill(['--namespace', namespace, 'keys', 'revoke', record.id, '--yes', '--replicas', '1'], { REDIS_URL: pair.primary.url });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    await pair.cut();
    await pair.promote();
    expect((await tillOn('replica', namespace).verify(key)).code).toBe('REVOKED');
  }, 30_000);

  it('with the replica stopped, a revocation exits 1 with NOT_REPLICATED, and the key is revoked on the primary', async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const till = tillOn('primary', namespace);
    const { key, record } = await till.keys.create({ name: 'leaked', scopes: ['a:read'] });
    await pair.replica.stop();
    const run = await runTill(['--namespace', namespace, 'keys', 'revoke', record.id, '--yes', '--replica-timeout', '200ms'], {
      REDIS_URL: pair.primary.url,
      TILL_REPLICAS: '1',
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^till: NOT_REPLICATED: the change was made on the primary but is not yet safe: 0 of 1 replicas confirmed it within 200 ms/);
    expect((await till.verify(key)).code).toBe('REVOKED');
  }, 30_000);

  it('with the replica stopped, create and rotate print the key they made, then exit 1 with NOT_REPLICATED; enable too', async () => {
    pair = await startReplicated();
    const namespace = uniqueNamespace();
    const till = tillOn('primary', namespace);
    const env = { REDIS_URL: pair.primary.url, TILL_REPLICAS: '1', TILL_REPLICA_TIMEOUT: '200ms' };
    await pair.replica.stop();
    const created = await runTill(['--namespace', namespace, 'keys', 'create', '--name', 'new', '--scope', 'a:read', '--json'], env);
    expect(created.code).toBe(1);
    expect(created.stderr).toMatch(
      /^till: NOT_REPLICATED: the creation of key [0-9A-Za-z]{16} \(the key is printed above\) was made on the primary but is not yet safe/,
    );
    const made = JSON.parse(created.stdout) as { key: string; record: { id: string } };
    expect((await till.verify(made.key)).code).toBe('VALID');

    const rotated = await runTill(['--namespace', namespace, 'keys', 'rotate', made.record.id, '--yes', '--grace', '1h'], env);
    expect(rotated.code).toBe(1);
    expect(rotated.stderr).toMatch(/^till: NOT_REPLICATED: the rotation of key [0-9A-Za-z]{16} to [0-9A-Za-z]{16} \(the new key is printed above\)/);
    const [newKey] = keysIn(rotated.stdout);
    expect(newKey).toBeDefined();
    expect((await till.verify(newKey!)).code).toBe('VALID');
    expect(rotated.stderr).not.toContain(newKey!.slice(-30));

    const { record } = await till.keys.create({ name: 'off', scopes: [] });
    await till.keys.disable(record.id);
    const enabled = await runTill(['--namespace', namespace, 'keys', 'enable', record.id], env);
    expect(enabled.code).toBe(1);
    expect(enabled.stderr).toMatch(/^till: NOT_REPLICATED: enabling key [0-9A-Za-z]{16} was made on the primary/);
  }, 30_000);

  it('refuses a bad --replicas or --replica-timeout before connecting (exit 2)', async () => {
    for (const args of [
      ['--replicas', 'one'],
      ['--replicas', '-1'],
      ['--replica-timeout', '500'],
    ]) {
      const run = await runTill([...args, 'keys', 'revoke', 'aaaaaaaaaaaaaaaa', '--yes'], { REDIS_URL: 'redis://127.0.0.1:1' });
      expect(run.code, args.join(' ')).toBe(2);
    }
  }, 30_000);
});
