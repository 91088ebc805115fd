// Outcome to HTTP, framework-neutral: status, RFC 6750 challenge, RFC 9457 problem body.
import type { LimitState } from '../limits/rules.js';
import type { FailureCode, VerifyFailure } from '../verify/outcome.js';

/** An RFC 9457 problem body. `code` is the stable outcome code; it never holds a key or a hash. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: FailureCode;
  readonly required_scopes?: readonly string[];
  readonly scope_mode?: 'all' | 'any';
  readonly retry_after?: number;
}

export interface ProblemResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Problem;
}

export interface ProblemOptions {
  /** `realm` of the `WWW-Authenticate` challenge; omitted when absent. */
  realm?: string;
  /** Which rate-limit headers a 429 carries. Default `draft-11`. */
  rateLimitHeaders?: RateLimitHeaderStyle;
}

/**
 * Rate-limit headers to send:
 * - `draft-11`: `RateLimit` and `RateLimit-Policy` of draft-ietf-httpapi-ratelimit-headers-11
 *   (structured-field lists with one item per limit: `"per-second";q=10;w=1` and `"per-second";r=9;t=1`);
 * - `draft-6`: the older `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (of the limit
 *   closest to refusing) and `RateLimit-Policy: 10;w=1`, as many clients still read them;
 * - `false`: none (`Retry-After` on a 429 stays).
 */
export type RateLimitHeaderStyle = 'draft-11' | 'draft-6' | false;

export const RATE_LIMIT_HEADER_STYLES: readonly RateLimitHeaderStyle[] = ['draft-11', 'draft-6', false];

const seconds = (ms: number): number => Math.ceil(ms / 1000);

/** The rate-limit headers describing `limits`, in lowercase names; empty when there are none. */
export function rateLimitHeaders(limits: readonly LimitState[], style: RateLimitHeaderStyle = 'draft-11'): Record<string, string> {
  if (style === false || limits.length === 0) return {};
  if (style === 'draft-6') {
    let tightest = limits[0]!;
    for (const l of limits) if (l.remaining < tightest.remaining) tightest = l;
    return {
      'ratelimit-limit': String(tightest.limit),
      'ratelimit-remaining': String(tightest.remaining),
      'ratelimit-reset': String(seconds(tightest.reset)),
      'ratelimit-policy': limits.map((l) => `${l.limit};w=${seconds(l.window)}`).join(', '),
    };
  }
  return {
    'ratelimit-policy': limits.map((l) => `"${l.name}";q=${l.limit};w=${seconds(l.window)}`).join(', '),
    ratelimit: limits.map((l) => `"${l.name}";r=${l.remaining};t=${seconds(l.reset)}`).join(', '),
  };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const TEXT: Record<FailureCode, readonly [status: number, title: string, detail: string]> = {
  MISSING: [401, 'API key required', 'Send an API key as "Authorization: Bearer <key>" or in the X-API-Key header.'],
  MALFORMED: [401, 'Invalid API key', 'The API key is malformed, or the request carries more than one key.'],
  NOT_FOUND: [401, 'Invalid API key', 'The API key is not valid.'],
  REVOKED: [401, 'API key revoked', 'The API key has been revoked.'],
  DISABLED: [401, 'API key disabled', 'The API key is disabled.'],
  EXPIRED: [401, 'API key expired', 'The API key has expired.'],
  NOT_YET_VALID: [401, 'API key not yet valid', 'The API key is not valid yet.'],
  INSUFFICIENT_SCOPE: [403, 'Insufficient scope', 'The API key lacks a scope this request needs.'],
  RATE_LIMITED: [429, 'Rate limit exceeded', 'Too many requests; retry later.'],
  USAGE_EXCEEDED: [429, 'Usage exceeded', 'The API key has no usage credits left.'],
  BLOCKED: [429, 'Too many failed attempts', 'Too many failed authentications from this client; retry later.'],
  STORE_UNAVAILABLE: [503, 'Service unavailable', 'API keys cannot be checked right now; retry later.'],
  IP_NOT_ALLOWED: [403, 'IP address not allowed', 'The API key may not be used from this IP address.'],
};

/** HTTP status of a failure. */
export function statusOf(code: FailureCode): number {
  return TEXT[code][0];
}

function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}

/** The `WWW-Authenticate` value for a 401 or 403, per RFC 6750 section 3. */
export function challengeOf(result: VerifyFailure, options: ProblemOptions = {}): string | undefined {
  const params: string[] = [];
  if (options.realm !== undefined) params.push(`realm=${quote(options.realm)}`);
  const status = statusOf(result.code);
  // No Bearer error code fits a refused address (RFC 6750 names token and scope errors): no challenge.
  if (result.code === 'IP_NOT_ALLOWED') return undefined;
  if (status === 403) {
    params.push('error="insufficient_scope"');
    if (result.requiredScopes) params.push(`scope=${quote(result.requiredScopes.join(' '))}`);
  } else if (status === 401 && result.code !== 'MISSING') {
    // Without credentials the challenge carries no error code (RFC 6750 section 3.1).
    params.push('error="invalid_token"', `error_description=${quote(TEXT[result.code][1])}`);
  } else if (status !== 401) {
    return undefined;
  }
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`;
}

/** The full default response for a failed verification. */
export function problemResponse(result: VerifyFailure, options: ProblemOptions = {}): ProblemResponse {
  const [status, title, baseDetail] = TEXT[result.code];
  const headers: Record<string, string> = { 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store' };
  const challenge = challengeOf(result, options);
  if (challenge !== undefined) headers['www-authenticate'] = challenge;
  let detail = baseDetail;
  const body: { -readonly [K in keyof Problem]: Problem[K] } = {
    type: `urn:till:problem:${result.code.toLowerCase().replace(/_/g, '-')}`,
    title,
    status,
    detail,
    code: result.code,
  };
  if (result.code === 'INSUFFICIENT_SCOPE' && result.requiredScopes) {
    const mode = result.scopeMode ?? 'all';
    detail = `This request needs ${mode === 'all' ? 'the scopes' : 'one of the scopes'}: ${result.requiredScopes.join(', ')}.`;
    body.detail = detail;
    body.required_scopes = result.requiredScopes;
    body.scope_mode = mode;
  }
  if (result.usage !== undefined) Object.assign(headers, rateLimitHeaders(result.usage.limits, options.rateLimitHeaders));
  if (result.retryAfter !== undefined && (status === 429 || status === 503)) {
    headers['retry-after'] = String(result.retryAfter);
    body.retry_after = result.retryAfter;
  }
  return { status, headers, body };
}
