// What Till knows of one request between its middlewares: the Till that saw it, the key it verified,
// the app's refusal responder, and the charges to undo when a later guard refuses the request.
import type { VerifiedKey } from '../verify/outcome.js';
import type { Till } from '../till.js';

export interface RequestContext {
  /** The Till of the `apiKeyAuth()` that saw the request: later guards count and record in it. */
  readonly till: Till;
  /**
   * The key that Till verified for this request. Guards read it here, never from `req.apiKey`,
   * which any code (a body merged into the request, say) could have set.
   */
  key: VerifiedKey | undefined;
  /** The adapter's responder of that `apiKeyAuth()` (its onFailure and realm); null for the default. */
  respond: unknown;
  /** Undo functions of the charges made for this request (limits, credits); null when none. */
  charges: Array<() => Promise<void>> | null;
}

/** Keyed by Node's request object (Express's `req`, Koa's `ctx.req`), which every framework shares. */
const contexts = new WeakMap<object, RequestContext>();

/** The context of a request that an `apiKeyAuth()` has seen, if any. */
export function contextOf(req: object): RequestContext | undefined {
  return contexts.get(req);
}

/**
 * Opens the context of a request for an `apiKeyAuth()`. A request that passes two of them (mounted
 * on the app and on a router) keeps the first one's charges, so a refusal undoes them all.
 */
export function openContext(req: object, till: Till, respond: unknown): RequestContext {
  const before = contexts.get(req);
  const context: RequestContext = { till, key: undefined, respond, charges: before?.charges ?? null };
  contexts.set(req, context);
  return context;
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
