// Option checks shared by the authenticator, the route guards and the adapters: all at creation, never per request.
import { tillError } from '../errors.js';
import { isValidCost } from '../limits/rules.js';
import { isTill, type Till } from '../till.js';
import { RATE_LIMIT_HEADER_STYLES, type RateLimitHeaderStyle } from './problem.js';

/** Rejects anything that is not a plain object of known options: a typo must not silently weaken auth. */
export function checkOptionNames(options: unknown, allowed: readonly string[], where: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw tillError('INVALID_OPTIONS', where, `options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw tillError('INVALID_OPTIONS', where, `unknown option "${name}"; known options: ${allowed.join(', ')}`);
    }
  }
  return options as Record<string, unknown>;
}

/** The `onFailure` option of an adapter's middleware: a function or absent. Checked before anything else is made. */
export function checkOnFailure<Handler>(options: unknown, where: string): Handler | undefined {
  const onFailure = options !== null && typeof options === 'object' ? (options as { onFailure?: unknown }).onFailure : undefined;
  if (onFailure !== undefined && typeof onFailure !== 'function') throw tillError('INVALID_OPTIONS', where, 'onFailure must be a function');
  return onFailure as Handler | undefined;
}

export function checkTill(till: unknown, where: string): Till | undefined {
  if (till !== undefined && !isTill(till)) throw tillError('INVALID_OPTIONS', where, `till must be an instance from createTill()`);
  return till;
}

export function checkHeaderStyle(style: unknown, where: string): RateLimitHeaderStyle {
  if (style === undefined) return 'draft-11';
  if (!RATE_LIMIT_HEADER_STYLES.includes(style as RateLimitHeaderStyle)) {
    throw tillError('INVALID_OPTIONS', where, `rateLimitHeaders must be "draft-11", "draft-6" or false`);
  }
  return style as RateLimitHeaderStyle;
}

/** A cost as a number, or as a function of the request whose every answer is checked. */
export function checkCost<Req>(cost: unknown, where: string): ((req: Req) => number) | number {
  if (cost === undefined) return 1;
  if (typeof cost === 'function') {
    return (req: Req) => {
      const n = (cost as (req: Req) => unknown)(req);
      if (!isValidCost(n))
        throw tillError('INVALID_ARGUMENT', where, `the cost function returned ${String(n).slice(0, 20)}; it must return a non-negative integer`);
      return n;
    };
  }
  if (!isValidCost(cost)) throw tillError('INVALID_OPTIONS', where, `cost must be a non-negative integer or a function of the request`);
  return cost;
}
