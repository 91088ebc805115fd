// Time is injected so tests can step it instead of patching globals.

/** Returns the current time in milliseconds since the epoch. */
export type Clock = () => number;

export const systemClock: Clock = Date.now;

/** How long a coarse clock's reading is used, in ms, at most (see coarseClock). */
export const COARSE_CLOCK_RESOLUTION = 5;
/** How many times a coarse clock's reading is used, at most, before it is read again. */
export const COARSE_CLOCK_USES = 256;

/**
 * The system clock read at most once per `resolution` ms and per `uses` calls, for the verifier's
 * cached path: `Date.now()` costs 40-60 ns on a virtual machine's clock source, a fifth of a whole
 * hand-written Map check. A reading is dropped by an unref'd timer, set only while the clock is read (an
 * idle process has none), the way lru-cache's `ttlResolution` does it. Between two of its timers the
 * event loop may be held up by an app's synchronous code; the use count bounds what a reading serves
 * then. So a cached verification judges expiry and the cache's TTL against a clock at most a few ms
 * behind (docs/decisions.md, "A coarse clock on the cached path").
 */
export function coarseClock(read: Clock = systemClock, resolution = COARSE_CLOCK_RESOLUTION, uses = COARSE_CLOCK_USES): Clock {
  let now = 0;
  let left = 0;
  let timer = false;
  const drop = (): void => {
    timer = false;
    left = 0;
  };
  return () => {
    if (left > 0) {
      left--;
      return now;
    }
    now = read();
    left = uses - 1;
    if (!timer) {
      timer = true;
      setTimeout(drop, resolution).unref();
    }
    return now;
  };
}
