// Signing in to the console: Till's adapter kit over Node's request, the key it verified and the
// client address the mount read from its framework.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { keyStatus, type Till } from '@till/core';
import { createAdapter, type KeyHolder } from '@till/core/http';
import { ADMIN_SCOPE, READ_SCOPE } from './options.js';

export const holders = new WeakMap<IncomingMessage, KeyHolder>();
/** Client addresses the mounts read from their framework (Express `req.ip`, Koa `ctx.ip`, Fastify `request.ip`). */
export const clients = new WeakMap<IncomingMessage, string>();

export const kit = createAdapter<IncomingMessage, ServerResponse, never>({
  name: 'console',
  node: (req) => req,
  // As the mount read it from its framework (its trust-proxy setting), else the peer address.
  ip: (req) => clients.get(req) ?? req.socket.remoteAddress,
  getHeader: (res, name) => res.getHeader(name),
  setHeader: (res, name, value) => void res.setHeader(name, value),
  holder: (req) => {
    let holder = holders.get(req);
    if (holder === undefined) holders.set(req, (holder = {}));
    return holder;
  },
});

/** Whether grants (`*`, `till:*`, `till:admin`) hold a scope; asked without a guard, which would audit a refusal. */
export function grants(scopes: readonly string[], scope: string): boolean {
  return scopes.some((g) => g === scope || g === '*' || (g.endsWith(':*') && scope.startsWith(g.slice(0, -1))));
}

/**
 * Whether a signed-in key may still read, for a stream that outlives its sign-in: the record read, not
 * the key verified (a verification every poll would count as the key's use and charge its limits).
 */
export async function mayStillRead(till: Till, id: string): Promise<boolean> {
  const info = await till.keys.get(id);
  return info !== null && keyStatus(info, till.verifier.clock()) === 'active' && (grants(info.scopes, READ_SCOPE) || grants(info.scopes, ADMIN_SCOPE));
}
