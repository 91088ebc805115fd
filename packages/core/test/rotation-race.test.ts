// rotate() raced against narrowings and revocations of the same key by other PROCESSES (three admin
// processes, each with its own Redis client, on the built packages), 300 rounds: afterwards no
// acknowledged narrowing leaves a key of the chain with the old scopes, and no acknowledged revocation
// a live key of the chain. rotation.test.ts races managers within one process.
import { fork, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type KeyInfo, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { processScript } from '@till/testkit/process-script';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';

const WORKER = processScript('rotation-race-worker');
const ROUNDS = 300;
const BUDGET_MS = 90_000;

interface Reply {
  ok: boolean;
  code?: string | null;
  error?: string;
  id?: string;
}

const namespace = uniqueNamespace();
const client = newClient();
const workers: Array<{ child: ChildProcess; ask: (message: Record<string, unknown>) => Promise<Reply> }> = [];
let admin: Till;

beforeAll(async () => {
  admin = createTill({ store: new RedisStore({ client, namespace }), logger: silentLogger });
  for (let i = 0; i < 3; i++) {
    // execArgv []: vitest's flags must not reach a plain node worker.
    const child = fork(WORKER, [], {
      env: { ...process.env, REDIS_URL: redisUrl(), TILL_NAMESPACE: namespace },
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const pending = new Map<number, (reply: Reply) => void>();
    let seq = 0;
    const ready = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`rotation-race worker exited before it was ready (${code})`)));
      child.on('message', (message: { type: string; req?: number } & Reply) => {
        if (message.type === 'ready') resolve();
        if (message.type === 'reply') pending.get(message.req!)?.(message);
      });
    });
    const ask = (message: Record<string, unknown>) =>
      new Promise<Reply>((resolve) => {
        const req = ++seq;
        pending.set(req, (reply) => {
          pending.delete(req);
          resolve(reply);
        });
        child.send({ ...message, req });
      });
    workers.push({ child, ask });
    await ready;
  }
}, 30_000);

afterAll(async () => {
  await Promise.all(workers.map(({ child, ask }) => Promise.race([ask({ type: 'close' }), new Promise((r) => setTimeout(r, 2000))]).then(() => child.kill())));
  await admin?.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

describe('rotate() raced by other processes on one Redis', () => {
  it(
    `leaves no key of the chain behind an acknowledged narrowing or revocation (${ROUNDS} rounds)`,
    async () => {
      const problems: string[] = [];
      const counts = { narrowed: 0, revoked: 0, refused: 0, aborted: 0 };
      const started = Date.now();
      let rounds = 0;
      for (; rounds < ROUNDS && Date.now() - started < BUDGET_MS; rounds++) {
        const created = await admin.keys.create({ name: `race-${rounds}`, scopes: ['admin', 'read'], ownerId: 'race' });
        const id = created.record.id;
        const revoking = rounds % 2 === 1;
        const rotator = workers[rounds % 3]!;
        const changer = workers[(rounds + 1) % 3]!;
        // The change starts up to ~4 ms after the rotation: a rotation takes a few round trips.
        const [rotation, change] = await Promise.all([
          rotator.ask({ type: 'rotate', id, delay: 0 }),
          changer.ask({ type: revoking ? 'revoke' : 'narrow', id, delay: Math.random() * 4 }),
        ]);
        if (!rotation.ok) {
          expect(['KEY_REVOKED', 'CONFLICT', 'KEY_ROTATED'], rotation.error).toContain(rotation.code);
          counts.aborted++;
        }
        if (!change.ok) {
          expect(change.code, change.error).toBe('KEY_ROTATED');
          counts.refused++;
          continue;
        }
        counts[revoking ? 'revoked' : 'narrowed']++;
        // Every key made from this one: the linked successor and any rotation that was abandoned.
        const chain: KeyInfo[] = [(await admin.keys.get(id))!];
        for (let next = chain[0]!.rotatedTo; next !== null; next = chain[chain.length - 1]!.rotatedTo) chain.push((await admin.keys.get(next))!);
        const made = (await admin.keys.list({ ownerId: 'race', limit: 1000 })).keys.filter((k) => k.rotatedFrom === id);
        for (const k of new Map([...chain, ...made].map((k) => [k.id, k])).values()) {
          if (k.revokedAt !== null) continue;
          const which = k.id === id ? 'old' : 'new';
          if (revoking) problems.push(`round ${rounds}: revocation acknowledged, ${which} key ${k.id} still live`);
          else if (k.scopes.includes('admin')) problems.push(`round ${rounds}: narrowing acknowledged, ${which} key ${k.id} still has admin`);
        }
        for (const k of made) await admin.keys.delete(k.id).catch(() => {});
        await admin.keys.delete(id).catch(() => {});
      }
      expect(problems).toEqual([]);
      expect(rounds).toBeGreaterThanOrEqual(100);
      // Both kinds of change were acknowledged often enough for the rounds to mean something.
      expect(counts.narrowed).toBeGreaterThan(10);
      expect(counts.revoked).toBeGreaterThan(10);
    },
    BUDGET_MS + 30_000,
  );
});
