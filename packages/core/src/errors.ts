// The one error class of Till: for broken configuration, store failures and bugs, never for a bad key.

export type TillErrorCode =
  | 'INVALID_OPTIONS'
  | 'INVALID_ARGUMENT'
  | 'KEY_EXISTS'
  | 'KEY_NOT_FOUND'
  | 'CONFLICT'
  | 'KEY_REVOKED'
  | 'KEY_ROTATED'
  | 'KEY_DISABLED'
  | 'STORE_UNAVAILABLE'
  | 'STORE_ERROR'
  | 'NOT_REPLICATED'
  | 'NOT_ANNOUNCED'
  | 'MISSING_DEPENDENCY'
  | 'ROLE_NOT_FOUND'
  | 'ROLE_IN_USE'
  | 'IDENTITY_EXISTS'
  | 'IDENTITY_NOT_FOUND'
  | 'IDENTITY_IN_USE';

const BRAND = Symbol.for('till.error');

export class TillError extends Error {
  override readonly name = 'TillError';
  readonly code: TillErrorCode;

  constructor(code: TillErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }

  // The CommonJS build gives each entry its own copy of this class: `instanceof` goes by brand.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

export function isTillError(value: unknown, code?: TillErrorCode): value is TillError {
  return value instanceof TillError && (code === undefined || value.code === code);
}

/** How every Till message opens: `[till] [where] what happened`, so a log line says which part spoke. */
export function tillMessage(where: string, message: string): string {
  return `[till] [${where}] ${message}`;
}

/**
 * The one way Till builds an error: a stable code (catalogued in docs/errors.md), the part that raised
 * it (`keys`, `redis`, `express`, ...) and a message that says what to do. Never put a key in it.
 */
export function tillError(code: TillErrorCode, where: string, message: string, options?: { cause?: unknown }): TillError {
  return new TillError(code, tillMessage(where, message), options);
}

/** The store could not be reached or did not answer in time. */
export function storeUnavailable(part: string, cause?: unknown): TillError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return tillError('STORE_UNAVAILABLE', part, `store unavailable${why}`, { cause });
}
