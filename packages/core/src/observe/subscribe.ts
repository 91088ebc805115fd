// Till's own subscribers (metrics, tracing): each hears one Till's messages and never throws into the
// publisher, where Node would rethrow it as an uncaught exception and take the process down.
import { tillMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';

export function subscriberOf<M extends { readonly till: string }>(
  till: string,
  logger: Pick<Logger, 'error'>,
  where: string,
  hear: (message: M) => void,
): (message: unknown) => void {
  return (message) => {
    if ((message as M).till !== till) return;
    try {
      hear(message as M);
    } catch (error) {
      logger.error(tillMessage(where, `a subscriber to Till's diagnostics channels failed: ${error instanceof Error ? error.message : String(error)}`));
    }
  };
}
