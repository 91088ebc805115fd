// Brute-force protection: failed authentications counted per client IP, and a block once too many.
import { LRUCache } from 'lru-cache';
import type { Clock } from './clock.js';
import { parseDuration } from './duration.js';
import { TillError } from './errors.js';
import type { TillEvents } from './events.js';
import { UNAVAILABLE, type Limiter } from './limiter.js';
import { MAX_CAPACITY } from './limits.js';

export interface BruteForceOptions {
  /** Failed authentications from one IP allowed within `window`. Default 30. */
  threshold?: number;
  /** The window the threshold counts in (a duration or ms). Default `5m`. */
  window?: string | number;
  /** How long an IP is refused once past the threshold. Default `15m`. */
  block?: string | number;
  /** Most blocked IPs remembered in this process. Default 10,000. */
  maxBlocked?: number;
}

const DEFAULTS = { threshold: 30, window: '5m', block: '15m', maxBlocked: 10_000 } as const;
const OPTION_NAMES = Object.keys(DEFAULTS);

/**
 * Counts failed authentications per client IP in the store (shared by every process) as a rate
 * limit of `threshold` per `window`; when one is refused, the IP is blocked for `block` in this
 * process's memory, so a flood from a blocked IP costs no store call at all. A process that has
 * not seen the IP yet learns of the block from its first failure: the shared count is full.
 */
export class BruteForceGuard {
  readonly threshold: number;
  readonly window: number;
  readonly block: number;
  private readonly blocked: LRUCache<string, number>;

  constructor(
    options: BruteForceOptions | undefined,
    private readonly limiter: Limiter,
    private readonly clock: Clock,
    private readonly events: TillEvents,
    where: string,
  ) {
    const opts = { ...DEFAULTS, ...checkNames(options, where) };
    const fail = (m: string): never => {
      throw new TillError('INVALID_OPTIONS', `[till] [${where}] bruteForce.${m}`);
    };
    if (!Number.isSafeInteger(opts.threshold) || opts.threshold < 1) fail('threshold must be a positive integer');
    if (!Number.isSafeInteger(opts.maxBlocked) || opts.maxBlocked < 1) fail('maxBlocked must be a positive integer');
    const ms = (value: unknown, name: string): number => {
      try {
        const n = parseDuration(value as string | number, name);
        if (n >= 1000) return n;
      } catch {
        // reported below
      }
      return fail(`${name} must be a duration of at least 1s, like "5m", or milliseconds`);
    };
    this.threshold = opts.threshold;
    this.window = ms(opts.window, 'window');
    this.block = ms(opts.block, 'block');
    if (this.window * this.threshold > MAX_CAPACITY) fail('threshold x window is too large');
    this.blocked = new LRUCache<string, number>({ max: opts.maxBlocked });
  }

  /** Whether any IP is blocked in this process: when none is, requests need not read their IP. */
  get active(): boolean {
    return this.blocked.size > 0;
  }

  /** Seconds the IP stays blocked, or 0. Memory only. */
  blockedFor(ip: string): number {
    const until = this.blocked.get(ip);
    if (until === undefined) return 0;
    const left = until - this.clock();
    if (left > 0) return Math.ceil(left / 1000);
    this.blocked.delete(ip);
    return 0;
  }

  /** Counts one failed authentication from `ip`; blocks it when past the threshold. Never throws. */
  failed(ip: string): void {
    if (this.blocked.has(ip)) return;
    const charge = { name: 'auth-failures', bucket: 'auth-failures', limit: this.threshold, window: this.window, cost: 1 };
    this.limiter.consume({ subject: `ip:${ip}`, limits: [charge] }, false).then(
      (result) => {
        if (result === UNAVAILABLE || result.outcome !== 'RATE_LIMITED' || this.blocked.has(ip)) return;
        const until = this.clock() + this.block;
        this.blocked.set(ip, until);
        this.events.emit({ type: 'client.blocked', ip, until, failures: this.threshold });
      },
      () => {},
    );
  }
}

function checkNames(options: unknown, where: string): Partial<Record<keyof typeof DEFAULTS, number>> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TillError('INVALID_OPTIONS', `[till] [${where}] bruteForce must be an object or false`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.includes(name)) throw new TillError('INVALID_OPTIONS', `[till] [${where}] unknown bruteForce option "${name}"; known: ${OPTION_NAMES.join(', ')}`);
  }
  return options as Partial<Record<keyof typeof DEFAULTS, number>>;
}
