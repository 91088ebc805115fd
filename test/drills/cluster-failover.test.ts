// Drill: a Redis Cluster primary killed under load. Run by `pnpm test:drills` (and by CI after
// `pnpm test`), alone: a failover's timing is what it measures, and a busy machine running every other
// suite at once would starve the cluster's gossip.
// Revocations made through a store with `replicas: 1` an instant before the kill must survive it.
import { Cluster } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createTill, silentLogger } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { startCluster } from '@till/testkit/redis-cluster';
import { uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';

describe('a primary killed under load', () => {
  it('keeps verifying once its replica takes over, and never accepts a revoked key', async () => {
    // A cluster of its own: this test kills one of its nodes.
    const own = await startCluster();
    // The slot map is refreshed every second as well as on errors: after a failover the client finds
    // the promoted replica even when no command has been redirected yet.
    const client = new Cluster([...own.nodes], { redisOptions: { maxRetriesPerRequest: 1 }, clusterRetryStrategy: () => 100, slotsRefreshInterval: 1000 });
    client.on('error', () => {});
    const namespace = uniqueNamespace();
    const till = createTill({
      store: new RedisStore({ client, namespace, commandTimeout: 500 }),
      logger: silentLogger,
      cache: { ttl: 100, negativeTtl: 100, staleWindow: 0 },
      auditEvents: false,
      usage: false,
    });
    try {
      const live = await Promise.all(Array.from({ length: 8 }, (_, i) => till.keys.create({ name: `live ${i}`, scopes: [] })));
      const dead = await Promise.all(Array.from({ length: 8 }, (_, i) => till.keys.create({ name: `dead ${i}`, scopes: [] })));
      for (const d of dead) await till.keys.revoke(d.record.id);
      // Replication is asynchronous: a write the primary acknowledged can be lost if it dies before its
      // replica has it. The drill is about verification across the failover, so the keys are on the
      // replicas first (WAIT for one replica on every primary).
      const acked = await Promise.all(client.nodes('master').map((n) => n.wait(1, 5000)));
      expect(acked.every((n) => Number(n) >= 1)).toBe(true);
      // The primary holding the first live key's slot.
      const slot = Number(await client.cluster('KEYSLOT', `${namespace}{${live[0]!.record.id}}:k`));
      const shards = (await client.cluster('SLOTS')) as unknown as Array<[number, number, [string, number, string]]>;
      const owner = shards.find(([from, to]) => slot >= from && slot <= to)![2][1];
      const victim = own.servers.find((s) => s.port === owner)!;

      const seen = { ok: 0, unavailable: 0, refusedDead: 0, acceptedDead: 0, refusedLive: 0 };
      /** Full passes over every live and dead key: what the waits below count, rather than time. */
      let rounds = 0;
      let stop = false;
      const load = (async () => {
        while (!stop) {
          for (const k of live) {
            const r = await till.verify(k.key);
            if (r.valid) seen.ok++;
            else if (r.code === 'STORE_UNAVAILABLE') seen.unavailable++;
            else seen.refusedLive++;
          }
          for (const d of dead) {
            const r = await till.verify(d.key);
            if (r.valid) seen.acceptedDead++;
            else if (r.code === 'REVOKED') seen.refusedDead++;
          }
          rounds++;
          await new Promise((r) => setTimeout(r, 20)); // pacing of the load, not a wait
        }
      })();
      // Under way: a few full passes verified before anything is killed.
      expect(await waitFor(() => rounds >= 3, 10_000), 'the load made 3 passes before the kill').toBe(true);
      const before = seen.ok;
      // Revoked an instant before the primary dies, through a store that waits for a replica
      // (`replicas: 1`): the revocation must survive the failover. Keys on the victim's slots only.
      const onVictim: Array<Awaited<ReturnType<typeof till.keys.create>>> = [];
      for (let i = 0; onVictim.length < 3 && i < 100; i++) {
        const k = await till.keys.create({ name: `last minute ${i}`, scopes: [] });
        const s = Number(await client.cluster('KEYSLOT', `${namespace}{${k.record.id}}:k`));
        if (shards.find(([from, to]) => s >= from && s <= to)![2][1] === owner) onVictim.push(k);
      }
      expect(onVictim.length).toBe(3);
      await Promise.all(client.nodes('master').map((n) => n.wait(1, 5000))); // the creations too
      const durable = createTill({
        store: new RedisStore({ client, namespace, commandTimeout: 2000, replicas: 1, replicaTimeout: 2000 }),
        logger: silentLogger,
        auditEvents: false,
        usage: false,
      });
      for (const k of onVictim) await durable.keys.revoke(k.record.id, { reason: 'revoked just before the failover' });
      await victim.stop();
      // The replica is promoted after the node timeout (2 s); verification must come back by itself.
      const deadline = Date.now() + 30_000;
      let back = false;
      while (Date.now() < deadline && !back) {
        await new Promise((r) => setTimeout(r, 250));
        back = (await till.verify(live[0]!.key)).valid;
      }
      if (!back) {
        // What the cluster and the client thought, for the failure message.
        const other = own.servers.find((x) => x.port !== owner)!;
        const probe = new Cluster([{ host: '127.0.0.1', port: other.port }]);
        probe.on('error', () => {});
        const nodes = await probe
          .nodes('all')[0]
          ?.cluster('NODES')
          .catch((e: Error) => e.message);
        probe.disconnect();
        const last = await till.verify(live[0]!.key);
        console.error(
          `[drill] killed ${owner}; last outcome ${last.valid ? 'VALID' : last.code}; client masters ${JSON.stringify(client.nodes('master').map((n) => n.options.port))}\n${String(nodes)}`,
        );
      }
      const afterFailover = seen.ok;
      // Keep the load on for a few more full passes (every dead key tried again on the new topology).
      const roundsAtFailover = rounds;
      await waitFor(() => rounds >= roundsAtFailover + 3, 10_000);
      stop = true;
      await load;
      expect(before).toBeGreaterThan(0);
      expect(back, 'verification came back after the failover').toBe(true);
      expect(seen.ok).toBeGreaterThan(afterFailover);
      expect(seen.acceptedDead, 'a revoked key was accepted').toBe(0);
      expect(seen.refusedLive, 'a live key was refused other than as unavailable').toBe(0);
      expect(seen.refusedDead).toBeGreaterThan(0);
      // The revocations confirmed by a replica survived: the promoted replica has them.
      for (const k of onVictim) expect((await durable.keys.get(k.record.id))?.revokedAt, `revocation of ${k.record.id}`).not.toBeNull();
      await durable.close();
      console.log(
        `[drill cluster-failover] killed the primary on port ${owner}; ${onVictim.length} revocations made through replicas: 1 just before, all kept`,
      );
      // A change after the failover lands on the promoted replica and is heard.
      await till.keys.revoke(live[0]!.record.id);
      expect((await till.verify(live[0]!.key)).code).toBe('REVOKED');
    } finally {
      await till.close();
      client.disconnect();
      await own.stop();
    }
  }, 90_000);
});
