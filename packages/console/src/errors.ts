// What a key manager's error means to an HTTP client. TillError codes are stable (docs/errors.md), so
// each maps to one status; anything else is the console's own fault and answers 500 without detail.
import { isTillError, type TillErrorCode } from '@till/core';
import { ConsoleProblem } from './respond.js';

const STATUS: Readonly<Record<TillErrorCode, readonly [number, string]>> = {
  INVALID_ARGUMENT: [400, 'Bad request'],
  INVALID_OPTIONS: [400, 'Bad request'],
  KEY_NOT_FOUND: [404, 'Not found'],
  KEY_EXISTS: [409, 'Conflict'],
  CONFLICT: [409, 'Conflict'],
  KEY_REVOKED: [409, 'Key revoked'],
  KEY_ROTATED: [409, 'Key rotated'],
  KEY_DISABLED: [409, 'Key disabled'],
  STORE_UNAVAILABLE: [503, 'Service unavailable'],
  STORE_ERROR: [503, 'Service unavailable'],
  NOT_REPLICATED: [503, 'Change not confirmed'],
  NOT_ANNOUNCED: [503, 'Change not announced'],
  MISSING_DEPENDENCY: [500, 'Server error'],
  ROLE_NOT_FOUND: [404, 'Not found'],
  ROLE_IN_USE: [409, 'Role in use'],
  IDENTITY_EXISTS: [409, 'Conflict'],
  IDENTITY_NOT_FOUND: [404, 'Not found'],
  IDENTITY_IN_USE: [409, 'Identity in use'],
};

/** Strips Till's `[till] [where] ` opening: the client reads what happened, not which part said it. */
const plain = (message: string): string => message.replace(/^(?:\[[^\]]*\]\s*)+/, '');

/** The problem a key manager error answers with, or null when it is no TillError (a bug: 500). */
export function problemOf(error: unknown): ConsoleProblem | null {
  if (error instanceof ConsoleProblem) return error;
  if (!isTillError(error)) return null;
  const [status, title] = STATUS[error.code] ?? [500, 'Server error'];
  const headers: Record<string, string> = status === 503 ? { 'retry-after': '2' } : {};
  return new ConsoleProblem(status, error.code, title, plain(error.message).slice(0, 500), headers);
}

/**
 * A refusal for an identity that a key's body names and that does not exist: bad input (400), not a
 * missing target (404, which says the URL names nothing). The code stays IDENTITY_NOT_FOUND.
 */
export function namedInBody(error: unknown): never {
  if (isTillError(error, 'IDENTITY_NOT_FOUND')) throw new ConsoleProblem(400, error.code, 'Bad request', plain(error.message).slice(0, 500));
  throw error;
}
