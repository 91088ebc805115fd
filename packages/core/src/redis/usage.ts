// Usage on Redis: each key's counts by day (a batch applied at most once) and every key's last use.
import type { Cluster } from 'ioredis';
import { dayOf, parseBatchId, type KeyUsage, type UsageBatchItem } from '../audit/usage.js';
import { OUTCOME_CODES, type OutcomeCode } from '../verify/outcome.js';
import { keySlot } from '../util/cluster-slot.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';

const OUTCOMES: ReadonlySet<string> = new Set(OUTCOME_CODES);

/** Days of usage counts kept per key (`till:{<id>}:u:<day>` expires after them). */
const USAGE_DAYS_KEPT = 100;

export class RedisUsage {
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
  ) {}

  /**
   * Writes a batch of usage counts (the tracker sends at most USAGE_CHUNK keys at a time) in one script
   * call that applies a batch id at most once per key: on a single Redis, the whole batch in one call
   * (atomic, as one script); on Cluster, where one call cannot span slots, a call per slot (a retry then
   * skips the keys already written).
   */
  async record(batch: readonly UsageBatchItem[], batchId?: string): Promise<void> {
    const { client } = this.commands;
    const [writer, seq] = batchId === undefined ? ['', 0] : parseBatchId(batchId);
    const last: Array<string | number> = [];
    for (const item of batch) if (item.lastUsedAt !== null) last.push(item.lastUsedAt, item.keyId);
    const cluster = (client as Cluster).isCluster ? (client as Cluster) : null;
    const prefix = cluster === null ? '' : (cluster.options.keyPrefix ?? cluster.options.redisOptions?.keyPrefix ?? '');
    const calls = new Map<number, { keys: string[]; counts: Array<string | number> }>();
    for (const item of batch) {
      const key = this.layout.usageDay(item.keyId, item.day);
      const slot = cluster === null ? 0 : keySlot(prefix + key);
      let call = calls.get(slot);
      if (call === undefined) calls.set(slot, (call = { keys: [], counts: [] }));
      call.keys.push(key);
      const entries = Object.entries(item.counts);
      call.counts.push(entries.length);
      for (const [code, n] of entries) call.counts.push(code, n as number);
    }
    await Promise.all(
      Array.from(calls.values(), ({ keys, counts }) =>
        this.commands.run(() => client.tillUsage(keys.length, ...keys, writer, seq, USAGE_DAYS_KEPT * 86_400, ...counts)),
      ),
    );
    // The latest use wins, whichever process saw it (GT), in one sorted set that audits read.
    if (last.length > 0) await this.commands.run(() => client.zadd(this.layout.lastUsed, 'GT', ...last));
  }

  /** A key's last use and its counts for the last `days` days (UTC, today included). */
  async read(id: string, days: number): Promise<KeyUsage> {
    const { client } = this.commands;
    const today = Date.parse(`${dayOf(Date.now())}T00:00:00Z`);
    const wanted = Array.from({ length: days }, (_, i) => dayOf(today - i * 86_400_000));
    const [last, ...counts] = await Promise.all([
      this.commands.run(() => client.zscore(this.layout.lastUsed, id)),
      ...wanted.map((day) => this.commands.run(() => client.hgetall(this.layout.usageDay(id, day)))),
    ]);
    return {
      lastUsedAt: last === null || last === undefined ? null : Number(last),
      days: wanted.map((day, i) => {
        const raw = (counts[i] ?? {}) as Record<string, string>;
        // Outcome counts only (the hash also says which batches it has, as `w:<writer>`).
        const parsed = Object.fromEntries(
          Object.entries(raw)
            .filter(([code]) => OUTCOMES.has(code))
            .map(([code, n]) => [code, Number(n)]),
        ) as Partial<Record<OutcomeCode, number>>;
        return { day, counts: parsed, total: Object.values(parsed).reduce((a, b) => a + b, 0) };
      }),
    };
  }
}
