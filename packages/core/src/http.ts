// Outcome to HTTP, framework-neutral: status, RFC 6750 challenge, RFC 9457 problem body.
import type { FailureCode, VerifyFailure } from './outcome.js';

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
  RATE_LIMITED: [429, 'Rate limit exceeded', 'Too many requests with this API key; retry later.'],
  USAGE_EXCEEDED: [429, 'Usage exceeded', 'The API key has no usage credits left.'],
  BLOCKED: [429, 'Too many failed attempts', 'Too many failed authentications from this client; retry later.'],
  STORE_UNAVAILABLE: [503, 'Service unavailable', 'API keys cannot be checked right now; retry later.'],
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
  if (result.retryAfter !== undefined && (status === 429 || status === 503)) {
    headers['retry-after'] = String(result.retryAfter);
    body.retry_after = result.retryAfter;
  }
  return { status, headers, body };
}
