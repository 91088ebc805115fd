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
  readonly key: VerifiedKey | undefined;
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
  static open(req: object, till: Till, answer: Answer | null, key: VerifiedKey | undefined): RequestContext {
    if (#context in req) {
      const slot = req as ContextSlot;
      const context: RequestContext = { till, key, answer, charges: slot.#context.charges };
      slot.#context = context;
      return context;
    }
    const context: RequestContext = { till, key, answer, charges: null };
    new ContextSlot(req, context);
    return context;
  }
}

/**
 * What an `apiKeyAuth()` shares with every other `apiKeyAuth()` on its Till that answers refusals the
 * same way: the Till and the answer. A verified key the middleware hands to the app is mapped to it
 * (keyAnswers), so that a request whose key was verified without a charge needs no context of its own.
 */
export interface SharedAnswer {
  readonly till: Till;
  readonly answer: Answer;
  /** Set once two middlewares on the Till answer differently: a request then carries which one saw it. */
  mixed: boolean;
}

const sharedAnswers = new WeakMap<Till, SharedAnswer>();
/**
 * Keys verified by an `apiKeyAuth()` (the verifier's own objects, one per cached key, never a copy)
 * and the Till and answer of the middleware that verified them. Only Till makes these objects, so a
 * value that other code put in `req.apiKey` (a request body merged into the request, say) is never
 * found here. It spares a request a property of its own: Express gives each request object a hidden
 * class of its own (it sets the prototype of every request), where adding a property costs over a
 * microsecond, several times what the whole verification of a cached key does.
 */
const keyAnswers = new WeakMap<object, SharedAnswer>();

/** The shared answer of a middleware on `till` answering as `answer` (equal answers share one). */
export function sharedAnswer(till: Till, answer: Answer): SharedAnswer {
  const known = sharedAnswers.get(till);
  if (known === undefined) {
    const shared: SharedAnswer = { till, answer, mixed: false };
    sharedAnswers.set(till, shared);
    return shared;
  }
  const same =
    known.answer.onFailure === answer.onFailure &&
    known.answer.problem.realm === answer.problem.realm &&
    known.answer.problem.rateLimitHeaders === answer.problem.rateLimitHeaders;
  if (same) return known;
  known.mixed = true;
  return { till, answer, mixed: true };
}

/** Maps a verified key to the middleware that verified it (see keyAnswers); the same key, next time, costs one comparison. */
export function markVerified(key: VerifiedKey, shared: SharedAnswer): void {
  if (keyAnswers.get(key) !== shared) keyAnswers.set(key, shared);
}

/** Whether a request has a context of its own (see openContext). */
export function hasContext(req: object): boolean {
  return ContextSlot.get(req) !== undefined;
}

/**
 * The context of a request that an `apiKeyAuth()` (or a charging route guard) has seen, if any: its own
 * (made when the request was charged, or let through without a key), else the one of the key in
 * `apiKey` (the request's `req.apiKey`, `ctx.state.apiKey`) when an `apiKeyAuth()` verified that very
 * key object. A value there that Till did not verify gives no context: guards refuse the request, also
 * when it replaced the key of a request with a context of its own.
 */
export function contextOf(req: object, apiKey?: unknown): RequestContext | undefined {
  const own = ContextSlot.get(req);
  // A request with a context of its own is judged the same way as one without: a key put in its place
  // after apiKeyAuth() gives no context, whichever kind of request it is (the guards refuse it).
  if (own !== undefined && own.key !== undefined) {
    if (apiKey === own.key) return own;
    // Replaced after apiKeyAuth(): the request keeps its Till, its answer and its charges (given back
    // when a guard refuses it), not its key.
    return ContextSlot.open(req, own.till, own.answer, undefined);
  }
  const shared = typeof apiKey === 'object' && apiKey !== null ? keyAnswers.get(apiKey) : undefined;
  // A context an apiKeyAuth() opened for a request it let through without a key stays without one.
  if (shared === undefined || (own !== undefined && own.answer !== null)) return own;
  if (own === undefined) return { till: shared.till, key: apiKey as VerifiedKey, answer: shared.answer, charges: null };
  // A context opened before the key was verified (a guard by IP charged first): it now has the key.
  return ContextSlot.open(req, shared.till, shared.answer, apiKey as VerifiedKey);
}

/**
 * Opens the context of a request. A request that passes two `apiKeyAuth()` (mounted on the app and on
 * a router) keeps the first one's charges, so a refusal undoes them all.
 */
export function openContext(req: object, till: Till, answer: Answer | null, key?: VerifiedKey): RequestContext {
  return ContextSlot.open(req, till, answer, key);
}

/**
 * The request's own context, to remember a charge in: `state` itself when it is the request's, else one
 * opened with its Till, answer and key (a context found through the key is shared by every request with
 * that key, and must never hold one request's charges).
 */
export function contextToCharge(req: object, state: RequestContext | undefined, till: Till): RequestContext {
  if (state !== undefined && ContextSlot.get(req) === state) return state;
  return ContextSlot.open(req, state?.till ?? till, state?.answer ?? null, state?.key);
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
