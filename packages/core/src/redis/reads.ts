// Batched reads: the GETs asked for in one turn of the event loop go out together, as one pipeline
// (on Redis Cluster, one per group of slots that the same nodes serve: a pipeline must stay on one node).
import type { Cluster } from 'ioredis';
import type { RedisClient } from './options.js';
import { keySlot } from '../util/cluster-slot.js';

interface Read {
  readonly key: string;
  readonly resolve: (value: string | null) => void;
  readonly reject: (error: unknown) => void;
}

/** A redirection: the slot moved (or is moving) to another node since ioredis last learned the layout. */
const REDIRECTED = /^(MOVED|ASK) /;

export class ReadBatch {
  /** The reads asked for since the last flush. */
  private queue: Read[] = [];
  private readonly flush = () => this.send();

  constructor(private readonly client: RedisClient) {}

  /**
   * GET of one key, sent with every other read asked for before this turn of the event loop ends
   * (at its `setImmediate`, after every reply read in the turn has been handled). Rejects with what
   * ioredis rejects: its own command's error, or the pipeline's when the pipeline fails as a whole.
   */
  get(key: string): Promise<string | null> {
    return new Promise((resolve, reject) => {
      if (this.queue.push({ key, resolve, reject }) === 1) setImmediate(this.flush);
    });
  }

  private send(): void {
    const queue = this.queue;
    this.queue = [];
    for (const group of this.groups(queue)) {
      if (group.length === 1) this.alone(group[0]!);
      else this.together(group);
    }
  }

  /**
   * The reads by the nodes that serve their slots (as ioredis groups its own automatic pipelines); on a
   * Cluster whose layout ioredis has not learned yet, each read alone (ioredis holds it until it has).
   */
  private groups(queue: Read[]): Iterable<Read[]> {
    const cluster = this.client as Cluster;
    if (!cluster.isCluster) return [queue];
    if (cluster.slots.length === 0) return queue.map((read) => [read]);
    const prefix = cluster.options.keyPrefix ?? cluster.options.redisOptions?.keyPrefix ?? '';
    const byNodes = new Map<string, Read[]>();
    for (const read of queue) {
      const nodes = cluster.slots[keySlot(prefix + read.key)]?.join(',') ?? `unserved ${read.key}`;
      const group = byNodes.get(nodes);
      if (group === undefined) byNodes.set(nodes, [read]);
      else group.push(read);
    }
    return byNodes.values();
  }

  /** One read sent as a command of its own: ioredis follows redirections and waits for a Cluster's layout. */
  private alone(read: Read): void {
    this.client.get(read.key).then(read.resolve, read.reject);
  }

  /** Reads sent as one pipeline, each answered with its own reply or error. */
  private together(group: Read[]): void {
    const pipeline = this.client.pipeline();
    for (const read of group) pipeline.get(read.key);
    pipeline.exec().then(
      (replies) => {
        for (let i = 0; i < group.length; i++) {
          const read = group[i]!;
          const [error, value] = replies?.[i] ?? [new Error('the pipeline gave no reply for this read')];
          // A slot that moved to another node: ioredis retries a pipeline only when all its commands
          // failed alike, so this read goes again alone, to be redirected.
          if (error && REDIRECTED.test(error.message)) this.alone(read);
          else if (error) read.reject(error);
          else read.resolve(value as string | null);
        }
      },
      (error: unknown) => {
        for (const read of group) read.reject(error);
      },
    );
  }
}
