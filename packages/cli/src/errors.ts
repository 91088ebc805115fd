// Exit codes, the CLI's own error, and how any error becomes one line on stderr and a code.
import { findKeys, isTillError } from '@till/core';

/** What `till` exits with; documented in `till --help` and docs/cli.md. */
export const EXIT = {
  /** The command did what it was asked (or there was nothing to do). */
  OK: 0,
  /** Refused or failed: bad input, unknown key, not confirmed, a store error. Nothing was changed. */
  FAILED: 1,
  /** The command line is wrong: unknown command or option, missing argument, no Redis URL. */
  USAGE: 2,
  /** Redis could not be reached or stopped answering. */
  UNAVAILABLE: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An expected failure of a command: printed as `till: <message>`, never with a stack. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.FAILED,
  ) {
    super(message);
  }
}

export const usage = (message: string) => new CliError(message, EXIT.USAGE);
export const failed = (message: string) => new CliError(message, EXIT.FAILED);

/** Core messages read `[till] [keys] no key x`; on a terminal, `till: no key x` says the same. */
export function plainMessage(message: string): string {
  return message.replace(/^(?:\[[^\]]*\]\s*)+/, '');
}

/**
 * A change made on the primary that the replicas asked for (`--replicas`) did not confirm in time:
 * it is not undone, but a failover now could lose it. Exit code 1.
 */
export function notReplicated(what: string, error: unknown): CliError {
  const why = isTillError(error) ? plainMessage(error.message).replace(/^the change was made on the primary, but /, '') : String(error);
  return new CliError(
    `NOT_REPLICATED: ${what} was made on the primary but is not yet safe: ${why}. It is not undone; check it with \`till keys show\` once the replicas are back, and repeat it if a failover lost it`,
    EXIT.FAILED,
  );
}

/** The line to print and the code to exit with, for anything a command threw. */
export function describeError(error: unknown): { message: string; exitCode: ExitCode } {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (isTillError(error)) {
    if (error.code === 'STORE_UNAVAILABLE') {
      const why = plainMessage(error.message).replace(/^store unavailable:?\s*/, '');
      return { message: `Redis is unavailable${why ? ` (${why})` : ''}`, exitCode: EXIT.UNAVAILABLE };
    }
    if (error.code === 'NOT_REPLICATED') return describeError(notReplicated('the change', error));
    return { message: plainMessage(error.message), exitCode: EXIT.FAILED };
  }
  // A bug or something unforeseen: still one line; TILL_DEBUG=1 prints the stack.
  const message = error instanceof Error ? error.message : String(error);
  return { message: `unexpected error: ${message} (TILL_DEBUG=1 prints where)`, exitCode: EXIT.FAILED };
}

// Anything shaped like the start of a key: a prefix, an underscore and 17 or more base62
// characters (a 16-character id and the start of a secret). Messages echo inputs in part.
const KEY_START = /\b([a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9A-Za-z]{16})[0-9A-Za-z]+/g;

/** A message with any key, whole or cut short, reduced to its prefix and public id. */
export function redactKeys(message: string): string {
  return message.replace(KEY_START, '$1…');
}

/**
 * The id of the first full API key among the arguments, or null. No command takes a whole key:
 * one on the command line is a key in shell history and process lists.
 */
export function keyInArguments(argv: readonly string[]): string | null {
  for (const arg of argv) {
    // findKeys, as `till scan` does: it finds keys glued to text (`--name=prod_<key>`, `9sk_live_...`).
    const [found] = findKeys(arg);
    if (found !== undefined) return found.id;
  }
  return null;
}
