// A property over random chains of Till's middlewares on real Express 4 and 5, Koa 2 and 3 and Fastify 5
// apps (its hooks in onRequest, in preHandler, and split between them): no request without a valid key
// holding the scopes a guard requires ever reaches the route handler,
// whatever the order of the middlewares, optional authentication, custom failure handlers that try to
// let a refusal through, or other code that puts a made-up key on the request.
import type { RequestListener } from 'node:http';
import fc from 'fast-check';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTill, MemoryStore, silentLogger, type Till, type VerifiedKey } from '@till/core';
import type { AdapterDriver } from '@till/testkit/adapter-suite';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { expressDriver } from '../packages/express/test/driver.js';
import { EXPRESS_VERSIONS } from '../packages/express/test/versions.js';
import { koaDriver } from '../packages/koa/test/driver.js';
import { KOA_VERSIONS } from '../packages/koa/test/versions.js';
import { fastifyDriver, PLACEMENTS } from '../packages/fastify/test/driver.js';

const POOL = ['a:read', 'a:write', 'b:read'] as const;
type Scope = (typeof POOL)[number];

type Handler = 'none' | 'pass' | 'answer';
type Step =
  | { kind: 'auth'; optional: boolean; onFailure: Handler }
  | { kind: 'all' | 'any'; scopes: Scope[] }
  | { kind: 'limit'; by: 'key' | 'ip'; withTill: boolean; onFailure: Handler }
  | { kind: 'forge' };

const handler = fc.constantFrom<Handler>('none', 'pass', 'answer');
const scopes = fc.subarray([...POOL], { minLength: 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('auth' as const), optional: fc.boolean(), onFailure: handler }),
  fc.record({ kind: fc.constantFrom('all' as const, 'any' as const), scopes }),
  fc.record({ kind: fc.constant('limit' as const), by: fc.constantFrom('key' as const, 'ip' as const), withTill: fc.boolean(), onFailure: handler }),
  fc.constant({ kind: 'forge' as const }),
);

/** What a request presents: nothing, a valid key with some scopes, or a key that must fail. */
type Presented = { kind: 'none' } | { kind: 'valid'; scopes: Scope[] } | { kind: 'revoked' | 'wrong-secret' | 'malformed' };
const presented: fc.Arbitrary<Presented> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('valid' as const), scopes: fc.subarray([...POOL]) }),
  fc.constantFrom({ kind: 'revoked' as const }, { kind: 'wrong-secret' as const }, { kind: 'malformed' as const }),
);

/** Whether the handler may run: every guard in the chain is satisfied by a key a Till verified before it, still in its place. */
function mayReach(chain: readonly Step[], sent: Presented): boolean {
  let verified: Scope[] | null = null;
  for (const s of chain) {
    if (s.kind === 'auth') {
      if (sent.kind === 'valid') verified = sent.scopes;
      else if (!(sent.kind === 'none' && s.optional)) return false;
    } else if (s.kind === 'all') {
      if (verified === null || !s.scopes.every((x) => verified!.includes(x))) return false;
    } else if (s.kind === 'any') {
      if (verified === null || !s.scopes.some((x) => verified!.includes(x))) return false;
    } else if (s.kind === 'limit' && s.by === 'key' && verified === null) return false;
    // Other code put a key of its own in the request's place: the guards after it trust no key (they
    // trust only the object apiKeyAuth() put there), until an apiKeyAuth() verifies one again.
    else if (s.kind === 'forge') verified = null;
  }
  return true;
}

/** Whether a rateLimit() without a Till of its own comes before any apiKeyAuth(): it then has none to count in. */
function orphanLimitFirst(chain: readonly Step[]): boolean {
  for (const s of chain) {
    if (s.kind === 'auth') return false;
    if (s.kind === 'limit' && !s.withTill) return true;
  }
  return false;
}

function describeChains<M, H>(name: string, driver: AdapterDriver<M, H>): void {
  describe(name, () => {
    let till: Till;
    const keys = new Map<string, string>();
    let revoked = '';
    let forged: VerifiedKey;
    let names = 0;

    beforeAll(async () => {
      till = createTill({ store: new MemoryStore(), logger: silentLogger });
      // One key per subset of the pool, made once.
      for (let mask = 0; mask < 1 << POOL.length; mask++) {
        const held = POOL.filter((_, i) => mask & (1 << i));
        keys.set(held.join(','), (await till.keys.create({ name: `k${mask}`, scopes: held })).key);
      }
      const gone = await till.keys.create({ name: 'gone', scopes: [...POOL] });
      await till.keys.revoke(gone.record.id);
      revoked = gone.key;
      const verified = await till.verify(keys.get('')!);
      if (!verified.valid) throw new Error('setup: key did not verify');
      forged = { ...verified.key, scopes: ['*'] };
    });

    function failureHandler(kind: Handler): H | undefined {
      if (kind === 'none') return undefined;
      if (kind === 'pass') return driver.passingOnFailure();
      return driver.onFailure((failure, response) => ({ status: response.status, body: { custom: failure.code } }));
    }

    function build(chain: readonly Step[], reached: { count: number }): RequestListener {
      const middlewares = chain.map((s): M => {
        switch (s.kind) {
          case 'auth': {
            const onFailure = failureHandler(s.onFailure);
            return driver.apiKeyAuth({ till, optional: s.optional, bruteForce: false, ...(onFailure !== undefined && { onFailure }) });
          }
          case 'all':
            return driver.requireScopes(...s.scopes);
          case 'any':
            return driver.requireAnyScope(...s.scopes);
          case 'limit': {
            const onFailure = failureHandler(s.onFailure);
            return driver.rateLimit({
              name: `chain-${names++}`,
              by: s.by,
              limit: 1000,
              window: '1h',
              ...(s.withTill && { till }),
              ...(onFailure !== undefined && { onFailure }),
            });
          }
          case 'forge':
            return driver.setKey(forged);
          default:
            throw new Error(`unknown step ${JSON.stringify(s satisfies never)}`);
        }
      });
      return driver.app({ '/': middlewares }, () => {
        reached.count++;
        return { reached: true };
      });
    }

    function headersOf(sent: Presented): Record<string, string> {
      switch (sent.kind) {
        case 'none':
          return {};
        case 'valid':
          return { authorization: `Bearer ${keys.get([...sent.scopes].sort((a, b) => POOL.indexOf(a) - POOL.indexOf(b)).join(','))!}` };
        case 'revoked':
          return { 'x-api-key': revoked };
        case 'wrong-secret':
          return { authorization: `Bearer ${withWrongSecret(keys.get('a:read')!)}` };
        case 'malformed':
          return { authorization: 'Bearer till_not-a-key' };
      }
    }

    it('never reaches the handler without a valid key holding what the guards require, and reaches it when it may', async () => {
      let reachedRuns = 0;
      let refusedRuns = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 5 }), fc.array(presented, { minLength: 1, maxLength: 4 }), async (chain, requests) => {
          const reached = { count: 0 };
          const app = build(chain, reached);
          for (const sent of requests) {
            const before = reached.count;
            const res = await request(app).get('/').set(headersOf(sent));
            const ran = reached.count > before;
            const may = mayReach(chain, sent);
            // Never a pass that the guards forbid; and a request they allow is not refused, unless a
            // rateLimit() with no Till of its own sits before any apiKeyAuth() (a loud 500 by design).
            if (ran) expect(may, `reached with ${sent.kind} through ${JSON.stringify(chain)}`).toBe(true);
            if (may && !orphanLimitFirst(chain)) expect(ran, `refused (${res.status}) ${sent.kind} through ${JSON.stringify(chain)}`).toBe(true);
            if (ran) reachedRuns++;
            else refusedRuns++;
          }
        }),
        { numRuns: 120 },
      );
      // The property saw both sides.
      expect(reachedRuns).toBeGreaterThan(10);
      expect(refusedRuns).toBeGreaterThan(50);
    });
  });
}

for (const [name, framework] of EXPRESS_VERSIONS) describeChains(name, expressDriver(framework));
for (const [name, Framework] of KOA_VERSIONS) describeChains(name, koaDriver(Framework));
for (const placement of PLACEMENTS) describeChains(`Fastify 5, hooks in ${placement}`, fastifyDriver(placement));
