// A real primary and replica (redis-server --replicaof) on free loopback ports, and the failovers tests stage on them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RunningRedis } from './redis-server.js';

export interface ReplicatedRedis {
  readonly primary: RunningRedis;
  readonly replica: RunningRedis;
  /** An ioredis client on `server` (closed by `stop()`). */
  client(server: RunningRedis): Redis;
  /**
   * Cuts replication while both servers keep running: the replica is pointed at a port where nothing
   * listens, so it keeps its data as of now and the primary's later writes never reach it.
   */
  cut(): Promise<void>;
  /** Makes the replica a primary (REPLICAOF NO ONE): the failover. */
  promote(): Promise<void>;
  stop(): Promise<void>;
}

async function until(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a primary and a replica of it, and waits until the replica is in sync. */
export async function startReplicated(primaryArgs: string[] = []): Promise<ReplicatedRedis> {
  // A full sync writes an RDB file on the replica: in a directory of its own, removed on stop.
  const dir = mkdtempSync(join(tmpdir(), 'till-replica-'));
  const primary = await startRedisServer(await freePort(), ['--dir', dir, ...primaryArgs]);
  const replica = await startRedisServer(await freePort(), ['--dir', dir, '--replicaof', '127.0.0.1', String(primary.port)]);
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const clients: Redis[] = [];
  const client = (server: RunningRedis) => {
    const c = new Redis(server.url, { maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  const admin = client(replica);
  const primaryAdmin = client(primary);
  try {
    await until(async () => /master_link_status:up/.test(await admin.info('replication')), 10_000, 'the replica to sync');
    await until(async () => /connected_slaves:1/.test(await primaryAdmin.info('replication')), 10_000, 'the primary to see its replica');
  } catch (error) {
    for (const c of clients) c.disconnect();
    await Promise.all([replica.stop(), primary.stop()]);
    removeDir();
    throw error;
  }
  return {
    primary,
    replica,
    client,
    cut: async () => {
      await admin.replicaof('127.0.0.1', String(await freePort()));
      await until(async () => /connected_slaves:0/.test(await primaryAdmin.info('replication')), 5000, 'the primary to lose its replica');
    },
    promote: async () => {
      await admin.replicaof('NO', 'ONE');
    },
    stop: async () => {
      for (const c of clients) c.disconnect();
      await Promise.all([replica.stop(), primary.stop()]);
      removeDir();
    },
  };
}

/** How many times `server` ran `command` (INFO commandstats). */
export async function commandCalls(client: Redis, command: string): Promise<number> {
  const stats = await client.info('commandstats');
  const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats);
  return match ? Number(match[1]) : 0;
}
