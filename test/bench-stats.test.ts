// The benchmarks' statistics: ratios against a baseline of the same rounds, and decisions that pass or
// fail a target only when the median's interval says so.
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript without declarations, run by node in `pnpm bench`
import { allOf, compare, distribution, median, medianInterval, quartiles, roundRatios, verdict } from '../bench/stats.mjs';

/** P(the k-th smallest <= median <= the k-th largest) for n values, by brute force over 2^n sign patterns. */
function coverageByCounting(n: number, k: number): number {
  let inside = 0;
  for (let mask = 0; mask < 1 << n; mask++) {
    let below = 0;
    for (let i = 0; i < n; i++) if (mask & (1 << i)) below++;
    // The interval misses the median when fewer than k values fall below it, or fewer than k above.
    if (below >= k && n - below >= k) inside++;
  }
  return inside / (1 << n);
}

describe('medianInterval', () => {
  it('takes the narrowest order statistics that still cover 90%', () => {
    const rounds = (n: number) => Array.from({ length: n }, (_, i) => n - i); // unsorted on purpose
    expect(medianInterval(rounds(8))).toEqual({ low: 2, high: 7, coverage: coverageByCounting(8, 2) });
    expect(medianInterval(rounds(12))).toEqual({ low: 3, high: 10, coverage: coverageByCounting(12, 3) });
    expect(medianInterval(rounds(5))).toEqual({ low: 1, high: 5, coverage: coverageByCounting(5, 1) });
    for (const n of [5, 6, 8, 10, 12, 16]) {
      const { low, coverage } = medianInterval(rounds(n));
      expect(coverage).toBeGreaterThanOrEqual(0.9);
      // One step narrower would fall below 90%.
      if (2 * (low + 1) <= n) expect(coverageByCounting(n, low + 1)).toBeLessThan(0.9);
    }
  });

  it('has no interval for too few rounds', () => {
    expect(medianInterval([1, 2, 3, 4])).toBeNull();
    expect(medianInterval([])).toBeNull();
  });
});

describe('verdict', () => {
  const spread = [0.715, 0.776, 0.87, 0.929, 1.002, 1.037, 1.054, 1.069, 1.078, 1.09, 1.251, 1.384];

  it('does not decide when the target lies inside the interval, whatever the median', () => {
    expect(verdict(spread, { atLeast: 0.95 }).verdict).toBe('NOT DECIDED');
  });

  it('passes and fails only on the whole interval', () => {
    expect(verdict([0.96, 0.97, 0.98, 0.99, 1, 1.01, 1.02, 1.5], { atLeast: 0.95 }).verdict).toBe('PASS');
    // A median above the target does not pass when a round inside the interval is below it.
    expect(verdict([0.5, 0.94, 0.96, 0.97, 0.98, 0.99, 1, 1.01], { atLeast: 0.95 }).verdict).toBe('NOT DECIDED');
    expect(verdict([0.9, 0.91, 0.92, 0.92, 0.93, 0.93, 0.94, 1.2], { atLeast: 0.95 }).verdict).toBe('FAIL');
    // "above" is strict: a tie is not ahead.
    expect(verdict([1, 1, 1, 1, 1, 1, 1, 1], { above: 1 }).verdict).toBe('FAIL');
    expect(verdict([1, 1, 1, 1, 1, 1, 1, 1], { atLeast: 1 }).verdict).toBe('PASS');
  });

  it('does not decide with too few rounds', () => {
    expect(verdict([2, 2, 2], { atLeast: 1 })).toMatchObject({ verdict: 'NOT DECIDED', interval: null });
  });

  it('combines verdicts: one failure fails, all passes pass', () => {
    const v = (verdict: string) => ({ verdict });
    expect(allOf([v('PASS'), v('FAIL'), v('NOT DECIDED')])).toBe('FAIL');
    expect(allOf([v('PASS'), v('NOT DECIDED')])).toBe('NOT DECIDED');
    expect(allOf([v('PASS'), v('PASS')])).toBe('PASS');
  });
});

describe('ratios against a baseline of the same rounds', () => {
  // Each round measures every variant twice (in a random order, then in reverse): both runs count.
  const run = (round: number, rps: number) => ({ round, rps });

  it('adds up the runs of a round before dividing, so a round compares the same stretch of time', () => {
    const till = [run(0, 90), run(0, 110), run(1, 40), run(1, 50)];
    const bare = [run(0, 100), run(0, 100), run(1, 60), run(1, 40)];
    expect(roundRatios(till, bare)).toEqual([1, 0.9]);
    // A drift of the machine between rounds moves both alike: the ratios stay, the medians of requests/s do not.
    expect(roundRatios(till, bare, (r: { rps: number }) => r.rps * 1000)).toEqual([1, 0.9]);
  });

  it('compares a variant with its median ratio, middle half and verdict', () => {
    const bare = Array.from({ length: 8 }, (_, round) => run(round, 1000 * (round + 1))); // the machine speeds up
    const factors = [0.96, 0.97, 0.98, 0.99, 1, 1.01, 1.02, 1.5];
    const till = bare.map((r, i) => run(r.round, r.rps * (factors[i] ?? 1)));
    const c = compare(till, bare, { atLeast: 0.95 });
    expect(c.ratio).toBeCloseTo(0.995, 10);
    expect(c.roundRatios).toHaveLength(8);
    expect(c.quartiles[0]).toBeCloseTo(0.9775, 10);
    expect(c.quartiles[1]).toBeCloseTo(1.0125, 10);
    expect(c.decision.verdict).toBe('PASS');
    expect(compare(till, bare).decision).toBeNull();
  });

  it('takes medians and quartiles of unsorted values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(quartiles([5, 1, 4, 2, 3])).toEqual([2, 4]);
  });

  it('reports a latency distribution by nearest rank', () => {
    const d = distribution(Array.from({ length: 100 }, (_, i) => 100 - i));
    expect(d).toMatchObject({ count: 100, min: 1, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
  });
});
