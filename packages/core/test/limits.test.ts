// The limiter's arithmetic against independent models: GCRA in exact BigInt time, and the bound it promises.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import { evaluate, normalizeCredits, normalizeRateLimit, normalizeRateLimits, type BucketState, type LimitCharge } from '../src/limits/rules.js';
import { LocalBuckets } from '../src/limits/buckets.js';

/**
 * The textbook GCRA (virtual scheduling), written apart from the implementation: a theoretical
 * arrival time in units of 1/limit ms, as BigInt so nothing rounds. A request of `cost` is admitted
 * when max(tat, now) + cost x window - now <= window x limit.
 */
class ModelGcra {
  private tat = 0n;
  constructor(
    private readonly limit: number,
    private readonly window: number,
  ) {}
  admit(now: number, cost: number): { ok: boolean; retry: number } {
    const t = BigInt(now) * BigInt(this.limit);
    const next = (this.tat > t ? this.tat : t) + BigInt(cost) * BigInt(this.window);
    const over = next - t - BigInt(this.window) * BigInt(this.limit);
    if (cost > this.limit) return { ok: false, retry: -1 };
    if (over <= 0n) {
      this.tat = next;
      return { ok: true, retry: 0 };
    }
    // Smallest whole ms d with over - d x limit <= 0.
    const l = BigInt(this.limit);
    return { ok: false, retry: Number((over + l - 1n) / l) };
  }
}

const policy = fc.record({ limit: fc.integer({ min: 1, max: 50 }), window: fc.integer({ min: 1, max: 5000 }) });
const steps = fc.array(fc.record({ dt: fc.nat({ max: 400 }), cost: fc.integer({ min: 0, max: 8 }) }), { minLength: 1, maxLength: 120 });

/** A bucket's state after a sequence of charges (the refused ones change nothing), and the time after them. */
function replay(seq: ReadonlyArray<{ dt: number; cost: number }>, limit: number, window: number): { state: BucketState | undefined; now: number } {
  let state: BucketState | undefined;
  let now = 9_000_000;
  for (const step of seq) {
    now += step.dt;
    const r = evaluate(now, [{ name: 'l', limit, window, cost: step.cost }], [state], null);
    if (r.outcome === 'OK') state = r.buckets[0]!.state;
  }
  return { state, now };
}

describe('GCRA evaluation', () => {
  it('admits and refuses exactly as the model does, with the same retry time', () => {
    fc.assert(
      fc.property(policy, steps, ({ limit, window }, seq) => {
        const model = new ModelGcra(limit, window);
        let state: BucketState | undefined;
        let now = 1_000_000;
        for (const { dt, cost } of seq) {
          now += dt;
          const charge: LimitCharge = { name: 'l', limit, window, cost };
          const got = evaluate(now, [charge], [state], null);
          const want = model.admit(now, cost);
          expect(got.outcome === 'OK').toBe(want.ok);
          if (!want.ok) expect(got.retryAfter).toBe(want.retry < 0 ? null : want.retry);
          if (got.outcome === 'OK') state = got.buckets[0]!.state;
        }
      }),
      { numRuns: 400 },
    );
  });

  it('never admits more than the limit plus what drained, in any interval', () => {
    fc.assert(
      fc.property(policy, steps, ({ limit, window }, seq) => {
        const buckets = new LocalBuckets();
        const admitted: Array<{ t: number; cost: number }> = [];
        let now = 5_000_000;
        for (const { dt, cost } of seq) {
          now += dt;
          if (buckets.consume('s', [{ name: 'l', limit, window, cost }], null, now).outcome === 'OK') admitted.push({ t: now, cost });
        }
        // In [a, b]: sum of costs x window <= limit x window + (b - a) x limit (a full bucket, then the drain rate).
        for (let i = 0; i < admitted.length; i++) {
          let sum = 0;
          for (let j = i; j < admitted.length; j++) {
            sum += admitted[j]!.cost;
            expect(sum * window).toBeLessThanOrEqual(limit * window + (admitted[j]!.t - admitted[i]!.t) * limit);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('gives a retry time that is right to the millisecond: refused just before, admitted at it', () => {
    // Only cases that reach the check: a cost the limit can admit, charged after the random steps until
    // refused (at most `limit` more charges at one instant). Costs above the limit: the next test.
    const withCost = policy.chain(({ limit, window }) =>
      fc.record({ limit: fc.constant(limit), window: fc.constant(window), cost: fc.integer({ min: 1, max: Math.min(limit, 8) }) }),
    );
    let checked = 0;
    fc.assert(
      fc.property(withCost, steps, ({ limit, window, cost }, seq) => {
        let { state, now } = replay(seq, limit, window);
        const charge = { name: 'l', limit, window, cost };
        let refused = evaluate(now, [charge], [state], null);
        for (let i = 0; refused.outcome === 'OK' && i <= limit; i++) {
          state = refused.buckets[0]!.state;
          refused = evaluate(now, [charge], [state], null);
        }
        expect(refused.outcome).toBe('RATE_LIMITED');
        const wait = refused.retryAfter!;
        expect(wait).toBeGreaterThan(0);
        expect(evaluate(now + wait, [charge], [state], null).outcome).toBe('OK');
        expect(evaluate(now + wait - 1, [charge], [state], null).outcome).toBe('RATE_LIMITED');
        checked++;
      }),
      { numRuns: 400 },
    );
    // Every run reached the check (fast-check does not shrink a passing run).
    expect(checked).toBe(400);
  });

  it('refuses a cost above the limit without a retry time, whatever came before', () => {
    let checked = 0;
    fc.assert(
      fc.property(policy, steps, fc.integer({ min: 1, max: 8 }), ({ limit, window }, seq, over) => {
        const { state, now } = replay(seq, limit, window);
        const refused = evaluate(now, [{ name: 'l', limit, window, cost: limit + over }], [state], null);
        expect(refused).toMatchObject({ outcome: 'RATE_LIMITED', retryAfter: null });
        checked++;
      }),
      { numRuns: 200 },
    );
    expect(checked).toBe(200);
  });

  it('reports remaining and reset as a client would count them', () => {
    const charge = { name: 'api', limit: 10, window: 1000, cost: 1 };
    let state: BucketState | undefined;
    const t = 1_000_000;
    for (let i = 1; i <= 10; i++) {
      const r = evaluate(t, [charge], [state], null);
      expect(r.outcome).toBe('OK');
      expect(r.limits[0]).toEqual({ name: 'api', limit: 10, window: 1000, remaining: 10 - i, reset: 100 * i });
      state = r.buckets[0]!.state;
    }
    const refused = evaluate(t, [charge], [state], null);
    expect(refused).toMatchObject({ outcome: 'RATE_LIMITED', retryAfter: 100 });
    expect(refused.limits[0]).toMatchObject({ remaining: 0, reset: 1000 });
    // Smooth: one more every 100 ms, not ten at the top of the next second.
    expect(evaluate(t + 100, [charge], [state], null).outcome).toBe('OK');
  });
});

describe('all or nothing', () => {
  it('charges no limit when one refuses, and no limit when credits refuse', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ dt: fc.nat({ max: 50 }), a: fc.boolean() }), { maxLength: 80 }), (seq) => {
        const both = new LocalBuckets();
        const aOnly = new LocalBuckets();
        let now = 1_000;
        const a = { name: 'a', limit: 5, window: 1000, cost: 1 };
        const b = { name: 'b', limit: 3, window: 400, cost: 1 };
        for (const step of seq) {
          now += step.dt;
          const r = both.consume('k', [a, b], null, now);
          // A refusal reports every limit as it stands, the admitting ones uncharged too.
          if (r.outcome !== 'OK')
            expect(r.limits).toEqual(
              both.consume(
                'k',
                [
                  { ...a, cost: 0 },
                  { ...b, cost: 0 },
                ],
                null,
                now,
              ).limits,
            );
          // A model of limit a that is charged only when both admitted.
          if (r.outcome === 'OK') aOnly.consume('k', [a], null, now);
          const probe = both.consume('k', [{ ...a, cost: 0 }], null, now);
          const expected = aOnly.consume('k', [{ ...a, cost: 0 }], null, now);
          expect(probe.limits[0]!.remaining).toBe(expected.limits[0]!.remaining);
        }
      }),
    );
  });

  it('spends credits down to zero, never below, and refuses with the time of the next refill', () => {
    const buckets = new LocalBuckets();
    const policy = normalizeCredits({ remaining: 3, refill: { amount: 2, interval: '1m' } }, 'test', 0, 1);
    const limit = { name: 'l', limit: 100, window: 1000, cost: 1 };
    const results = Array.from({ length: 5 }, () => buckets.consume('k', [limit], { policy, cost: 1 }, 10_000));
    expect(results.map((r) => r.outcome)).toEqual(['OK', 'OK', 'OK', 'USAGE_EXCEEDED', 'USAGE_EXCEEDED']);
    expect(results.map((r) => r.credits)).toEqual([2, 1, 0, 0, 0]);
    expect(results[3]!.retryAfter).toBe(50_000);
    // The refused requests charged no rate limit.
    expect(buckets.consume('k', [{ ...limit, cost: 0 }], null, 10_000).limits[0]!.remaining).toBe(97);
    // Topped up to 2 at each refill, never piled up: two idle intervals still give 2.
    expect(buckets.consume('k', [], { policy, cost: 2 }, 130_000)).toMatchObject({ outcome: 'OK', credits: 0 });
    expect(buckets.consume('k', [], { policy, cost: 1 }, 130_000).outcome).toBe('USAGE_EXCEEDED');
    // A cost above what is left is refused whole.
    expect(buckets.consume('k', [], { policy, cost: 3 }, 180_000)).toMatchObject({ outcome: 'USAGE_EXCEEDED', credits: 2 });
  });
});

describe('policies', () => {
  it('reads windows as durations and refuses what cannot work', () => {
    expect(normalizeRateLimit({ name: 'per-day', limit: 10_000, window: '1d' }, 'test')).toEqual({ name: 'per-day', limit: 10_000, window: 86_400_000 });
    const bad: unknown[] = [
      null,
      [],
      { name: 'a b', limit: 1, window: 1 },
      { name: '', limit: 1, window: 1 },
      { name: 'x', limit: 0, window: '1s' },
      { name: 'x', limit: 1.5, window: '1s' },
      { name: 'x', limit: 1, window: '0s' },
      { name: 'x', limit: 1, window: 'soon' },
      { name: 'x', limit: 1e9, window: '100d' },
      { name: 'x', limit: '5', window: '1s' },
    ];
    for (const input of bad) {
      expect(() => normalizeRateLimit(input, 'test'), JSON.stringify(input)).toThrow(TillError);
    }
    expect(() =>
      normalizeRateLimits(
        [
          { name: 'a', limit: 1, window: 1 },
          { name: 'a', limit: 2, window: 1 },
        ],
        'test',
      ),
    ).toThrow(/two rate limits/);
    expect(() => normalizeCredits({ remaining: -1 }, 'test', 0, 1)).toThrow(TillError);
    expect(() => normalizeCredits({ remaining: 5, refill: { amount: 0, interval: '1d' } }, 'test', 0, 1)).toThrow(TillError);
    expect(() => normalizeCredits({ remaining: 5, refill: { amount: 5, interval: '10ms' } }, 'test', 0, 1)).toThrow(TillError);
  });
});
