// A real Redis Cluster on loopback ports for tests: redis-server processes joined by redis-cli --cluster create.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RunningRedis } from './redis-server.js';

export interface RunningCluster {
  readonly nodes: ReadonlyArray<{ host: string; port: number }>;
  readonly servers: readonly RunningRedis[];
  stop(): Promise<void>;
}

/**
 * Starts `primaries` primaries with `replicas` replicas each (6 processes by default), joins them,
 * and waits until every node reports `cluster_state:ok`. Fails with a clear message without the
 * binaries.
 */
export async function startCluster(primaries = 3, replicas = 1): Promise<RunningCluster> {
  for (const bin of ['redis-server', 'redis-cli']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
      throw new Error(`${bin} is not installed: the cluster tests start a real Redis Cluster (apt-get install redis-server)`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'till-cluster-'));
  const servers: RunningRedis[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const count = primaries * (1 + replicas);
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      servers.push(
        // No delay before a replica's first sync: a replica that never synced cannot be promoted.
        await startRedisServer(port, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--repl-diskless-sync-delay',
          '0',
          '--dir',
          dir,
        ]),
      );
    }
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...servers.map((s) => `127.0.0.1:${s.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr || created.stdout}`);
    const deadline = Date.now() + 20_000;
    for (const server of servers) {
      const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      client.on('error', () => {});
      try {
        for (;;) {
          const info = String(await client.cluster('INFO'));
          // A replica is ready once its link to its primary is up (it has synced and could take over).
          const replication = String(await client.info('replication'));
          const synced = !replication.includes('role:slave') || replication.includes('master_link_status:up');
          if (info.includes('cluster_state:ok') && synced) break;
          if (Date.now() > deadline) throw new Error(`cluster node ${server.port} not ready: ${info.split('\n')[0]}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        client.disconnect();
      }
    }
    return { nodes: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), servers, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
