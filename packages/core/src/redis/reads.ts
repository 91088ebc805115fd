// Batched reads: the GETs asked for in one turn of the event loop go out together, as one MGET (one
// command, one reply array for the client to handle, where N GETs cost N). On Redis Cluster an MGET must
// stay in one slot: one per slot, and the slots that the same nodes serve in one pipeline.
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

/** Keys per MGET at most: a long MGET holds Redis's one thread, and its reply the client's, for its whole length. */
const MGET_KEYS = 1000;

export class ReadBatch {
  /** The reads asked for since the last flush. */
  private queue: Read[] = [];
  private readonly flush = () => this.send();

  constructor(private readonly client: RedisClient) {}

  /**
   * GET of one key, sent with every other read asked for before this turn of the event loop ends
   * (at its `setImmediate`, after every reply read in the turn has been handled). Rejects with what
   * ioredis rejects: the error of the command that carried it, or the pipeline's when the pipeline
   * fails as a whole. A key that holds no string reads as null (MGET's answer, where GET's is WRONGTYPE).
   */
  get(key: string): Promise<string | null> {
    return new Promise((resolve, reject) => {
      if (this.queue.push({ key, resolve, reject }) === 1) setImmediate(this.flush);
    });
  }

  private send(): void {
    const queue = this.queue;
    this.queue = [];
    for (const slots of this.groups(queue)) {
      if (slots.length === 1 && slots[0]!.length <= MGET_KEYS) this.alone(slots[0]!);
      else this.together(slots);
    }
  }

  /**
   * The reads by the nodes that serve their slots (as ioredis groups its own automatic pipelines), and
   * within those by slot; on a single Redis, all of them as one slot. On a Cluster whose layout ioredis
   * has not learned yet, each read alone (ioredis holds it until it has).
   */
  private groups(queue: Read[]): Iterable<Read[][]> {
    const cluster = this.client as Cluster;
    if (!cluster.isCluster) return [[queue]];
    if (cluster.slots.length === 0) return queue.map((read) => [[read]]);
    const prefix = cluster.options.keyPrefix ?? cluster.options.redisOptions?.keyPrefix ?? '';
    const byNodes = new Map<string, Map<number, Read[]>>();
    for (const read of queue) {
      const slot = keySlot(prefix + read.key);
      const nodes = cluster.slots[slot]?.join(',') ?? `unserved ${read.key}`;
      let slots = byNodes.get(nodes);
      if (slots === undefined) byNodes.set(nodes, (slots = new Map()));
      const same = slots.get(slot);
      if (same === undefined) slots.set(slot, [read]);
      else same.push(read);
    }
    return Array.from(byNodes.values(), (slots) => [...slots.values()]);
  }

  /** Reads of one slot as a command of their own (GET or MGET): ioredis follows redirections and waits for a Cluster's layout. */
  private alone(reads: Read[]): void {
    if (reads.length === 1) {
      const read = reads[0]!;
      this.client.get(read.key).then(read.resolve, read.reject);
      return;
    }
    const keys = reads.map((read) => read.key);
    this.client.mget(keys).then(
      (values) => answer(reads, values),
      (error: unknown) => {
        for (const read of reads) read.reject(error);
      },
    );
  }

  /** Several slots' reads (or one slot's too many for one MGET) as one pipeline, a GET or MGET per slot. */
  private together(slots: Read[][]): void {
    const commands: Read[][] = [];
    for (const reads of slots) for (let i = 0; i < reads.length; i += MGET_KEYS) commands.push(reads.slice(i, i + MGET_KEYS));
    const pipeline = this.client.pipeline();
    for (const reads of commands) {
      if (reads.length === 1) pipeline.get(reads[0]!.key);
      else pipeline.mget(reads.map((read) => read.key));
    }
    pipeline.exec().then(
      (replies) => {
        for (let i = 0; i < commands.length; i++) {
          const reads = commands[i]!;
          const [error, value] = replies?.[i] ?? [new Error('the pipeline gave no reply for these reads')];
          // A slot that moved to another node: ioredis retries a pipeline only when all its commands
          // failed alike, so these reads go again on their own, to be redirected.
          if (error && REDIRECTED.test(error.message)) this.alone(reads);
          else if (error) for (const read of reads) read.reject(error);
          else if (reads.length === 1) reads[0]!.resolve(value as string | null);
          else answer(reads, value as Array<string | null>);
        }
      },
      (error: unknown) => {
        for (const reads of commands) for (const read of reads) read.reject(error);
      },
    );
  }
}

/** Each read its own value of an MGET's reply (in the order of its keys). */
function answer(reads: Read[], values: Array<string | null>): void {
  for (let i = 0; i < reads.length; i++) reads[i]!.resolve(values[i] ?? null);
}
