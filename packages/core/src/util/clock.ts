// Time is injected so tests can step it instead of patching globals.

/** Returns the current time in milliseconds since the epoch. */
export type Clock = () => number;

export const systemClock: Clock = Date.now;
