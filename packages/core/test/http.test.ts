import { describe, expect, it } from 'vitest';
import { challengeOf, problemResponse } from '../src/http/problem.js';
import { failure, OUTCOME_CODES, type FailureCode, type VerifyFailure } from '../src/verify/outcome.js';

/** A failure without the details its code carries, as plain JavaScript could pass: the mapping must not need them. */
const bare = (code: FailureCode, details: object = {}) => ({ valid: false, code, ...details }) as VerifyFailure;

describe('HTTP mapping', () => {
  const expected: Record<FailureCode, number> = {
    MISSING: 401,
    MALFORMED: 401,
    NOT_FOUND: 401,
    REVOKED: 401,
    DISABLED: 401,
    EXPIRED: 401,
    NOT_YET_VALID: 401,
    INSUFFICIENT_SCOPE: 403,
    RATE_LIMITED: 429,
    USAGE_EXCEEDED: 429,
    BLOCKED: 429,
    IP_NOT_ALLOWED: 403,
    STORE_UNAVAILABLE: 503,
  };

  it('maps every failure code to its status and a problem+json body with a stable code', () => {
    for (const code of OUTCOME_CODES) {
      if (code === 'VALID') continue;
      const response = problemResponse(bare(code));
      expect(response.status).toBe(expected[code]);
      expect(response.headers['content-type']).toBe('application/problem+json');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.body).toMatchObject({ status: expected[code], code, type: expect.stringMatching(/^urn:till:problem:[a-z-]+$/) });
      expect(response.body.title.length).toBeGreaterThan(0);
      expect(response.body.detail.length).toBeGreaterThan(0);
    }
  });

  it('challenges per RFC 6750', () => {
    expect(challengeOf(failure('MISSING'))).toBe('Bearer');
    expect(challengeOf(failure('MISSING'), { realm: 'api' })).toBe('Bearer realm="api"');
    expect(challengeOf(failure('NOT_FOUND'))).toBe('Bearer error="invalid_token", error_description="Invalid API key"');
    expect(challengeOf(bare('INSUFFICIENT_SCOPE', { requiredScopes: ['a:b', 'c'] }), { realm: 'x"y' })).toBe(
      'Bearer realm="x\\"y", error="insufficient_scope", scope="a:b c"',
    );
    expect(challengeOf(bare('RATE_LIMITED'))).toBeUndefined();
    expect(challengeOf(bare('STORE_UNAVAILABLE'))).toBeUndefined();
    // A refused address is no token or scope error: no challenge, and nothing of the allowed ranges.
    expect(challengeOf(failure('IP_NOT_ALLOWED', { keyId: 'k' }), { realm: 'api' })).toBeUndefined();
    expect(problemResponse(failure('IP_NOT_ALLOWED', { keyId: 'k' })).body).toEqual({
      type: 'urn:till:problem:ip-not-allowed',
      title: 'IP address not allowed',
      status: 403,
      detail: 'The API key may not be used from this IP address.',
      code: 'IP_NOT_ALLOWED',
    });
  });

  it('sets Retry-After on 429 and 503, and lists needed scopes on 403', () => {
    const r = problemResponse({ valid: false, code: 'STORE_UNAVAILABLE', retryAfter: 2 });
    expect(r.headers['retry-after']).toBe('2');
    expect(r.body.retry_after).toBe(2);
    const s = problemResponse({ valid: false, code: 'INSUFFICIENT_SCOPE', requiredScopes: ['a', 'b'], scopeMode: 'any' });
    expect(s.body).toMatchObject({ required_scopes: ['a', 'b'], scope_mode: 'any', detail: 'This request needs one of the scopes: a, b.' });
    expect(s.headers['www-authenticate']).toContain('error="insufficient_scope"');
  });
});

describe('keyStatus', () => {
  it('counts a revocation at once, even one stamped ahead by a host whose clock runs fast', async () => {
    const { keyStatus } = await import('../src/store/record.js');
    const base = { disabled: false, expiresAt: null, notBefore: null };
    expect(keyStatus({ ...base, revokedAt: 2_000 }, 1_000)).toBe('revoked');
    expect(keyStatus({ ...base, revokedAt: null }, 1_000)).toBe('active');
    expect(keyStatus({ ...base, revokedAt: null, expiresAt: 1_000 }, 1_000)).toBe('expired');
    expect(keyStatus({ ...base, revokedAt: null, notBefore: 1_001 }, 1_000)).toBe('not_yet_valid');
  });
});

describe('key extraction', () => {
  it('reads the scheme alone as an empty token only after HTTP whitespace (space, tab), as the fuzz oracle does', async () => {
    const { createExtractor, NO_KEY, BAD_KEY } = await import('../src/http/extract.js');
    const { scan } = createExtractor();
    expect(scan({ authorization: 'Bearer' })).toBe(BAD_KEY);
    expect(scan({ authorization: 'Bearer \t' })).toBe(BAD_KEY);
    // A no-break space is no HTTP whitespace: "Bearer" and it is a header of no scheme of ours.
    expect(scan({ authorization: 'Bearer\u00a0' })).toBe(NO_KEY);
  });

  it('trims a token as String.prototype.trim does, whatever whitespace is around it (skipped only when both ends are printable ASCII)', async () => {
    const { createExtractor, NO_KEY, BAD_KEY } = await import('../src/http/extract.js');
    const { scan } = createExtractor();
    const key = 'till_aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbcccccc';
    const around = ['', ' ', '\t', '\u00a0', '\ufeff', '\u2028', '\u3000', '\n', ' \u00a0', '\u007f', '~', '!'];
    for (const before of around) {
      for (const after of around) {
        for (const [name, value, scheme] of [
          ['authorization', `Bearer ${before}${key}${after}`, 7],
          ['x-api-key', `${before}${key}${after}`, 0],
        ] as const) {
          const expected = value.slice(scheme).trim();
          const found = scan({ [name]: value });
          if (expected.length === 0) expect(found === BAD_KEY || found === NO_KEY).toBe(true);
          else expect(found, JSON.stringify(value)).toBe(expected);
        }
      }
    }
  });
});
