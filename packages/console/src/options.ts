// The console's options, checked when it is made: a bad option fails at start, never on a request.
import { isTill, type Till } from '@till/core';

/** The scope that may change keys through the console. */
export const ADMIN_SCOPE = 'till:admin';
/** The scope that may only look. */
export const READ_SCOPE = 'till:read';

export interface ConsoleOptions {
  /** The Till whose keys the console manages, and whose keys sign in to it. */
  till: Till;
  /** Serve the dashboard's files beside the API. Default true. */
  dashboard?: boolean;
  /** How often the events stream reads the trail, in ms. Default 500. */
  eventsPollInterval?: number;
  /** `realm` of the console's `WWW-Authenticate` challenges. Default `till-console`. */
  realm?: string;
}

export function checkOptions(options: ConsoleOptions): Required<Omit<ConsoleOptions, 'till'>> & { till: Till } {
  if (options === null || typeof options !== 'object' || !isTill(options.till))
    throw new TypeError('[till] [console] createConsole needs { till }, a Till made by createTill()');
  const poll = options.eventsPollInterval ?? 500;
  if (!Number.isInteger(poll) || poll < 10 || poll > 60_000)
    throw new TypeError('[till] [console] eventsPollInterval must be an integer of milliseconds from 10 to 60000');
  if (options.dashboard !== undefined && typeof options.dashboard !== 'boolean') throw new TypeError('[till] [console] dashboard must be true or false');
  return { till: options.till, dashboard: options.dashboard ?? true, eventsPollInterval: poll, realm: options.realm ?? 'till-console' };
}
