// The logger contract: Till never logs a key, a secret or a hash through it.
import { escapeText } from './text.js';

export interface Logger {
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Warnings and errors on the console, one line each: what they quote from outside (an error message,
 * a client's address) cannot start a new line, move the cursor or reverse the text.
 */
export const consoleLogger: Logger = {
  warn: (message) => console.warn(escapeText(message)),
  error: (message) => console.error(escapeText(message)),
};

export const silentLogger: Logger = { warn() {}, error() {} };
