// The admin API's identities and roles: who owns keys (with limits and credits all of their keys
// share) and the named scope bundles keys and identities hold. The same conventions as the keys'
// routes: every field and query parameter checked here, unknown ones refused, and every change made
// as `console:<acting key id>` with the reason the request gives.
import type { CreateIdentityInput, IdentityPatch, Till } from '@till/core';
import { credits, limits, objectField, onlyFields, Query, reasonOf, strings, text } from './input.js';
import { badRequest, notFound, sendJson } from './respond.js';
import type { Route, RouteKit } from './routes.js';

type Json = Record<string, unknown>;

const IDENTITY_FIELDS = ['name', 'metadata', 'limits', 'credits', 'allowedIps', 'roles'];

/** The fields an identity is created or updated with, each checked for its type; core checks the rest. */
function identityFields(body: Json): IdentityPatch {
  const out: IdentityPatch = {};
  if (body.name !== undefined) out.name = text(body.name, 'name');
  if (body.metadata !== undefined) out.metadata = objectField(body.metadata, 'metadata');
  if (body.limits !== undefined) out.limits = limits(body.limits) ?? [];
  if (body.credits !== undefined) out.credits = credits(body.credits) ?? null;
  if (body.allowedIps !== undefined) out.allowedIps = strings(body.allowedIps, 'allowedIps');
  if (body.roles !== undefined) out.roles = strings(body.roles, 'roles');
  return out;
}

export function createIdentityInput(body: Json): CreateIdentityInput {
  onlyFields(body, ['id', ...IDENTITY_FIELDS, 'reason'], 'Creating an identity');
  const fields = identityFields(body);
  return { ...fields, name: text(body.name, 'name'), ...(body.id !== undefined && { id: text(body.id, 'id', 64) }) };
}

export function identityPatchInput(body: Json): IdentityPatch {
  onlyFields(body, [...IDENTITY_FIELDS, 'reason'], 'Updating an identity');
  const patch = identityFields(body);
  if (Object.keys(patch).length === 0) throw badRequest(`An update changes at least one of: ${IDENTITY_FIELDS.join(', ')}.`);
  return patch;
}

/** A deletion's `force` and `reason`. */
function deleteInput(body: Json, what: string): { force: boolean; reason?: string } {
  onlyFields(body, ['force', 'reason'], what);
  if (body.force !== undefined && typeof body.force !== 'boolean') throw badRequest('force must be true or false.');
  const reason = reasonOf(body);
  return { force: body.force === true, ...(reason !== undefined && { reason }) };
}

export function directoryRoutes(till: Till, { change, body, noQuery }: RouteKit): Route[] {
  const { identities, roles } = till;
  return [
    {
      method: 'GET',
      path: ['identities'],
      access: 'read',
      async run(c) {
        const q = new Query(c.query, ['limit', 'cursor']);
        const limit = q.int('limit', 1, 200) ?? 50;
        const cursor = q.text('cursor', 400);
        const page = await identities.list({ limit, ...(cursor !== undefined && { cursor }) });
        sendJson(c.res, 200, { identities: page.identities, ...(page.cursor !== undefined && { cursor: page.cursor }) });
      },
    },
    {
      method: 'POST',
      path: ['identities'],
      access: 'admin',
      async run(c) {
        noQuery(c);
        const b = await body(c);
        const input = createIdentityInput(b);
        sendJson(c.res, 201, await identities.create(input, change(c, reasonOf(b))));
      },
    },
    {
      method: 'GET',
      path: ['identities', ':identity'],
      access: 'read',
      async run(c, id) {
        noQuery(c);
        const identity = await identities.get(id);
        if (identity === null) throw notFound(`No identity ${id}.`);
        const [keyCount, creditsLeft] = await Promise.all([identities.keyCount(id), identity.credits === null ? null : identities.credits(id)]);
        sendJson(c.res, 200, { ...identity, keyCount, creditsLeft });
      },
    },
    {
      method: 'PATCH',
      path: ['identities', ':identity'],
      access: 'admin',
      async run(c, id) {
        noQuery(c);
        const b = await body(c);
        const patch = identityPatchInput(b);
        sendJson(c.res, 200, await identities.update(id, patch, change(c, reasonOf(b))));
      },
    },
    {
      method: 'DELETE',
      path: ['identities', ':identity'],
      access: 'admin',
      async run(c, id) {
        noQuery(c);
        const { force, reason } = deleteInput(await body(c), 'Deleting an identity');
        const deleted = await identities.delete(id, { ...change(c, reason), force });
        sendJson(c.res, 200, { deleted: deleted.identity, keys: deleted.keys });
      },
    },
    {
      method: 'GET',
      path: ['roles'],
      access: 'read',
      async run(c) {
        noQuery(c);
        sendJson(c.res, 200, { roles: await roles.list() });
      },
    },
    {
      method: 'GET',
      path: ['roles', ':role'],
      access: 'read',
      async run(c, name) {
        noQuery(c);
        const role = await roles.get(name);
        if (role === null) throw notFound(`No role ${name}.`);
        const [keys, held] = await Promise.all([roles.holders(name), roles.identityHolders(name)]);
        sendJson(c.res, 200, { ...role, holders: { keys, identities: held } });
      },
    },
    {
      method: 'PUT',
      path: ['roles', ':role'],
      access: 'admin',
      async run(c, name) {
        noQuery(c);
        const b = await body(c);
        onlyFields(b, ['scopes', 'reason'], 'Defining a role');
        const scopes = strings(b.scopes, 'scopes');
        const existed = (await roles.get(name)) !== null;
        sendJson(c.res, existed ? 200 : 201, await roles.define(name, scopes, change(c, reasonOf(b))));
      },
    },
    {
      method: 'DELETE',
      path: ['roles', ':role'],
      access: 'admin',
      async run(c, name) {
        noQuery(c);
        const { force, reason } = deleteInput(await body(c), 'Deleting a role');
        const deleted = await roles.delete(name, { ...change(c, reason), force });
        sendJson(c.res, 200, { deleted: deleted.role, keys: deleted.keys });
      },
    },
  ];
}
