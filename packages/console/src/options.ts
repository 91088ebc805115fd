// The console's options, checked when it is made: a bad option fails at start, never on a request.
import { isTill, type Till } from '@till/core';
import type { SecretScanningOptions } from './secret-scanning.js';

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
  /**
   * Answers GitHub's secret-scanning alerts at `<mount>/github/secret-scanning`, revoking the live keys
   * GitHub found in public code: `true` for GitHub's published keys, or options. Default off.
   */
  secretScanning?: boolean | SecretScanningOptions;
}

export function checkOptions(
  options: ConsoleOptions,
): Required<Omit<ConsoleOptions, 'till' | 'secretScanning'>> & { till: Till; secretScanning: SecretScanningOptions | null } {
  if (options === null || typeof options !== 'object' || !isTill(options.till))
    throw new TypeError('[till] [console] createConsole needs { till }, a Till made by createTill()');
  const poll = options.eventsPollInterval ?? 500;
  if (!Number.isInteger(poll) || poll < 10 || poll > 60_000)
    throw new TypeError('[till] [console] eventsPollInterval must be an integer of milliseconds from 10 to 60000');
  if (options.dashboard !== undefined && typeof options.dashboard !== 'boolean') throw new TypeError('[till] [console] dashboard must be true or false');
  const scanning = options.secretScanning;
  if (scanning !== undefined && typeof scanning !== 'boolean' && (scanning === null || typeof scanning !== 'object'))
    throw new TypeError('[till] [console] secretScanning must be true, false or an object of options');
  return {
    till: options.till,
    dashboard: options.dashboard ?? true,
    eventsPollInterval: poll,
    realm: options.realm ?? 'till-console',
    secretScanning: scanning === true ? {} : scanning === undefined || scanning === false ? null : scanning,
  };
}
