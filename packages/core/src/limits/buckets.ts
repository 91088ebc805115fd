// Rate-limit and credit state in process memory: the memory store's, and every store's fallback.
import { currentCredits, decayedDebt, evaluate, type CreditState, type BucketState, type Credits, type LimitCharge } from './rules.js';
import type { ConsumeResult } from '../store/types.js';

/** Drained buckets are dropped at least this often (ms), not only when the map has doubled. */
const SWEEP_EVERY_MS = 60_000;

interface Slot {
  state: BucketState;
  expiresAt: number;
}

/**
 * Bucket states by subject and name, each dropped once its debt has drained (a drained bucket and
 * a missing one are the same), so memory follows the subjects active within their windows.
 */
export class LocalBuckets {
  private readonly buckets = new Map<string, Slot>();
  private readonly credits = new Map<string, CreditState>();
  private sweepAt = 1024;
  /** When drained buckets are next dropped whatever the size: memory follows the active subjects. */
  private sweepTime = 0;

  /** Charges `charges` (and `credits`, for a key) all or nothing, at `now`. */
  consume(
    subject: string,
    charges: ReadonlyArray<LimitCharge & { readonly bucket?: string }>,
    credits: { policy: Credits; cost: number } | null,
    now: number,
  ): ConsumeResult & { outcome: 'OK' | 'RATE_LIMITED' | 'USAGE_EXCEEDED' } {
    const names = charges.map((c) => `${subject}\n${c.bucket ?? c.name}`);
    const states = names.map((name) => {
      const slot = this.buckets.get(name);
      return slot !== undefined && slot.expiresAt > now ? slot.state : undefined;
    });
    const account = credits === null ? subject : (credits.policy.account ?? subject);
    const result = evaluate(now, charges, states, credits === null ? null : { ...credits, state: this.credits.get(account) });
    if (result.outcome === 'OK') {
      for (let i = 0; i < names.length; i++) {
        const { state, ttl } = result.buckets[i]!;
        this.buckets.delete(names[i]!);
        this.buckets.set(names[i]!, { state, expiresAt: now + ttl });
      }
      if (result.creditState !== null) this.credits.set(account, result.creditState);
      if (this.buckets.size >= this.sweepAt || now >= this.sweepTime) this.sweep(now);
    }
    return { outcome: result.outcome, limits: result.limits, credits: result.credits, retryAfter: result.retryAfter };
  }

  /**
   * Gives back an admitted charge: each limit's debt, decayed to `now`, less the charge (what it
   * would be had the charge never been made), and the credits' cost while they are of the same
   * generation.
   */
  refund(
    subject: string,
    charges: ReadonlyArray<LimitCharge & { readonly bucket?: string }>,
    credits: { policy: Credits; cost: number } | null,
    now: number,
  ): void {
    for (const c of charges) {
      const name = `${subject}\n${c.bucket ?? c.name}`;
      const slot = this.buckets.get(name);
      if (slot === undefined || slot.expiresAt <= now) continue;
      const debt = decayedDebt(slot.state, now, c.limit, c.window) - c.cost * c.window;
      this.buckets.delete(name);
      if (debt > 0) this.buckets.set(name, { state: { at: now, debt }, expiresAt: now + Math.max(1, Math.ceil(debt / c.limit)) });
    }
    const account = credits === null ? subject : (credits.policy.account ?? subject);
    const state = this.credits.get(account);
    if (credits !== null && credits.cost > 0 && state !== undefined && state.generation === credits.policy.generation) {
      const live = currentCredits(credits.policy, state, now);
      this.credits.set(account, { ...live, remaining: live.remaining + credits.cost });
    }
  }

  /**
   * Whether the live count of these credits was set by a newer policy than `policy` (a rotation chain
   * whose newest key had its credits set anew, and this key's copy is not updated yet): charging it
   * under the older policy would restart the count, so the caller must read the key again.
   */
  creditsOutdated(subject: string, policy: Credits): boolean {
    const state = this.credits.get(policy.account ?? subject);
    return state !== undefined && state.generation > policy.generation;
  }

  /**
   * Forgets everything of a subject (its key was deleted); its credits too unless `keepCredits` (a
   * superseded key: the keys that replaced it may charge its count).
   */
  forget(subject: string, keepCredits = false): void {
    if (!keepCredits) this.credits.delete(subject);
    const prefix = `${subject}\n`;
    for (const name of this.buckets.keys()) if (name.startsWith(prefix)) this.buckets.delete(name);
  }

  private sweep(now: number): void {
    for (const [name, slot] of this.buckets) if (slot.expiresAt <= now) this.buckets.delete(name);
    this.sweepAt = Math.max(1024, this.buckets.size * 2);
    this.sweepTime = now + SWEEP_EVERY_MS;
  }
}
