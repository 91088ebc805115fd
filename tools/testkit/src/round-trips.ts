// Counting the round trips an ioredis client makes to Redis, by wrapping the sendCommand of its connections
// (every command goes through it, a pipeline's too); each call is forwarded unchanged.
import type { Cluster, Redis } from 'ioredis';

export interface RoundTrips {
  /** Round trips since counting started: a command written alone is one; a pipeline's commands, one together. */
  readonly count: number;
  /** Commands sent, by name. */
  readonly commands: Readonly<Record<string, number>>;
  /** Stops counting: the connections' own sendCommand again. */
  stop(): void;
}

/**
 * What ioredis sends by itself when a connection to a Cluster replica becomes ready (it may do so while
 * counting, when a connection is made or made again on a busy machine): the client's, not the caller's.
 */
const HOUSEKEEPING = new Set(['readonly', 'readwrite']);

type Connection = Omit<Redis, 'sendCommand'> & { sendCommand: (command: { name: string }, stream?: { isPipeline?: boolean }, ...rest: unknown[]) => unknown };

/**
 * Counts from now on what `client` sends: on a Cluster, through every node it has a connection to now
 * (a node it connects to later is not counted). The subscriber or duplicates of the client are not counted,
 * nor the commands ioredis sends by itself when a connection becomes ready (HOUSEKEEPING).
 */
export function countRoundTrips(client: Redis | Cluster): RoundTrips {
  const connections = ((client as Cluster).isCluster ? (client as Cluster).nodes('all') : [client]) as unknown as Connection[];
  const pipelines = new WeakSet<object>();
  const counted = { count: 0, commands: {} as Record<string, number> };
  for (const connection of connections) {
    connection.sendCommand = function sendCommand(this: Connection, command, stream, ...rest) {
      if (HOUSEKEEPING.has(command.name)) return Object.getPrototypeOf(connection).sendCommand.call(this, command, stream, ...rest);
      const pipeline = stream?.isPipeline ? stream : null;
      if (pipeline === null || !pipelines.has(pipeline)) counted.count++;
      if (pipeline !== null) pipelines.add(pipeline);
      counted.commands[command.name] = (counted.commands[command.name] ?? 0) + 1;
      return Object.getPrototypeOf(connection).sendCommand.call(this, command, stream, ...rest);
    };
  }
  return {
    get count() {
      return counted.count;
    },
    commands: counted.commands,
    stop() {
      for (const connection of connections) delete (connection as Partial<Connection>).sendCommand;
    },
  };
}
