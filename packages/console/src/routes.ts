// What a route of the admin API is, shared by the console's core (which matches and guards them) and
// the files that define routes: the keys' routes in console.ts, identities' and roles' in directory.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isValidIdentityId, isValidRoleName, type VerifiedKey } from '@till/core';
import { keyId, type PreparsedBody } from './input.js';
import { badRequest } from './respond.js';

export interface Context {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly segments: readonly string[];
  readonly query: string;
  readonly key: VerifiedKey;
  readonly body: PreparsedBody | undefined;
}

export type Access = 'read' | 'admin';

export interface Route {
  readonly method: string;
  /** Path segments after `api`; a segment starting with `:` is a parameter of PARAMS (at most one). */
  readonly path: readonly string[];
  readonly access: Access;
  /** `param`: the path parameter, checked by its kind; '' when the route has none. */
  run(c: Context, param: string): Promise<void>;
}

/** An identity id from the path. */
function identityParam(segment: string): string {
  if (!isValidIdentityId(segment)) throw badRequest('The path does not name an identity id (1-64 letters, digits, "_", ".", "-", "@" or ":").');
  return segment;
}

/** A role name from the path. */
function roleParam(segment: string): string {
  if (!isValidRoleName(segment)) throw badRequest('The path does not name a role (1-64 characters of a-z 0-9 _ . -).');
  return segment;
}

/** Path parameters and their checks: a segment that is not one answers 400 before the route runs. */
export const PARAMS: Readonly<Record<string, (segment: string) => string>> = {
  ':id': keyId,
  ':identity': identityParam,
  ':role': roleParam,
};

/** What a route file gets from the console: who changes (audit), the body, a query that takes nothing. */
export interface RouteKit {
  change(c: Context, reason: string | undefined): { actor: string; reason?: string };
  body(c: Context): Promise<Record<string, unknown>>;
  noQuery(c: Context): void;
}
