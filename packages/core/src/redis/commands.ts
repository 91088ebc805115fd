// How the store sends commands: its scripts defined on the client, a deadline on each, and errors mapped to TillErrors.
import { TillError, storeUnavailable, tillError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { CONSUME_SCRIPT, REFUND_SCRIPT } from './charge-scripts.js';
import { EvictionCheck } from './eviction.js';
import type { RedisClient } from './options.js';
import { ReadBatch } from './reads.js';
import { CLAIM_REMINDER_SCRIPT, REINDEX_EXPIRY_SCRIPT } from './scripts.js';
import { EVENTS_SCRIPT, INSERT_SCRIPT, LOG_SCRIPT, REMOVE_SCRIPT, REPLACE_SCRIPT, ROLE_SCRIPT, USAGE_SCRIPT } from './scripts.js';

/** The client with the store's scripts defined on it as commands. */
export type ScriptClient = RedisClient & {
  tillReplace(
    record: string,
    trail: string,
    expiries: string,
    reminded: string,
    json: string,
    version: number,
    channel: string,
    id: string,
    entry: string,
    cap: number,
    expiry: string,
  ): Promise<[number, string?, number?, string?]>;
  tillInsert(
    record: string,
    trail: string,
    expiries: string,
    reminded: string,
    json: string,
    entry: string,
    cap: number,
    expiry: string,
    id: string,
  ): Promise<[number, string?]>;
  tillRemove(
    record: string,
    credits: string,
    trail: string,
    expiries: string,
    reminded: string,
    version: number,
    channel: string,
    id: string,
    entry: string,
    cap: number,
  ): Promise<[number, string?, string?, number?, string?]>;
  tillEvents(events: string, record: string, trail: string, cap: number, ...entries: string[]): Promise<number>;
  tillLog(changes: string, security: string, which: 1 | 2, cap: number, ...entries: string[]): Promise<string[]>;
  tillUsage(numberOfKeys: number, ...args: Array<string | number>): Promise<number>;
  tillConsume(numberOfKeys: number, ...args: Array<string | number>): Promise<Array<string | number>>;
  tillRefund(numberOfKeys: number, ...args: Array<string | number>): Promise<number>;
  tillReindexExpiry(record: string, expiries: string, reminded: string, id: string): Promise<number>;
  tillClaimReminder(expiries: string, reminded: string, id: string, expiresAt: number): Promise<number>;
  tillRole(
    roles: string,
    changes: string,
    security: string,
    name: string,
    json: string,
    version: number | '',
    channel: string,
    message: string,
    cap: number,
    entry: string,
  ): Promise<[number, number?, string?]>;
};

/** Each script by its command name, with its number of keys (none: given per call). */
const SCRIPTS = [
  ['tillReplace', REPLACE_SCRIPT, 4],
  ['tillInsert', INSERT_SCRIPT, 4],
  ['tillEvents', EVENTS_SCRIPT, 3],
  ['tillLog', LOG_SCRIPT, 2],
  ['tillRemove', REMOVE_SCRIPT, 5],
  ['tillUsage', USAGE_SCRIPT, undefined],
  ['tillConsume', CONSUME_SCRIPT, undefined],
  ['tillRefund', REFUND_SCRIPT, undefined],
  ['tillReindexExpiry', REINDEX_EXPIRY_SCRIPT, 3],
  ['tillClaimReminder', CLAIM_REMINDER_SCRIPT, 2],
  ['tillRole', ROLE_SCRIPT, 3],
] as const;

/** Defines the store's scripts on a client (once: a client shared by several stores keeps the first). */
function defineScripts(client: RedisClient): ScriptClient {
  const target = client as ScriptClient;
  for (const [name, lua, numberOfKeys] of SCRIPTS) {
    if (typeof target[name] !== 'function') client.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  }
  return target;
}

// Statuses in which ioredis would only queue a command: answering "unavailable" at once beats a hang.
const DOWN = new Set(['reconnecting', 'close', 'end']);
const CONNECTION_ERROR =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Connection is closed|Stream isn't writeable|enableOfflineQueue|max retries|MaxRetriesPerRequest|ClusterAllFailed|Failed to refresh slots|CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN/i;

/** Closes a client gracefully (its pending replies first), or at once when it is not connected. */
export function quit(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect();
    return Promise.resolve();
  }
  return client.quit().then(
    () => {},
    () => client.disconnect(),
  );
}

export class Commands {
  readonly client: ScriptClient;
  private readonly eviction: EvictionCheck;
  /** The reads of one turn sent together (`batchReads`); null: each read sent alone. */
  private readonly reads: ReadBatch | null;

  constructor(
    client: RedisClient,
    private readonly timeout: number,
    eviction: 'warn' | 'refuse',
    logger: Logger,
    batchReads: boolean,
  ) {
    this.client = defineScripts(client);
    this.eviction = new EvictionCheck(client, (command) => this.send(command), eviction, logger);
    this.reads = batchReads ? new ReadBatch(client) : null;
  }

  /**
   * GET of one key as run() runs a command (deadline, errors mapped, eviction check), batched with the
   * other reads of the same turn of the event loop unless `batchReads` is off. Each read keeps its own
   * deadline and its own error: one that fails, fails alone.
   */
  read(key: string): Promise<string | null> {
    const { reads } = this;
    return this.run(reads === null ? () => this.client.get(key) : () => reads.get(key));
  }

  /**
   * Runs a command with a deadline, and turns connection trouble into a STORE_UNAVAILABLE error. The
   * first command starts the eviction check (and with `eviction: 'refuse'` waits for it).
   */
  run<T>(command: () => Promise<T>): Promise<T> {
    if (this.eviction.refusal !== undefined) return Promise.reject(this.eviction.refusal);
    const gate = DOWN.has(this.client.status) ? undefined : this.eviction.gate();
    if (gate !== undefined) {
      return gate.then(() => {
        if (this.eviction.refusal !== undefined) throw this.eviction.refusal;
        return this.send(command);
      });
    }
    return this.send(command);
  }

  /** Sends a command with a deadline, its errors mapped: unavailable (connection trouble) or STORE_ERROR. */
  private send<T>(command: () => Promise<T>): Promise<T> {
    if (DOWN.has(this.client.status)) return Promise.reject(storeUnavailable('redis', new Error(`client is ${this.client.status}`)));
    return new Promise<T>((resolve, reject) => {
      // A command sent is not taken back: if it was a change, it may still be made.
      const timer = setTimeout(
        () => reject(storeUnavailable('redis', new Error(`no answer within ${this.timeout} ms (a change sent may still be made)`))),
        this.timeout,
      );
      timer.unref?.();
      command().then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (error instanceof TillError) reject(error);
          // A command that failed while the client was not connected failed for that reason.
          else if (this.client.status !== 'ready' || (error instanceof Error && CONNECTION_ERROR.test(`${error.name} ${error.message}`)))
            reject(storeUnavailable('redis', error));
          else reject(tillError('STORE_ERROR', 'redis', `command failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
        },
      );
    });
  }
}
