// The console's framework-neutral core: one handler over Node's request and response that answers the
// admin API under `/api` and serves the dashboard's files. The Express, Koa and Fastify mounts only
// hand it the request, the path below the mount point and any body the app already parsed.
//
// Authentication and scopes go through Till's own adapter kit, like any route of the app: the key is
// read from `Authorization: Bearer` or `X-API-Key` (never a cookie, so a page of another site cannot
// make the browser send it: no CSRF by construction), refusals are the usual problem+json answers,
// are audited and count toward blocking a client that guesses keys.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clients, grants, holders, kit, mayStillRead } from './auth.js';
import { ADMIN_SCOPE, checkOptions, type ConsoleOptions, READ_SCOPE } from './options.js';
import { namedInBody, problemOf } from './errors.js';
import { eventsFilter, EVENTS_QUERY, streamEvents } from './events.js';
import { directoryRoutes } from './directory.js';
import { createInput, keyId, onlyFields, patchInput, type PreparsedBody, Query, readBody, reasonOf, revokeInput, rotateInput } from './input.js';
import { listKeys, LIST_QUERY, view } from './list.js';
import { ConsoleProblem, notFound, sendJson, sendProblem, sendRefusal } from './respond.js';
import { type Access, type Context, PARAMS, type Route } from './routes.js';
import { createSecretScanning } from './secret-scanning.js';
import { serveDashboard } from './static.js';

export interface TillConsole {
  /**
   * Answers one request. `url` is the path and query below the mount point (`/api/keys?limit=20`);
   * `body` is what the app's own body parser already read, if it did; `ip` the client address as the
   * framework sees it by its trust-proxy setting (default: the peer address).
   */
  handle(req: IncomingMessage, res: ServerResponse, url: string, body?: PreparsedBody, ip?: string): Promise<void>;
}

export function createConsole(options: ConsoleOptions): TillConsole {
  const { till, dashboard, eventsPollInterval, realm, secretScanning } = checkOptions(options);
  const scanning = secretScanning === null ? null : createSecretScanning(till, secretScanning);
  const keys = till.keys;
  const now = (): number => till.verifier.clock();
  const auth = kit.apiKeyAuth({ till, realm });
  const guards: Record<Access, ReturnType<typeof kit.scopeGuard>> = {
    read: kit.scopeGuard([READ_SCOPE, ADMIN_SCOPE], 'any'),
    admin: kit.scopeGuard([ADMIN_SCOPE], 'all'),
  };
  /** Who made a change, in the audit trail: the acting key, by its public id. */
  const change = (c: Context, reason: string | undefined) => ({ actor: `console:${c.key.id}`, ...(reason !== undefined && { reason }) });
  const body = (c: Context) => readBody(c.req, c.body);
  const noQuery = (c: Context) => new Query(c.query, []);

  const routes: Route[] = [
    {
      method: 'GET',
      path: ['session'],
      access: 'read',
      async run(c) {
        noQuery(c);
        sendJson(c.res, 200, { keyId: c.key.id, name: c.key.name, scopes: c.key.scopes, canChange: grants(c.key.scopes, ADMIN_SCOPE) });
      },
    },
    {
      method: 'GET',
      path: ['keys'],
      access: 'read',
      async run(c) {
        const page = await listKeys(keys, new Query(c.query, LIST_QUERY), now());
        sendJson(c.res, 200, page);
      },
    },
    {
      method: 'POST',
      path: ['keys'],
      access: 'admin',
      async run(c) {
        noQuery(c);
        const b = await body(c);
        const input = createInput(b);
        const created = await keys.create(input, change(c, reasonOf(b))).catch(namedInBody);
        // The one answer that holds the full key: never cached, never stored.
        sendJson(c.res, 201, { key: created.key, record: view(created.record, now(), null) });
      },
    },
    {
      method: 'GET',
      path: ['keys', ':id'],
      access: 'read',
      async run(c, id) {
        noQuery(c);
        const info = await keys.get(id);
        if (info === null) throw notFound(`No key ${id}.`);
        const [usage, credits] = await Promise.all([keys.usage(id, { days: 0 }), info.credits === null ? null : keys.credits(id)]);
        sendJson(c.res, 200, { ...view(info, now(), usage.lastUsedAt), creditsLeft: credits });
      },
    },
    {
      method: 'PATCH',
      path: ['keys', ':id'],
      access: 'admin',
      async run(c, id) {
        noQuery(c);
        const b = await body(c);
        const patch = patchInput(b);
        sendJson(c.res, 200, view(await keys.update(id, patch, change(c, reasonOf(b))).catch(namedInBody), now()));
      },
    },
    {
      method: 'POST',
      path: ['keys', ':id', 'rotate'],
      access: 'admin',
      async run(c, id) {
        noQuery(c);
        const { grace, reason } = rotateInput(await body(c));
        const rotated = await keys.rotate(id, { ...change(c, reason), ...(grace !== undefined && { grace }) });
        sendJson(c.res, 201, {
          key: rotated.key,
          record: view(rotated.record, now(), null),
          previous: view(rotated.previous, now()),
          announced: rotated.announced,
        });
      },
    },
    {
      method: 'POST',
      path: ['keys', ':id', 'revoke'],
      access: 'admin',
      async run(c, id) {
        noQuery(c);
        const { chain, reason } = revokeInput(await body(c));
        const revoked = chain ? (await keys.revokeChain(id, change(c, reason))).revoked : [await keys.revoke(id, { ...change(c, reason), chain: false })];
        if (revoked.length === 0) throw notFound(`No key ${id}.`);
        sendJson(c.res, 200, { revoked: revoked.map((k) => view(k, now())) });
      },
    },
    ...(['disable', 'enable'] as const).map(
      (action): Route => ({
        method: 'POST',
        path: ['keys', ':id', action],
        access: 'admin',
        async run(c, id) {
          noQuery(c);
          const b = await body(c);
          onlyFields(b, ['reason'], `${action === 'disable' ? 'Disabling' : 'Enabling'} a key`);
          sendJson(c.res, 200, view(await keys[action](id, change(c, reasonOf(b))), now()));
        },
      }),
    ),
    {
      method: 'GET',
      path: ['keys', ':id', 'usage'],
      access: 'read',
      async run(c, id) {
        const days = new Query(c.query, ['days']).int('days', 1, 100) ?? 30;
        if ((await keys.get(id)) === null) throw notFound(`No key ${id}.`);
        sendJson(c.res, 200, { keyId: id, ...(await keys.usage(id, { days })) });
      },
    },
    {
      method: 'GET',
      path: ['audit'],
      access: 'read',
      async run(c) {
        const q = new Query(c.query, ['keyId', 'ownerId', 'identityId', 'types', 'from', 'to', 'limit', 'cursor']);
        const [keyIdParam, ownerId, identityId, types, from, to, limit, cursor] = [
          q.text('keyId'),
          q.text('ownerId'),
          q.text('identityId', 64),
          q.types('types'),
          q.time('from'),
          q.time('to'),
          q.int('limit', 1, 1000),
          q.text('cursor', 40),
        ];
        const page = await keys.audit({
          ...(keyIdParam !== undefined && { keyId: keyId(keyIdParam) }),
          ...(ownerId !== undefined && { ownerId }),
          ...(identityId !== undefined && { identityId }),
          ...(types !== undefined && { types }),
          ...(from !== undefined && { from }),
          ...(to !== undefined && { to }),
          ...(limit !== undefined && { limit }),
          ...(cursor !== undefined && { cursor }),
        });
        sendJson(c.res, 200, page);
      },
    },
    {
      method: 'GET',
      path: ['report'],
      access: 'read',
      async run(c) {
        const q = new Query(c.query, ['unusedFor', 'neverUsedAfter', 'rotationAge', 'failures', 'failureDays', 'ownerId']);
        const texts = Object.fromEntries(
          (['unusedFor', 'neverUsedAfter', 'rotationAge', 'ownerId'] as const).flatMap((n) => (q.text(n, 40) === undefined ? [] : [[n, q.text(n, 40)]])),
        );
        const failures = q.int('failures', 1, 1_000_000);
        const failureDays = q.int('failureDays', 1, 100);
        const report = await keys.report({ ...texts, ...(failures !== undefined && { failures }), ...(failureDays !== undefined && { failureDays }) });
        sendJson(c.res, 200, report);
      },
    },
    {
      method: 'GET',
      path: ['events'],
      access: 'read',
      async run(c) {
        const { filter, since } = eventsFilter(new Query(c.query, EVENTS_QUERY));
        if (filter.keyId !== undefined) keyId(filter.keyId);
        const allowed = () => mayStillRead(till, c.key.id);
        streamEvents(till, c.req, c.res, filter, since, { pollInterval: eventsPollInterval, heartbeat: 15_000, allowed });
      },
    },
    ...directoryRoutes(till, { change, body, noQuery }),
  ];

  function match(segments: readonly string[]): { routes: Route[]; id: string } | null {
    let id = '';
    const found = routes.filter((r) => {
      if (r.path.length !== segments.length) return false;
      return r.path.every((p, i) => {
        if (!p.startsWith(':')) return p === segments[i];
        id = segments[i]!;
        return true;
      });
    });
    return found.length === 0 ? null : { routes: found, id };
  }

  async function api(req: IncomingMessage, res: ServerResponse, segments: readonly string[], query: string, body: PreparsedBody | undefined): Promise<void> {
    // Authenticated before anything else: without a key nothing is read, not even the route table.
    const refusal = await auth(req, res);
    if (refusal !== null) return sendRefusal(res, refusal.response);
    const key = holders.get(req)?.apiKey;
    if (key === undefined)
      return sendRefusal(res, {
        status: 401,
        headers: { 'content-type': 'application/problem+json' },
        body: { type: 'urn:till:problem:missing', title: 'API key required', status: 401, detail: 'Send an admin key.', code: 'MISSING' },
      });
    const matched = match(segments);
    if (matched === null) throw notFound('No such API route.');
    const route = matched.routes.find((r) => r.method === req.method);
    if (route === undefined) {
      const allow = matched.routes.map((r) => r.method).join(', ');
      throw new ConsoleProblem(405, 'METHOD_NOT_ALLOWED', 'Method not allowed', `This route takes: ${allow}.`, { allow });
    }
    const denied = await guards[route.access](req);
    if (denied !== null) return sendRefusal(res, denied.response);
    const param = route.path.find((p) => p.startsWith(':'));
    const id = param === undefined ? '' : PARAMS[param]!(matched.id);
    await route.run({ req, res, segments, query, key, body }, id);
  }

  return {
    async handle(req, res, url, body, ip) {
      if (typeof ip === 'string' && ip !== '') clients.set(req, ip);
      try {
        const q = url.indexOf('?');
        const path = q < 0 ? url : url.slice(0, q);
        const query = q < 0 ? '' : url.slice(q + 1);
        let segments: string[];
        try {
          segments = path
            .split('/')
            .filter((s) => s !== '')
            .map(decodeURIComponent);
        } catch {
          throw new ConsoleProblem(400, 'INVALID_REQUEST', 'Bad request', 'The path is not valid percent-encoding.');
        }
        if (segments[0] === 'api') return await api(req, res, segments.slice(1), query, body);
        if (scanning !== null && segments.length === 2 && segments[0] === 'github' && segments[1] === 'secret-scanning') {
          if (req.method !== 'POST') throw new ConsoleProblem(405, 'METHOD_NOT_ALLOWED', 'Method not allowed', 'This route takes: POST.', { allow: 'POST' });
          return await scanning.handle(req, res, body);
        }
        if (dashboard && serveDashboard(req, res, segments)) return;
        throw notFound('Nothing here.');
      } catch (error) {
        const problem = problemOf(error);
        if (problem !== null) return sendProblem(res, problem);
        // A bug of the console: said in the log without the request's data, answered without detail.
        till.logger.error(`[till] [console] ${req.method} failed: ${error instanceof Error ? error.message : 'unknown error'}`);
        sendProblem(res, new ConsoleProblem(500, 'INTERNAL', 'Server error', 'The console failed to answer; see the server log.'));
      }
    },
  };
}

export { ADMIN_SCOPE, READ_SCOPE, type ConsoleOptions } from './options.js';
