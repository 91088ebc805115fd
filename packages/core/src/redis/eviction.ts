// The eviction-policy check: whether Redis may evict Till's keys, asked once before the store's first command.
import { TillError, tillError, tillMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { RedisClient } from './options.js';

/** Policies under which Redis never evicts a key without a TTL: Till's records and credits have none. */
const SAFE_POLICIES = /^(noeviction|volatile-(lru|lfu|random|ttl))$/;

/** Sends one command under the store's deadline, with its errors mapped (see commands.ts). */
type Send = <T>(command: () => Promise<T>) => Promise<T>;

export class EvictionCheck {
  /** The check: undefined until the first command starts it (again after it could not ask). */
  private check: Promise<void> | undefined;
  /** Whether the check has answered (commands then skip it). */
  private known = false;
  /** Set when the policy evicts and the mode is `refuse`: every command fails with it. */
  refusal: TillError | undefined;

  constructor(
    private readonly client: RedisClient,
    private readonly send: Send,
    private readonly mode: 'warn' | 'refuse',
    private readonly logger: Logger,
  ) {}

  /** Starts the check on the first command; with `refuse`, commands wait for its answer. */
  gate(): Promise<void> | undefined {
    if (this.known) return undefined;
    if (this.check === undefined) {
      const check = this.read().then(
        () => {
          this.known = true;
        },
        () => {
          // Not answered (Redis down): asked again by a later command.
          if (this.check === check) this.check = undefined;
        },
      );
      this.check = check;
    }
    return this.mode === 'refuse' ? this.check : undefined;
  }

  /**
   * Reads Redis's `maxmemory-policy` (INFO memory; CONFIG GET where INFO does not say) and warns, or
   * with `refuse` sets the refusal, when it may evict keys that have no TTL. A Redis that cannot be
   * asked now (down) is asked again on a later command; one that refuses both commands (an ACL) is
   * reported once and trusted.
   */
  private async read(): Promise<void> {
    let policy: string | undefined;
    let maxmemory = '';
    // Through send(): under the command timeout; unavailable means "ask again later", a refusal (an
    // ACL, a renamed CONFIG) means "cannot be read here".
    const unread = (error: unknown) => {
      if (error instanceof TillError && error.code === 'STORE_UNAVAILABLE') throw error;
    };
    try {
      const info = await this.send(() => this.client.info('memory'));
      policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
      maxmemory = /^maxmemory:(\d+)/m.exec(info)?.[1] ?? '';
    } catch (error) {
      unread(error);
    }
    if (policy === undefined) {
      try {
        const reply = (await this.send(() => this.client.config('GET', 'maxmemory-policy'))) as unknown as string[];
        policy = reply[1];
      } catch (error) {
        unread(error);
      }
    }
    if (policy === undefined) {
      this.logger.warn(
        tillMessage(
          'redis',
          'could not read maxmemory-policy (neither INFO memory nor CONFIG GET answered it): make sure it is noeviction or volatile-*, or Redis may evict key records and credit counters',
        ),
      );
      return;
    }
    if (SAFE_POLICIES.test(policy)) return;
    const why = `maxmemory-policy is ${policy}${maxmemory === '0' ? ' (maxmemory 0: no limit yet)' : ''}: under memory pressure Redis evicts any key, Till's key records (valid keys are then refused as unknown) and credit counters (they start again full) included. Set maxmemory-policy to noeviction (or a volatile-* policy: only rate-limit state and usage counts carry a TTL)`;
    if (this.mode === 'refuse') {
      this.refusal = tillError('STORE_ERROR', 'redis', `refusing to run (eviction: 'refuse'): ${why}`);
      this.logger.error(this.refusal.message);
    } else {
      this.logger.warn(tillMessage('redis', `${why}, or pass eviction: 'refuse' to RedisStore to refuse to run on it`));
    }
  }
}
