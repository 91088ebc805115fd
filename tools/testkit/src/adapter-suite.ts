// The behaviour suite every adapter must pass: each outcome code with its exact status, headers and
// problem body, the options and their validation, and a leak check over every response. A framework
// plugs in through an AdapterDriver; its test file adds only what is truly its own.
// One file because it is one suite: its blocks share the driver, the Till under test and the leak check,
// and an adapter runs all of it with one call (describeAdapter).
import type { RequestListener } from 'node:http';
import request from 'supertest';
import { beforeEach, describe, expect, it } from 'vitest';
import { createTill, generateKey, MemoryStore, silentLogger, type CreateKeyInput, type Till, type VerifiedKey, type VerifyFailure } from '@till/core';
import { problemResponse, type AuthOptions, type ProblemResponse, type RateLimitOptions } from '@till/core/http';
import { failure } from '../../../packages/core/src/verify/outcome.js';
import { expectInvalidOptions, expectProblem, LeakCheck, T0, UnreachableStore, withBadCheck, withWrongSecret, type SeenResponse } from './adapter-support.js';

/** Request headers to send; a list sends the header once per value. */
export type Headers = Record<string, string | string[] | undefined>;

/** The options of an adapter's apiKeyAuth(): core's, plus the adapter's own kind of onFailure. */
export type AdapterOptions<Handler> = AuthOptions<never> & { onFailure?: Handler };

/**
 * What differs from one framework to another. `M` is the framework's middleware type, `Handler`
 * the adapter's onFailure type.
 */
export interface AdapterDriver<M, Handler> {
  /** Where a handler finds the verified key, as the adapter documents it: `req.apiKey`, `ctx.state.apiKey`. */
  keyAt: string;
  /** The adapter's own middlewares. */
  apiKeyAuth(options?: AdapterOptions<Handler>): M;
  requireScopes(...scopes: string[]): M;
  requireAnyScope(...scopes: string[]): M;
  rateLimit(options: RateLimitOptions<never> & { onFailure?: Handler }): M;
  /**
   * A fresh app serving GET on each of `routes`: its middlewares in order, then a handler that
   * answers 200 with the JSON of `answer(the verified key, if any)`. An error thrown in a
   * middleware (or passed on, as the framework does it) is answered 500 `{ handled: message }`.
   */
  app(routes: Record<string, M[]>, answer: (key: VerifiedKey | undefined) => unknown, settings?: { trustProxy?: boolean }): RequestListener;
  /** A middleware that answers with the adapter's sendProblem(response). */
  problem(response: ProblemResponse): M;
  /** An onFailure that answers what `answer` returns, as JSON, written the framework's way. */
  onFailure(answer: (failure: VerifyFailure, response: ProblemResponse) => { status: number; body: unknown }): Handler;
  /** An onFailure that tries to let the refused request through (Express: `next()`; Koa: answers nothing). */
  passingOnFailure(): Handler;
  /** A middleware that sets `key` where handlers read the verified key (`req.apiKey`), as a careless app might. */
  setKey(key: VerifiedKey): M;
}

/** What a framework's own tests get to work with: the same app and leak-checked requests as the shared ones. */
export interface AdapterSuite<Handler> {
  /** An app with the standard routes (`/`, `/all`, `/any`, `/no-auth`); `options` go to apiKeyAuth(). */
  appWith(options?: Omit<AdapterOptions<Handler>, 'till'>): RequestListener;
  /** GETs `path`, and checks the response for leaked secrets. */
  get(app: RequestListener, path: string, headers?: Headers): Promise<SeenResponse>;
}

/** Extra tests of one framework, registered inside the shared groups so that they run in the same suite. */
export interface FrameworkTests<Handler> {
  /** Registered in the `options` group, after the shared onFailure test. */
  options?: (suite: AdapterSuite<Handler>) => void;
}

export const bearer = (key: string): Headers => ({ authorization: `Bearer ${key}` });

/** The JSON the standard routes answer with when they let a request through. */
const answerKey = (key: VerifiedKey | undefined) => ({ apiKey: key, fields: key ? Object.keys(key).sort() : null });

/** apiKeyAuth(), requireScopes() and requireAnyScope() of one adapter on a real app: every outcome, exactly. */
export function describeAdapter<M, Handler>(name: string, driver: AdapterDriver<M, Handler>, own: FrameworkTests<Handler> = {}): void {
  describe(name, () => {
    let now = T0;
    let till: Till;
    const leaks = new LeakCheck();

    beforeEach(() => {
      now = T0;
      till = createTill({ store: new MemoryStore(), clock: () => now, logger: silentLogger });
    });

    async function newKey(input: Partial<CreateKeyInput> = {}) {
      const created = await till.keys.create({ name: 'test key', scopes: ['users:read'], ...input });
      await leaks.track(till, created);
      return created;
    }

    function appWith(options: Omit<AdapterOptions<Handler>, 'till'> = {}): RequestListener {
      const auth = driver.apiKeyAuth({ till, ...options });
      return driver.app(
        {
          '/': [auth],
          '/all': [auth, driver.requireScopes('users:read', 'users:write')],
          '/any': [auth, driver.requireAnyScope('users:write', 'billing:read')],
          '/no-auth': [driver.requireScopes('users:read')],
        },
        answerKey,
      );
    }

    async function get(app: RequestListener, path: string, headers: Headers = {}): Promise<SeenResponse> {
      let req = request(app).get(path);
      for (const [name, value] of Object.entries(headers)) {
        // A list sends the header once per value.
        if (value !== undefined) req = req.set(name, value as string);
      }
      const res = await req;
      const seen = { status: res.status, text: res.text, headers: res.headers as Record<string, unknown> };
      leaks.check(seen);
      return seen;
    }

    const suite: AdapterSuite<Handler> = { appWith, get };

    describe('VALID', () => {
      it(`lets the request through with ${driver.keyAt}: id, name, owner, scopes, metadata, never the secret or hash`, async () => {
        const { key, record } = await newKey({ name: 'billing', ownerId: 'team-7', scopes: ['users:read', 'billing:read'], metadata: { plan: 'pro' } });
        const res = await get(appWith(), '/', bearer(key));
        expect(res.status).toBe(200);
        expect(JSON.parse(res.text)).toEqual({
          apiKey: {
            id: record.id,
            prefix: 'till',
            name: 'billing',
            ownerId: 'team-7',
            scopes: ['billing:read', 'users:read'],
            metadata: { plan: 'pro' },
            createdAt: T0,
            expiresAt: null,
            limits: [],
            credits: null,
            identityId: null,
          },
          fields: ['createdAt', 'credits', 'expiresAt', 'id', 'identityId', 'limits', 'metadata', 'name', 'ownerId', 'prefix', 'scopes'],
        });
      });

      it('accepts X-API-Key, any case of the Bearer scheme, extra spaces, and the same key in both headers', async () => {
        const { key } = await newKey();
        const app = appWith();
        for (const headers of [
          { 'x-api-key': key },
          { authorization: `bearer ${key}` },
          { authorization: `BEARER    ${key}` },
          { authorization: `Bearer ${key}`, 'x-api-key': key },
          { 'x-api-key': [key, key] },
          { authorization: [`Bearer ${key}`, `Bearer ${key}`] },
          { authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': key },
        ]) {
          expect((await get(app, '/', headers)).status).toBe(200);
        }
      });

      it('serves the second request from the cache', async () => {
        const { key } = await newKey();
        const app = appWith();
        const before = { ...till.verifier.stats };
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        expect(till.verifier.stats).toEqual({ ...before, misses: before.misses + 1 });
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        expect(till.verifier.stats).toEqual({ ...before, misses: before.misses + 1, hits: before.hits + 1 });
      });
    });

    describe('MISSING', () => {
      it('answers 401 with a bare Bearer challenge when no key is sent', async () => {
        expectProblem(await get(appWith(), '/'), 'MISSING');
      });

      it('answers MISSING when only another scheme or an empty X-API-Key is sent', async () => {
        const app = appWith();
        expectProblem(await get(app, '/', { authorization: 'Basic dXNlcjpwYXNz' }), 'MISSING');
        expectProblem(await get(app, '/', { 'x-api-key': '' }), 'MISSING');
        expectProblem(await get(app, '/', { authorization: 'Token abc' }), 'MISSING');
      });

      it('refuses requireScopes() that has no apiKeyAuth() before it', async () => {
        const { key } = await newKey();
        expectProblem(await get(appWith(), '/no-auth', bearer(key)), 'MISSING');
      });
    });

    describe('MALFORMED', () => {
      it('rejects a bad check, garbage and an overlong header without a store lookup', async () => {
        const { key } = await newKey();
        const app = appWith();
        const misses = till.verifier.stats.misses;
        for (const headers of [
          bearer(withBadCheck(key)),
          { 'x-api-key': withBadCheck(key) },
          bearer('not-a-key'),
          bearer(`${key}x`),
          bearer(`${key} ${key}`),
          bearer('a'.repeat(600)),
          { 'x-api-key': `${key}${' '.repeat(520)}.` },
        ]) {
          expectProblem(await get(app, '/', headers), 'MALFORMED');
        }
        expect(till.verifier.stats.misses).toBe(misses);
      });

      it('rejects an empty Bearer token', async () => {
        // Servers strip trailing whitespace, so this arrives as "Bearer": the scheme with no token.
        expectProblem(await get(appWith(), '/', { authorization: 'Bearer ' }), 'MALFORMED');
      });

      it('rejects two different keys, across headers or in a repeated header', async () => {
        const a = (await newKey()).key;
        const b = (await newKey()).key;
        const app = appWith();
        expectProblem(await get(app, '/', { authorization: `Bearer ${a}`, 'x-api-key': b }), 'MALFORMED');
        expectProblem(await get(app, '/', { authorization: [`Bearer ${a}`, `Bearer ${b}`] }), 'MALFORMED');
        expectProblem(await get(app, '/', { 'x-api-key': [a, b] }), 'MALFORMED');
      });
    });

    describe('NOT_FOUND', () => {
      it('gives an unknown id and a wrong secret for a known id the very same response', async () => {
        const { key } = await newKey();
        const unknown = generateKey('till').key;
        const wrong = withWrongSecret(key);
        leaks.addKey(unknown);
        leaks.addKey(wrong);
        const app = appWith();
        const a = await get(app, '/', bearer(unknown));
        const b = await get(app, '/', bearer(wrong));
        expectProblem(a, 'NOT_FOUND');
        expectProblem(b, 'NOT_FOUND');
        // Only the date may differ: every other header, an ETag included, must be the same.
        const strip = (r: SeenResponse) => {
          const { date: _d, ...rest } = r.headers;
          return { status: r.status, text: r.text, headers: rest };
        };
        expect(strip(a)).toEqual(strip(b));
        // The real key still works: a wrong secret poisons nothing.
        expect((await get(app, '/', bearer(key))).status).toBe(200);
      });
    });

    describe('key status', () => {
      it('REVOKED: the very next request after revoke() is refused', async () => {
        const { key, record } = await newKey();
        const app = appWith();
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        await till.keys.revoke(record.id, { reason: 'leaked' });
        expectProblem(await get(app, '/', bearer(key)), 'REVOKED');
      });

      it('DISABLED: a record disabled through the store is refused at once', async () => {
        const { key, record } = await newKey();
        const app = appWith();
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        const raw = (await till.store.get(record.id))!;
        expect(await till.store.replace({ ...raw, disabled: true, version: raw.version + 1 }, raw.version)).toBe(true);
        expectProblem(await get(app, '/', bearer(key)), 'DISABLED');
      });

      it('EXPIRED: refused from expiresAt on, even while cached', async () => {
        const { key } = await newKey({ expiresAt: T0 + 60_000 });
        const app = appWith();
        now = T0 + 59_999;
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        now = T0 + 60_000;
        expectProblem(await get(app, '/', bearer(key)), 'EXPIRED');
        now = T0 + 3_600_000;
        expectProblem(await get(app, '/', bearer(key)), 'EXPIRED');
      });

      it('NOT_YET_VALID: refused before notBefore, accepted from then on', async () => {
        const { key } = await newKey({ notBefore: T0 + 10_000 });
        const app = appWith();
        expectProblem(await get(app, '/', bearer(key)), 'NOT_YET_VALID');
        now = T0 + 10_000;
        expect((await get(app, '/', bearer(key))).status).toBe(200);
      });
    });

    describe('INSUFFICIENT_SCOPE', () => {
      it('requireScopes() needs every scope: 403 naming them', async () => {
        const app = appWith();
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/all', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['users:read', 'users:write'], mode: 'all' });
        const both = await newKey({ scopes: ['users:read', 'users:write'] });
        expect((await get(app, '/all', bearer(both.key))).status).toBe(200);
      });

      it('requireAnyScope() needs one of them', async () => {
        const app = appWith();
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/any', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['users:write', 'billing:read'], mode: 'any' });
        const billing = await newKey({ scopes: ['billing:read'] });
        expect((await get(app, '/any', bearer(billing.key))).status).toBe(200);
      });

      it('the scopes option of apiKeyAuth() refuses with the same 403', async () => {
        const app = appWith({ scopes: ['admin', 'users:read'] });
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['admin', 'users:read'], mode: 'all' });
        const admin = await newKey({ scopes: ['admin', 'users:read'] });
        expect((await get(app, '/', bearer(admin.key))).status).toBe(200);
      });

      it('wildcard grants: users:* covers users scopes only, * covers everything', async () => {
        const app = appWith();
        const users = (await newKey({ scopes: ['users:*'] })).key;
        const all = (await newKey({ scopes: ['*'] })).key;
        expect((await get(app, '/all', bearer(users))).status).toBe(200);
        expect((await get(app, '/any', bearer(users))).status).toBe(200);
        expect((await get(app, '/all', bearer(all))).status).toBe(200);
        expect((await get(app, '/any', bearer(all))).status).toBe(200);
        const billing = (await newKey({ scopes: ['billing:*'] })).key;
        expectProblem(await get(app, '/all', bearer(billing)), 'INSUFFICIENT_SCOPE', { scopes: ['users:read', 'users:write'], mode: 'all' });
      });
    });

    describe('optional authentication', () => {
      it('apiKeyAuth({ optional: true }) lets a request without a key through with no key; a key that fails is still refused', async () => {
        const app = appWith({ optional: true });
        const anonymous = await get(app, '/');
        expect([anonymous.status, JSON.parse(anonymous.text)]).toEqual([200, { fields: null }]);
        const { key, record } = await newKey({ scopes: ['users:read'] });
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        expectProblem(await get(app, '/', bearer('junk')), 'MALFORMED');
        const wrong = withWrongSecret(key);
        leaks.addKey(wrong);
        expectProblem(await get(app, '/', bearer(wrong)), 'NOT_FOUND');
        await till.keys.revoke(record.id);
        expectProblem(await get(app, '/', bearer(key)), 'REVOKED');
      });

      it('every guard refuses a request without a verified key with 401, behind optional authentication too', async () => {
        const app = appWith({ optional: true });
        expectProblem(await get(app, '/all'), 'MISSING');
        expectProblem(await get(app, '/any'), 'MISSING');
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/all', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['users:read', 'users:write'], mode: 'all' });
        expectInvalidOptions(() => driver.apiKeyAuth({ till, optional: 'yes' as unknown as boolean }));
      });

      it('guards trust only the key Till verified, never a key other code put on the request', async () => {
        const { key } = await newKey({ scopes: ['users:read'] });
        const forged = { ...((await till.verify(key)) as { key: VerifiedKey }).key, scopes: ['*'] };
        const app = driver.app(
          {
            '/forged': [driver.setKey(forged), driver.requireScopes('admin')],
            '/forged-after-auth': [driver.apiKeyAuth({ till, optional: true }), driver.setKey(forged), driver.requireScopes('admin')],
            '/forged-after-auth-kept': [driver.apiKeyAuth({ till, optional: true }), driver.requireScopes('admin')],
          },
          answerKey,
        );
        expectProblem(await get(app, '/forged'), 'MISSING');
        expectProblem(await get(app, '/forged-after-auth'), 'MISSING');
        // The verified key replaced by other code: guards trust only the object apiKeyAuth() put there, and refuse.
        expectProblem(await get(app, '/forged-after-auth', bearer(key)), 'MISSING');
        // Left in place, it is judged.
        expectProblem(await get(app, '/forged-after-auth-kept', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['admin'], mode: 'all' });
      });

      it('a key replaced after apiKeyAuth() is refused the same way when the request has a context of its own (charged), and its charge is given back', async () => {
        const { key } = await newKey({ scopes: ['users:read'] });
        const forged = { ...((await till.verify(key)) as { key: VerifiedKey }).key, scopes: ['*'] };
        // One unit a window: a charge that is not given back would refuse the next request.
        const charged = driver.apiKeyAuth({ till, limits: [{ name: `replaced-${Math.random().toString(36).slice(2)}`, limit: 1, window: '1h' }] });
        const app = driver.app(
          {
            '/replaced': [charged, driver.setKey(forged), driver.requireScopes('users:read')],
            '/kept': [charged, driver.requireScopes('users:read')],
          },
          answerKey,
        );
        expectProblem(await get(app, '/replaced', bearer(key)), 'MISSING');
        expect((await get(app, '/kept', bearer(key))).status).toBe(200);
        expect((await get(app, '/kept', bearer(key))).status).toBe(429);
      });

      it('an onFailure that tries to let a refusal through gets the default response instead', async () => {
        const app = appWith({ onFailure: driver.passingOnFailure() });
        expectProblem(await get(app, '/'), 'MISSING');
        expectProblem(await get(app, '/all'), 'MISSING');
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/all', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['users:read', 'users:write'], mode: 'all' });
      });
    });

    describe('STORE_UNAVAILABLE', () => {
      it('answers 503 with Retry-After when the store cannot be read, never 401 or 200', async () => {
        till = createTill({ store: new UnreachableStore(), clock: () => now, logger: silentLogger });
        const app = appWith();
        const unknown = generateKey('till').key;
        leaks.addKey(unknown);
        expectProblem(await get(app, '/', bearer(unknown)), 'STORE_UNAVAILABLE', { retryAfter: 2 });
        expectProblem(await get(app, '/all', { 'x-api-key': unknown }), 'STORE_UNAVAILABLE', { retryAfter: 2 });
        // What needs no lookup is still answered as usual.
        expectProblem(await get(app, '/'), 'MISSING');
        expectProblem(await get(app, '/', bearer('junk')), 'MALFORMED');
      });

      it('keeps a recently verified key working for the stale window, then answers 503', async () => {
        const flaky = new UnreachableStore();
        flaky.down = false;
        till = createTill({ store: flaky, clock: () => now, logger: silentLogger, cache: { ttl: 1_000, staleWindow: 10_000 } });
        const { key } = await newKey();
        const app = appWith();
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        flaky.down = true;
        now = T0 + 5_000;
        expect((await get(app, '/', bearer(key))).status).toBe(200);
        now = T0 + 11_000;
        expectProblem(await get(app, '/', bearer(key)), 'STORE_UNAVAILABLE', { retryAfter: 2 });
      });
    });

    describe('IP_NOT_ALLOWED', () => {
      /** An app whose apiKeyAuth() reads the client IP as the framework does, with or without trusting a proxy. */
      const ipApp = (trustProxy: boolean, options: Omit<AdapterOptions<Handler>, 'till'> = {}) =>
        driver.app({ '/': [driver.apiKeyAuth({ till, ...options })] }, answerKey, { trustProxy });

      it('refuses a key used from outside its allowlist with 403 and a problem body naming no range, by the framework’s client IP', async () => {
        const { key } = await newKey({ allowedIps: ['203.0.113.0/24', '2001:db8::/32'] });
        const app = ipApp(true);
        expect((await get(app, '/', { ...bearer(key), 'x-forwarded-for': '203.0.113.9' })).status).toBe(200);
        expect((await get(app, '/', { ...bearer(key), 'x-forwarded-for': '2001:db8::7' })).status).toBe(200);
        const refused = await get(app, '/', { ...bearer(key), 'x-forwarded-for': '198.51.100.1' });
        expectProblem(refused, 'IP_NOT_ALLOWED');
        expect(refused.text).not.toContain('203.0.113');
      });

      it('follows the trust-proxy setting: without it a forwarded address is not believed, and the socket’s (IPv4-mapped or not) is checked', async () => {
        const { key } = await newKey({ allowedIps: ['203.0.113.0/24'] });
        expectProblem(await get(ipApp(false), '/', { ...bearer(key), 'x-forwarded-for': '203.0.113.9' }), 'IP_NOT_ALLOWED');
        const local = await newKey({ allowedIps: ['127.0.0.0/8', '::1'] });
        expect((await get(ipApp(false), '/', bearer(local.key))).status).toBe(200);
      });

      it('spends no credit on a refused address, and a key without an allowlist works from anywhere', async () => {
        const { key } = await newKey({ allowedIps: ['203.0.113.0/24'], credits: { remaining: 1 } });
        const app = ipApp(true);
        for (let i = 0; i < 3; i++) expectProblem(await get(app, '/', { ...bearer(key), 'x-forwarded-for': '198.51.100.1' }), 'IP_NOT_ALLOWED');
        expect((await get(app, '/', { ...bearer(key), 'x-forwarded-for': '203.0.113.9' })).status).toBe(200);
        expect((await get(app, '/', { ...bearer(key), 'x-forwarded-for': '203.0.113.9' })).status).toBe(429);
        const open = await newKey();
        expect((await get(app, '/', { ...bearer(open.key), 'x-forwarded-for': '198.51.100.1' })).status).toBe(200);
      });

      it('hands the refusal to onFailure like any other', async () => {
        const { key } = await newKey({ allowedIps: ['203.0.113.0/24'] });
        const app = ipApp(true, {
          onFailure: driver.onFailure((failure, response) => ({ status: 418, body: { code: failure.code, status: response.status } })),
        });
        const res = await get(app, '/', { ...bearer(key), 'x-forwarded-for': '198.51.100.1' });
        expect({ status: res.status, body: JSON.parse(res.text) }).toEqual({ status: 418, body: { code: 'IP_NOT_ALLOWED', status: 403 } });
      });
    });

    describe('roles', () => {
      it('requireScopes() and requireAnyScope() see the scopes of the roles a key holds, and a change of a role at once', async () => {
        await till.roles.define('user-admin', ['users:write']);
        const { key } = await newKey({ scopes: ['users:read'], roles: ['user-admin'] });
        const app = appWith();
        const all = await get(app, '/all', bearer(key));
        expect(all.status).toBe(200);
        expect(JSON.parse(all.text).apiKey.scopes).toEqual(['users:read', 'users:write']);
        expect((await get(app, '/any', bearer(key))).status).toBe(200);
        // Narrowed: the cached key loses the scope with the very next request.
        await till.roles.define('user-admin', ['users:list']);
        expectProblem(await get(app, '/all', bearer(key)), 'INSUFFICIENT_SCOPE', { scopes: ['users:read', 'users:write'], mode: 'all' });
        await till.roles.delete('user-admin', { force: true });
        expect(JSON.parse((await get(app, '/', bearer(key))).text).apiKey.scopes).toEqual(['users:read']);
      });
    });

    describe('options', () => {
      it('realm appears in every challenge, also from requireScopes()', async () => {
        const app = appWith({ realm: 'till-api' });
        const { key } = await newKey({ scopes: ['users:read'] });
        expectProblem(await get(app, '/'), 'MISSING', { realm: 'till-api' });
        expectProblem(await get(app, '/', bearer('junk')), 'MALFORMED', { realm: 'till-api' });
        expectProblem(await get(app, '/all', bearer(key)), 'INSUFFICIENT_SCOPE', { realm: 'till-api', scopes: ['users:read', 'users:write'] });
      });

      it('a realm outside printable ASCII is refused at creation; a printable one is sent intact', async () => {
        // A header value cannot carry it as written: refused once, at creation, never a 500 per request.
        for (const realm of ['Till \u2713 API', 'caf\u00e9', 'tab\there', 'del\u007f']) {
          expectInvalidOptions(() => driver.apiKeyAuth({ till, realm }));
        }
        // Every printable ASCII character but the double quote and the backslash (a quoted-string's own).
        const printable = " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";
        expectProblem(await get(appWith({ realm: printable }), '/'), 'MISSING', { realm: printable });
      });

      it('onFailure replaces the response, for apiKeyAuth() and the requireScopes() after it', async () => {
        const seen: unknown[] = [];
        const onFailure = driver.onFailure((f, response) => {
          seen.push({ code: f.code, status: response.status });
          return { status: 418, body: { mine: f.code } };
        });
        const app = appWith({ onFailure });
        const { key } = await newKey({ scopes: ['users:read'] });
        const missing = await get(app, '/');
        expect([missing.status, JSON.parse(missing.text)]).toEqual([418, { mine: 'MISSING' }]);
        expect(missing.headers['www-authenticate']).toBeUndefined();
        const scoped = await get(app, '/all', bearer(key));
        expect([scoped.status, JSON.parse(scoped.text)]).toEqual([418, { mine: 'INSUFFICIENT_SCOPE' }]);
        expect(seen).toEqual([
          { code: 'MISSING', status: 401 },
          { code: 'INSUFFICIENT_SCOPE', status: 403 },
        ]);
      });

      own.options?.(suite);

      it("an error thrown by onFailure reaches the app's error handling, on the cached and the uncached path", async () => {
        const app = appWith({
          onFailure: driver.onFailure(() => {
            throw new Error('from onFailure');
          }),
        });
        // MISSING is decided synchronously; an unknown id needs a store read (a promise).
        for (const headers of [{}, bearer(generateKey('till').key)]) {
          const res = await get(app, '/', headers);
          expect([res.status, JSON.parse(res.text)]).toEqual([500, { handled: 'from onFailure' }]);
        }
      });

      it('sendProblem() writes any problem response', async () => {
        const app = driver.app({ '/': [driver.problem(problemResponse(failure('REVOKED', { keyId: generateKey('till').id }), { realm: 'x' }))] }, answerKey);
        expectProblem(await get(app, '/'), 'REVOKED', { realm: 'x' });
      });

      it('sources: a custom header, a custom scheme; the defaults are then not read', async () => {
        const { key } = await newKey();
        const custom = appWith({ sources: [{ header: 'X-Till-Key' }] });
        expect((await get(custom, '/', { 'x-till-key': key })).status).toBe(200);
        expectProblem(await get(custom, '/', bearer(key)), 'MISSING');
        const token = appWith({ sources: [{ header: 'authorization', scheme: 'Token' }] });
        expect((await get(token, '/', { authorization: `Token ${key}` })).status).toBe(200);
        expect((await get(token, '/', { authorization: `token ${key}` })).status).toBe(200);
        expectProblem(await get(token, '/', bearer(key)), 'MISSING');
        expectProblem(await get(token, '/', { 'x-api-key': key }), 'MISSING');
      });

      it('maxHeaderLength rejects longer values unread', async () => {
        const { key } = await newKey();
        const app = appWith({ maxHeaderLength: 60 });
        expect((await get(app, '/', { 'x-api-key': key })).status).toBe(200);
        expectProblem(await get(app, '/', { 'x-api-key': `${key}${' '.repeat(20)}x` }), 'MALFORMED');
      });

      it('are checked at creation: INVALID_OPTIONS with a [till] message', () => {
        const bad: unknown[] = [
          { till, scope: ['users:read'] },
          { till, onfailure: () => {} },
          'till',
          null,
          [],
          { till: {} },
          { till: { store: till.store, verifier: till.verifier, keys: till.keys, verify: till.verify } },
          { till, realm: 5 },
          { till, realm: 'a\nb' },
          { till, sources: 'authorization' },
          { till, sources: [] },
          { till, sources: [{ header: 'bad header' }] },
          { till, sources: [{ header: 'authorization', scheme: 5 }] },
          { till, maxHeaderLength: '512' },
          { till, maxHeaderLength: 2 },
          { till, scopes: 'users:read' },
          { till, scopes: [] },
          { till, scopes: ['users:*'] },
          { till, onFailure: 'handler' },
        ];
        for (const options of bad) expectInvalidOptions(() => driver.apiKeyAuth(options as AdapterOptions<Handler>));
        expectInvalidOptions(() => driver.requireScopes());
        expectInvalidOptions(() => driver.requireAnyScope());
        for (const scope of ['users:*', '*', 'bad scope', '', 'a::b', 5, null]) {
          expectInvalidOptions(() => driver.requireScopes(scope as string));
          expectInvalidOptions(() => driver.requireAnyScope('users:read', scope as string));
        }
      });
    });

    describe('secrets', () => {
      /**
       * One request for each outcome the adapter can produce (RATE_LIMITED, USAGE_EXCEEDED and BLOCKED
       * are the limits suite's), with keys of its own, every response checked by `check` against every
       * key, secret and stored hash made here. Returns a key and its stored hash, and how many were sent.
       */
      async function everyOutcome(check: LeakCheck): Promise<{ sent: number; key: string; hash: string }> {
        let sent = 0;
        const make = async (input: Partial<CreateKeyInput> = {}) => {
          const created = await till.keys.create({ name: 'secrets', scopes: ['users:read'], ...input });
          await check.track(till, created);
          return created;
        };
        const send = async (app: RequestListener, path: string, headers: Headers = {}) => {
          const res = await get(app, path, headers);
          check.check(res);
          sent++;
        };
        now = T0;
        const good = await make();
        const revoked = await make();
        await till.keys.revoke(revoked.record.id, { reason: 'secrets' });
        const disabled = await make();
        const raw = (await till.store.get(disabled.record.id))!;
        expect(await till.store.replace({ ...raw, disabled: true, version: raw.version + 1 }, raw.version)).toBe(true);
        const expiring = await make({ expiresAt: T0 + 1_000 });
        const later = await make({ notBefore: T0 + 10_000 });
        const hash = (await till.store.get(good.record.id))!.hash;
        const wrong = withWrongSecret(good.key);
        check.addKey(wrong);
        now = T0 + 5_000;
        const app = appWith({ realm: 'r' });
        await send(app, '/', bearer(good.key)); // VALID
        await send(app, '/'); // MISSING
        await send(app, '/', bearer(withBadCheck(good.key))); // MALFORMED
        await send(app, '/', { 'x-api-key': `${good.key}${good.key}` }); // MALFORMED
        await send(app, '/', bearer(wrong)); // NOT_FOUND
        await send(app, '/', bearer(revoked.key)); // REVOKED
        await send(app, '/', bearer(disabled.key)); // DISABLED
        await send(app, '/', bearer(expiring.key)); // EXPIRED
        await send(app, '/', bearer(later.key)); // NOT_YET_VALID
        await send(app, '/all', bearer(good.key)); // INSUFFICIENT_SCOPE
        till = createTill({ store: new UnreachableStore(), clock: () => now, logger: silentLogger });
        const unknown = generateKey('till').key;
        check.addKey(unknown);
        await send(appWith({ realm: 'r' }), '/', bearer(unknown)); // STORE_UNAVAILABLE
        return { sent, key: good.key, hash };
      }

      it('no key, secret or stored hash appears in any response body or header', async () => {
        const check = new LeakCheck();
        const { sent, key, hash } = await everyOutcome(check);
        // Every response went through the check ...
        expect(check.responses).toBe(sent);
        // ... and the check does see a tracked key or hash (its message names only the secret's number).
        expect(() => check.check({ status: 200, text: `{"k":"${key}"}`, headers: {} })).toThrow(/carries tracked secret #\d+$/);
        expect(() => check.check({ status: 200, text: '', headers: { etag: hash } })).toThrow(/carries tracked secret #\d+$/);
      });

      it('the responses checked cover every outcome the adapter can produce', async () => {
        const check = new LeakCheck();
        await everyOutcome(check);
        expect([...check.codes].sort()).toEqual([
          'DISABLED',
          'EXPIRED',
          'INSUFFICIENT_SCOPE',
          'MALFORMED',
          'MISSING',
          'NOT_FOUND',
          'NOT_YET_VALID',
          'REVOKED',
          'STORE_UNAVAILABLE',
          'VALID',
        ]);
      });
    });
  });
}
