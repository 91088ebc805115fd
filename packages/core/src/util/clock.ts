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
 * cached path: `Date.now()` costs 40-500 ns on a virtual machine's clock source, from a fifth of a
 * hand-written Map check to more than a whole cached verification. A reading is dropped by an unref'd
 * interval timer, kept while the clock is read and stopped at its first tick without a reading since the
 * one before (an idle process has none). A new timer per reading, as before, cost the request that
 * made it 3-10 µs every 5 ms in a server (a new timer list, libuv calls), about 0.4 µs per request at
 * 6,000 requests/s; an interval's tick runs in the event loop's timer phase, not in a request. Between
 * two ticks the event loop may be held up by an app's synchronous code; the use count bounds what a
 * reading serves then. So a cached verification judges expiry and the cache's TTL against a clock at
 * most a few ms behind (docs/decisions.md, "A coarse clock on the cached path").
 */
export function coarseClock(read: Clock = systemClock, resolution = COARSE_CLOCK_RESOLUTION, uses = COARSE_CLOCK_USES): Clock {
  let now = 0;
  let left = 0;
  /** Whether the system clock was read since the last tick. */
  let readSinceTick = false;
  let ticker: ReturnType<typeof setInterval> | null = null;
  // Runs only while `ticker` is set: it is cleared here, and nowhere else.
  const tick = (): void => {
    left = 0;
    if (!readSinceTick) {
      clearInterval(ticker!);
      ticker = null;
    }
    readSinceTick = false;
  };
  return () => {
    if (left > 0) {
      left--;
      return now;
    }
    now = read();
    left = uses - 1;
    readSinceTick = true;
    if (ticker === null) {
      ticker = setInterval(tick, resolution);
      ticker.unref();
    }
    return now;
  };
}
