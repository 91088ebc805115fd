// @till/core/http: the kit that HTTP framework adapters (@till/express, @till/koa, @till/fastify) are
// written against. Applications do not need it: they use an adapter and @till/core.
//
// An adapter is only the mapping to its framework. It gives `createAdapter()` a FrameworkBinding that
// says how to read the Node request and the client IP, how to read and set a response header, and how to
// where the app reads the verified key (`req`, `ctx.state`, ...). Each of its middlewares then runs the
// kit's step for the request (`apiKeyAuth`, `scopeGuard`, `rateLimit`), which is synchronous whenever it
// can be, and either goes on (null) or answers the Refusal it gets: by sending its ProblemResponse
// (status, headers with `setHeaders`, JSON body), or by calling the app's `onFailure` with it. Everything
// else (option checks, extraction, verification, charges and refunds, audit entries and events, the
// request's context between middlewares) is done here, once for every framework.
export {
  createAdapter,
  warnOnce,
  type Adapter,
  type FrameworkBinding,
  type KeyHolder,
  type Refusal,
  type Step,
  type WithFailureHandler,
} from './adapter.js';
export type { AuthOptions } from './authenticator.js';
export type { RateLimitOptions } from './rate-limit.js';
export type { BruteForceOptions } from '../limits/brute-force.js';
export {
  problemResponse,
  challengeOf,
  statusOf,
  rateLimitHeaders,
  PROBLEM_CONTENT_TYPE,
  type Problem,
  type ProblemResponse,
  type ProblemOptions,
  type RateLimitHeaderStyle,
} from './problem.js';
export {
  createExtractor,
  NO_KEY,
  BAD_KEY,
  DEFAULT_SOURCES,
  DEFAULT_MAX_HEADER_LENGTH,
  type KeySource,
  type KeyExtractor,
  type Extraction,
  type HeaderBag,
} from './extract.js';
export { keyHeaderReader, type RequestHeaders } from './raw-headers.js';
// An adapter's own errors and messages, built like every other: `[till] [<adapter>] ...`.
export { tillError, tillMessage } from '../errors.js';
export { contextOf, type RequestContext, type Answer } from './request-context.js';
