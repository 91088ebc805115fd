// Brute-force protection: failed authentications counted per client IP, and a block once too many.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../util/clock.js';
import { parseDuration } from '../util/duration.js';
import { tillError } from '../errors.js';
import type { TillEvents } from '../audit/events.js';
import { UNAVAILABLE, type Limiter } from './limiter.js';
import { MAX_CAPACITY } from './rules.js';
import { clientKey, DEFAULT_IPV6_SUBNET, isValidSubnet } from './client-ip.js';

export interface BruteForceOptions {
  /** Failed authentications from one client allowed within `window`. Default 30. */
  threshold?: number;
  /** The window the threshold counts in (a duration or ms). Default `5m`. */
  window?: string | number;
  /** How long a client is refused once past the threshold. Default `15m`. */
  block?: string | number;
  /** Most blocked clients remembered in this process. Default 10,000. */
  maxBlocked?: number;
  /**
   * Most clients whose failures this process counts at once; the least recent go first, so memory
   * stays bounded however many addresses fail. Default 100,000.
   */
  maxTracked?: number;
  /** IPv6 addresses count as one client per prefix of this length (a host rotates within its /64, often a /56). Default 56. */
  ipv6Subnet?: number;
}

const DEFAULTS = { threshold: 30, window: '5m', block: '15m', maxBlocked: 10_000, maxTracked: 100_000, ipv6Subnet: DEFAULT_IPV6_SUBNET } as const;
const OPTION_NAMES = Object.keys(DEFAULTS);
/** How often counts go to the store, to be shared with the other processes. */
const SHARE_EVERY_MS = 250;

/**
 * Counts failed authentications per client: in this process first, where the client is blocked the
 * moment it reaches `threshold` within `window`, before any store call; and in the store, shared by
 * every process, in batches (each client's failures since the last batch in one charge, every
 * 250 ms, from a client's second failure in this process on), so a client spreading its attempts
 * over processes is blocked by all of them once the shared count is full. A blocked client is refused for `block` from memory: a flood from it costs no
 * store call at all. Clients are IPv4 addresses and IPv6 prefixes (`ipv6Subnet`); memory is bounded by
 * `maxTracked` counted clients and `maxBlocked` blocked ones.
 */
export class BruteForceGuard {
  readonly threshold: number;
  readonly window: number;
  readonly block: number;
  readonly ipv6Subnet: number;
  private readonly blocked: LRUCache<string, number>;
  /** Failures per client in its current window, in this process. */
  private readonly counts: LRUCache<string, { start: number; n: number }>;
  /** Failures per client not yet shared through the store. */
  private unshared = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly maxTracked: number;

  constructor(
    options: BruteForceOptions | undefined,
    private readonly limiter: Limiter,
    private readonly clock: Clock,
    private readonly events: TillEvents,
    where: string,
    /** Whether counts go to the store to be shared with other processes (not for a store in this process). */
    private readonly share: boolean = true,
  ) {
    const opts = { ...DEFAULTS, ...checkNames(options, where) } as {
      threshold: number;
      window: unknown;
      block: unknown;
      maxBlocked: number;
      maxTracked: number;
      ipv6Subnet: number;
    };
    const fail = (m: string): never => {
      throw tillError('INVALID_OPTIONS', where, `bruteForce.${m}`);
    };
    if (!Number.isSafeInteger(opts.threshold) || opts.threshold < 1) fail('threshold must be a positive integer');
    if (!Number.isSafeInteger(opts.maxBlocked) || opts.maxBlocked < 1) fail('maxBlocked must be a positive integer');
    if (!Number.isSafeInteger(opts.maxTracked) || opts.maxTracked < 1) fail('maxTracked must be a positive integer');
    if (!isValidSubnet(opts.ipv6Subnet)) fail('ipv6Subnet must be an integer from 1 to 128');
    const subnet: number = opts.ipv6Subnet;
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
    this.ipv6Subnet = subnet;
    this.maxTracked = opts.maxTracked;
    if (this.window * this.threshold > MAX_CAPACITY) fail('threshold x window is too large');
    this.blocked = new LRUCache<string, number>({ max: opts.maxBlocked });
    this.counts = new LRUCache<string, { start: number; n: number }>({ max: opts.maxTracked });
    // Counts past their window are worth nothing: dropped once a window, so memory follows the
    // clients failing now, not every client that ever failed (the timer never keeps a process alive).
    setInterval(() => this.dropStale(), this.window).unref?.();
  }

  /** Whether any client is blocked in this process: when none is, requests need not read their IP. */
  get active(): boolean {
    return this.blocked.size > 0;
  }

  /** Clients counted in this process right now (bounded by `maxTracked`). */
  get tracked(): number {
    return this.counts.size;
  }

  /** Seconds the address's client stays blocked, or 0. Memory only. */
  blockedFor(ip: string): number {
    const client = clientKey(ip, this.ipv6Subnet);
    const until = this.blocked.get(client);
    if (until === undefined) return 0;
    const left = until - this.clock();
    if (left > 0) return Math.ceil(left / 1000);
    this.blocked.delete(client);
    return 0;
  }

  /** Counts one failed authentication from `ip`; blocks its client at the threshold. Never throws. */
  failed(ip: string): void {
    const client = clientKey(ip, this.ipv6Subnet);
    if (this.blocked.has(client)) return;
    const now = this.clock();
    let count = this.counts.get(client);
    if (count === undefined || now - count.start >= this.window) this.counts.set(client, (count = { start: now, n: 0 }));
    count.n++;
    if (count.n >= this.threshold) {
      this.blockClient(client, now);
      return;
    }
    // A client's first failure here is not shared on its own: most made-up keys come from addresses that
    // send one (a scan spread over many), and sharing each would cost a store write per request on top
    // of the lookup. From its second, it goes to the shared count with the first.
    if (!this.share || count.n < 2) return;
    const add = count.n === 2 ? 2 : 1;
    if (this.unshared.size < this.maxTracked || this.unshared.has(client)) this.unshared.set(client, (this.unshared.get(client) ?? 0) + add);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flushShared(), SHARE_EVERY_MS);
      this.timer.unref?.();
    }
  }

  private dropStale(): void {
    const now = this.clock();
    const stale: string[] = [];
    for (const [client, count] of this.counts.entries()) if (now - count.start >= this.window) stale.push(client);
    for (const [client, until] of this.blocked.entries()) if (until <= now) stale.push(client);
    for (const client of stale) {
      this.counts.delete(client);
      this.blocked.delete(client);
    }
  }

  private blockClient(client: string, now: number): void {
    if (this.blocked.has(client)) return;
    this.counts.delete(client);
    this.unshared.delete(client);
    const until = now + this.block;
    this.blocked.set(client, until);
    this.events.emit({ type: 'client.blocked', ip: client, until, failures: this.threshold });
  }

  /**
   * Adds each client's failures since the last batch to its shared count in the store: when the
   * count of every process together is past the threshold, this process blocks the client too.
   */
  private flushShared(): void {
    this.timer = null;
    const batch = this.unshared;
    this.unshared = new Map();
    for (const [client, n] of batch) {
      const charge = { name: 'auth-failures', bucket: 'auth-failures', limit: this.threshold, window: this.window, cost: Math.min(n, this.threshold) };
      this.limiter.consume({ subject: `ip:${client}`, limits: [charge] }, false, false).then(
        (result) => {
          if (result === UNAVAILABLE || result.outcome !== 'RATE_LIMITED') return;
          this.blockClient(client, this.clock());
        },
        () => {},
      );
    }
  }
}

function checkNames(options: unknown, where: string): Partial<Record<keyof typeof DEFAULTS, number | string>> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw tillError('INVALID_OPTIONS', where, `bruteForce must be an object or false`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.includes(name)) throw tillError('INVALID_OPTIONS', where, `unknown bruteForce option "${name}"; known: ${OPTION_NAMES.join(', ')}`);
  }
  return options as Partial<Record<keyof typeof DEFAULTS, number | string>>;
}
