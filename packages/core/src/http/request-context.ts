// What Till's HTTP side knows between middlewares, in one place: per request, the Till that saw it, the
// key it verified, how its refusals are answered and the charges to undo; per Till, the limit names in use.
import { tillError } from '../errors.js';
import type { Till } from '../till.js';
import type { Logger } from '../util/logger.js';
import type { VerifiedKey } from '../verify/outcome.js';
import type { ProblemOptions } from './problem.js';

/** How the refusals of a request are answered: as the `apiKeyAuth()` that saw it was told to. */
export interface Answer {
  /** That middleware's `onFailure` (its type is the adapter's); undefined for the default response. */
  readonly onFailure: unknown;
  /** Its realm and rate-limit header style. */
  readonly problem: ProblemOptions;
  /** Its Till's logger, where a handler's misuse is said. */
  readonly logger: Logger;
}

export interface RequestContext {
  /** The Till of the `apiKeyAuth()` that saw the request: later guards count and record in it. */
  readonly till: Till;
  /**
   * The key that Till verified for this request. Guards read it here, never from `req.apiKey`,
   * which any code (a body merged into the request, say) could have set.
   */
  key: VerifiedKey | undefined;
  /** How refusals are answered; null when no `apiKeyAuth()` saw the request (the default response). */
  readonly answer: Answer | null;
  /** Undo functions of the charges made for this request (limits, credits); null when none. */
  charges: Array<() => Promise<void>> | null;
}

/** A base class whose constructor returns the object it is given: a subclass then adds its private fields to that object. */
class Stamp {
  constructor(target: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the point of the class (see ContextSlot)
    return target;
  }
}

/**
 * Where a request's context lives: a private field of the request object itself, which nothing outside
 * this class can read, write or forge (not a property: neither `req.apiKey`-style assignment nor
 * Object.getOwnPropertySymbols reaches it, and util.inspect does not show it). A WeakMap keyed by the
 * request did the same at several times the cost: an ephemeron insert per request, and weak-map work
 * for the garbage collector on each.
 */
class ContextSlot extends Stamp {
  #context: RequestContext;

  private constructor(target: object, context: RequestContext) {
    super(target);
    this.#context = context;
  }

  static get(req: object): RequestContext | undefined {
    return #context in req ? (req as ContextSlot).#context : undefined;
  }

  /** A new context on `req`, keeping the charges of the one there already (one lookup of the field, not two). */
  static open(req: object, till: Till, answer: Answer | null): RequestContext {
    if (#context in req) {
      const slot = req as ContextSlot;
      const context: RequestContext = { till, key: undefined, answer, charges: slot.#context.charges };
      slot.#context = context;
      return context;
    }
    const context: RequestContext = { till, key: undefined, answer, charges: null };
    new ContextSlot(req, context);
    return context;
  }
}

/** The context of a request that an `apiKeyAuth()` (or a charging route guard) has seen, if any. */
export function contextOf(req: object): RequestContext | undefined {
  return ContextSlot.get(req);
}

/**
 * Opens the context of a request. A request that passes two `apiKeyAuth()` (mounted on the app and on
 * a router) keeps the first one's charges, so a refusal undoes them all.
 */
export function openContext(req: object, till: Till, answer: Answer | null): RequestContext {
  return ContextSlot.open(req, till, answer);
}

/** Remembers how to undo a charge made for this request. */
export function addCharge(context: RequestContext, undo: () => Promise<void>): void {
  (context.charges ??= []).push(undo);
}

/**
 * Undoes every charge made for a request that a guard then refused: a refused request spends no
 * credit and no rate-limit unit. Resolves once the store has them back (never rejects).
 */
export function refundCharges(context: RequestContext | undefined): Promise<void> | null {
  const charges = context?.charges;
  if (!charges || charges.length === 0) return null;
  context!.charges = null;
  return Promise.all(charges.map((undo) => undo().catch(() => {}))).then(() => {});
}

/** Per Till: the limit buckets that middlewares count in (kept beside the Till, not on it: Till's type stays the app's). */
const limitNames = new WeakMap<Till, Set<string>>();

/** Takes a limit bucket on a Till: two guards with one name would share (and double-count) a bucket. */
export function claimLimitName(till: Till, bucket: string, where: string, what: string): void {
  let names = limitNames.get(till);
  if (names === undefined) limitNames.set(till, (names = new Set()));
  if (names.has(bucket)) {
    throw tillError(
      'INVALID_OPTIONS',
      where,
      `${what} is already used by another middleware on this Till: the two would count in one bucket. Give each a distinct name, or create the middleware once and mount it on several routes`,
    );
  }
  names.add(bucket);
}
