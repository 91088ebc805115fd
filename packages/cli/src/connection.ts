// Opening Till on Redis for one command: fail fast and clearly when Redis is not there, and let the process exit.
import { userInfo } from 'node:os';
import { createTill, parseDuration, type KeyManager, type Till } from '@till/core';
import type { RedisStore } from '@till/core/redis';
import { CliError, EXIT, plainMessage, usage } from './errors.js';

export interface ConnectionOptions {
  /** `--redis`; REDIS_URL when absent. */
  redis?: string;
  /** `--namespace`, passed to RedisStore. */
  namespace: string;
  /** `--replicas`; TILL_REPLICAS when absent. Replicas that must confirm every change. */
  replicas?: string;
  /** `--replica-timeout`; TILL_REPLICA_TIMEOUT when absent. How long to wait for them. */
  replicaTimeout?: string;
}

export interface Session {
  readonly till: Till;
  readonly keys: KeyManager;
  /**
   * Waits until the replicas asked for have every change this session made (for the changes the key
   * manager does not confirm itself: creations, enablings); rejects with NOT_REPLICATED otherwise.
   */
  confirmChanges(): Promise<void>;
  close(): Promise<void>;
}

/** How long the CLI waits for replicas by default: a person or a script can afford more than a request. */
const DEFAULT_REPLICA_TIMEOUT_MS = 2000;

/** `--replicas` / TILL_REPLICAS and `--replica-timeout` / TILL_REPLICA_TIMEOUT, checked before connecting. */
export function replicationOf(options: ConnectionOptions, env: NodeJS.ProcessEnv): { replicas: number; replicaTimeout: number } {
  const given = options.replicas ?? (env.TILL_REPLICAS || undefined);
  const source = options.replicas !== undefined ? '--replicas' : 'TILL_REPLICAS';
  if (given !== undefined && !/^\d{1,2}$/.test(given.trim()))
    throw usage(`${source} must be a whole number of replicas, like 1 (got ${JSON.stringify(given.slice(0, 20))})`);
  const replicas = given === undefined ? 0 : Number(given.trim());
  const timeoutText = options.replicaTimeout ?? (env.TILL_REPLICA_TIMEOUT || undefined);
  let replicaTimeout = DEFAULT_REPLICA_TIMEOUT_MS;
  if (timeoutText !== undefined) {
    const option = options.replicaTimeout !== undefined ? '--replica-timeout' : 'TILL_REPLICA_TIMEOUT';
    try {
      replicaTimeout = parseDuration(timeoutText, option);
    } catch (error) {
      throw usage(plainMessage(error instanceof Error ? error.message : String(error)));
    }
    if (replicaTimeout < 1) throw usage(`${option} must be at least 1ms`);
  }
  return { replicas, replicaTimeout };
}

/** How long to keep trying to reach Redis before giving up with exit code 3. */
const GIVE_UP_AFTER_MS = 2000;
/** One connection attempt (covers a host that drops packets instead of refusing). */
const CONNECT_TIMEOUT_MS = 1000;
/**
 * How long a closing connection may take to say goodbye before its socket is destroyed. ioredis
 * waits 2 s by default, on a timer that keeps the process alive: a failed or hung connection would
 * hold the exit back by that much after the CLI has given up.
 */
const DISCONNECT_TIMEOUT_MS = 100;

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

function redisUrl(options: ConnectionOptions, env: NodeJS.ProcessEnv): string {
  const url = options.redis ?? env.REDIS_URL;
  if (!url) throw usage('no Redis to talk to: pass --redis <url> or set REDIS_URL (like redis://127.0.0.1:6379)');
  if (!/^rediss?:\/\//i.test(url)) throw usage(`the Redis URL must start with redis:// or rediss:// (got ${JSON.stringify(redactUrl(url).slice(0, 80))})`);
  return url;
}

/**
 * Connects to Redis and builds the Till whose key manager the commands use. Everything that can be
 * checked without Redis (the URL, the namespace, the pepper) is checked before connecting.
 */
export async function openSession(options: ConnectionOptions, env: NodeJS.ProcessEnv): Promise<Session> {
  const url = redisUrl(options, env);
  const replication = replicationOf(options, env);
  // Loaded only when a command needs Redis: --help and input errors answer without paying for ioredis.
  const [{ Redis }, { RedisStore }] = await Promise.all([import('ioredis'), import('@till/core/redis')]);
  const started = Date.now();
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    disconnectTimeout: DISCONNECT_TIMEOUT_MS,
    // Retry briefly (a Redis restarting), then stop: 'end' fires and the command fails with exit code 3.
    // No retry is scheduled past the budget: the last one would only add its delay to the wait.
    retryStrategy: (attempt) => {
      const delay = Math.min(50 * 2 ** attempt, 400);
      return Date.now() - started + delay > GIVE_UP_AFTER_MS ? null : delay;
    },
  });
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    lastError = error;
  });
  let till: Till | undefined;
  let store: RedisStore | undefined;
  const close = async () => {
    await till?.close();
    await store?.close(); // anything the store opened itself
    // After giving up ('end'), the socket is gone: disconnecting again would only start ioredis's
    // disconnect timer on the dead socket, which keeps the process alive for nothing.
    if (client.status !== 'end') client.disconnect();
  };
  try {
    // The store's own warnings (a Redis that may evict keys) reach the operator on stderr.
    const warn = (message: string) => void process.stderr.write(`till: warning: ${plainMessage(message)}\n`);
    store = new RedisStore({ client, namespace: options.namespace, ...replication, logger: { warn, error: warn } });
    till = createTill({
      store,
      actor: actorOf(env),
      // The CLI verifies nothing: no security events of its own.
      auditEvents: false,
      ...(env.TILL_PEPPER ? { pepper: env.TILL_PEPPER } : {}),
      logger: { warn: () => {}, error: () => {} },
    });
    await new Promise<void>((resolve, reject) => {
      // Whichever comes first settles, and clears the others: no timer or listener outlives it.
      const settle = (error?: Error) => {
        clearTimeout(deadline);
        client.off('ready', onReady);
        client.off('end', giveUp);
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => settle();
      const giveUp = () => {
        const why = lastError ? `: ${lastError.message}` : '';
        settle(new CliError(`cannot reach Redis at ${redactUrl(url)}${why}`, EXIT.UNAVAILABLE));
      };
      // Also bounds a server that accepts the connection but never becomes ready (a failing AUTH, say).
      const deadline = setTimeout(giveUp, GIVE_UP_AFTER_MS + CONNECT_TIMEOUT_MS + 500);
      client.once('ready', onReady);
      client.once('end', giveUp);
      client.connect().catch(() => {
        // Reported through 'error' and 'end' above, after the retries.
      });
    });
  } catch (error) {
    await close();
    throw error;
  }
  const session = till;
  const opened = store;
  return { till: session, keys: session.keys, confirmChanges: () => opened.confirmChanges(), close };
}

/** Who the audit trail says made a change: $TILL_ACTOR, else `cli:<the user's name>`. */
function actorOf(env: NodeJS.ProcessEnv): string {
  const given = env.TILL_ACTOR?.trim();
  if (given) return given.slice(0, 200);
  let name = 'unknown';
  try {
    name = userInfo().username || name;
  } catch {
    // No user entry (some containers): the actor stays cli:unknown.
  }
  return `cli:${name}`.slice(0, 200);
}
