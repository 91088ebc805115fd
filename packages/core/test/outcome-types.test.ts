// VerifyFailure is a union on `code`: narrowing gives each code exactly its details, and failure()
// takes the details a code needs. Checked by the type checker (pnpm typecheck); the runtime part
// checks the values failure() builds.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { failure, type FailureOf, type Usage, type VerifyFailure, type VerifyResult } from '../src/verify/outcome.js';

const usage: Usage = { limits: [], credits: 0 };

describe('VerifyFailure', () => {
  it('narrows on code to the details of that code', () => {
    const check = (result: VerifyResult): void => {
      if (result.valid) return;
      switch (result.code) {
        case 'INSUFFICIENT_SCOPE':
          expectTypeOf(result.requiredScopes).toEqualTypeOf<readonly string[]>();
          expectTypeOf(result.scopeMode).toEqualTypeOf<'all' | 'any'>();
          expectTypeOf(result.retryAfter).toEqualTypeOf<undefined>();
          expectTypeOf(result.usage).toEqualTypeOf<undefined>();
          break;
        case 'RATE_LIMITED':
        case 'USAGE_EXCEEDED':
          expectTypeOf(result.usage).toEqualTypeOf<Usage>();
          expectTypeOf(result.retryAfter).toEqualTypeOf<number | undefined>();
          expectTypeOf(result.requiredScopes).toEqualTypeOf<undefined>();
          break;
        case 'BLOCKED':
        case 'STORE_UNAVAILABLE':
          expectTypeOf(result.retryAfter).toEqualTypeOf<number>();
          expectTypeOf(result.keyId).toEqualTypeOf<undefined>();
          expectTypeOf(result.usage).toEqualTypeOf<undefined>();
          break;
        case 'REVOKED':
        case 'DISABLED':
        case 'EXPIRED':
        case 'NOT_YET_VALID':
          expectTypeOf(result.keyId).toEqualTypeOf<string>();
          expectTypeOf(result.retryAfter).toEqualTypeOf<undefined>();
          break;
        case 'IP_NOT_ALLOWED':
          // The key, never the ranges it allows.
          expectTypeOf(result.keyId).toEqualTypeOf<string>();
          expectTypeOf(result.requiredScopes).toEqualTypeOf<undefined>();
          expectTypeOf(result.usage).toEqualTypeOf<undefined>();
          break;
        case 'MISSING':
        case 'MALFORMED':
        case 'NOT_FOUND':
          // Nothing that tells an unknown id from a wrong secret, nor anything else.
          expectTypeOf(result.keyId).toEqualTypeOf<undefined>();
          expectTypeOf(result.requiredScopes).toEqualTypeOf<undefined>();
          expectTypeOf(result.retryAfter).toEqualTypeOf<undefined>();
          expectTypeOf(result.usage).toEqualTypeOf<undefined>();
          break;
        default:
          expectTypeOf(result).toBeNever();
      }
    };
    expectTypeOf(check).parameter(0).toEqualTypeOf<VerifyResult>();
  });

  it('reads the shared field names on any failure, so generic code needs no narrowing', () => {
    expectTypeOf<VerifyFailure['retryAfter']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<VerifyFailure['usage']>().toEqualTypeOf<Usage | undefined>();
    expectTypeOf<VerifyFailure['requiredScopes']>().toEqualTypeOf<readonly string[] | undefined>();
    expectTypeOf<VerifyFailure['keyId']>().toEqualTypeOf<string | undefined>();
  });

  it('builds each code with the details it needs, and no others', () => {
    expectTypeOf(failure('NOT_FOUND')).toMatchTypeOf<FailureOf<'NOT_FOUND'>>();
    expectTypeOf(failure('NOT_FOUND').code).toEqualTypeOf<'NOT_FOUND'>();
    expectTypeOf(failure('REVOKED', { keyId: 'k' }).keyId).toEqualTypeOf<string>();
    expectTypeOf(failure('RATE_LIMITED', { usage }).usage).toEqualTypeOf<Usage>();
    expectTypeOf(failure('BLOCKED', { retryAfter: 3 }).retryAfter).toEqualTypeOf<number>();

    // @ts-expect-error a refused scope says which scopes were asked for
    failure('INSUFFICIENT_SCOPE');
    // @ts-expect-error and how many of them were needed
    failure('INSUFFICIENT_SCOPE', { requiredScopes: ['a'] });
    // @ts-expect-error a limit refusal carries the limits' state
    failure('RATE_LIMITED', { retryAfter: 1 });
    // @ts-expect-error a key's state failure names the key
    failure('EXPIRED');
    // @ts-expect-error the store's unavailability says when to retry
    failure('STORE_UNAVAILABLE', {});
    // @ts-expect-error NOT_FOUND never names the key: unknown id and wrong secret must look alike
    failure('NOT_FOUND', { keyId: 'k' });
    // @ts-expect-error scopes belong to INSUFFICIENT_SCOPE only
    failure('BLOCKED', { retryAfter: 1, requiredScopes: ['a'] });
    // @ts-expect-error not a failure code
    failure('VALID');
  });

  it('builds frozen values: shared per code without details, with exactly the details given otherwise', () => {
    expect(failure('MISSING')).toBe(failure('MISSING'));
    expect(Object.isFrozen(failure('MISSING'))).toBe(true);
    const scope = failure('INSUFFICIENT_SCOPE', { keyId: 'k', requiredScopes: ['a'], scopeMode: 'any' });
    expect(scope).toEqual({ valid: false, code: 'INSUFFICIENT_SCOPE', keyId: 'k', requiredScopes: ['a'], scopeMode: 'any' });
    expect(Object.isFrozen(scope)).toBe(true);
    expect(failure('RATE_LIMITED', { usage, retryAfter: 2 })).toEqual({ valid: false, code: 'RATE_LIMITED', usage, retryAfter: 2 });
  });
});
