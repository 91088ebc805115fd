// @till/core: key format, hashing, verification, stores and key management. No HTTP framework here.
export { TillError, isTillError, tillError, tillMessage, type TillErrorCode } from './errors.js';
export { isSafeText, safeText, escapeText, safeJson } from './util/text.js';
export {
  OUTCOME_CODES,
  failure,
  type OutcomeCode,
  type FailureCode,
  type VerifiedKey,
  type VerifyResult,
  type VerifySuccess,
  type Usage,
  type VerifyFailure,
  type MaybePromise,
} from './verify/outcome.js';
export {
  generateKey,
  parseKey,
  isValidPrefix,
  isValidKeyId,
  KEY_PATTERN,
  ID_LENGTH,
  SECRET_LENGTH,
  CHECK_LENGTH,
  MAX_KEY_LENGTH,
  type GeneratedKey,
  type ParsedKey,
  type ParseFailureReason,
} from './key/format.js';
export { crc32 } from './key/crc32.js';
export { createHasher, type KeyHasher, type HashAlgorithm } from './key/hash.js';
export { ScopeSet, scopesSatisfy, isValidScope, isValidGrant, isWildcard, normalizeRequired } from './verify/scopes.js';
export { keyStatus, toKeyInfo, toVerifiedKey, type KeyRecord, type KeyInfo, type KeyStatus } from './store/record.js';
export type { KeyStore, KeyPage, ListKeysQuery, InvalidationListener, ConsumeRequest, ConsumeResult } from './store/types.js';
export {
  evaluate,
  normalizeRateLimit,
  normalizeRateLimits,
  normalizeCredits,
  isValidLimitName,
  MAX_CAPACITY,
  MAX_CREDITS,
  type RateLimit,
  type RateLimitInput,
  type LimitCharge,
  type LimitState,
  type Credits,
  type CreditsInput,
  type ChargeOutcome,
} from './limits/rules.js';
export { LocalBuckets } from './limits/buckets.js';
export { Limiter } from './limits/limiter.js';
export { TillEvents, type TillEvent, type TillEventType, type TillEventListener, type VerificationEvent, type VerificationListener } from './audit/events.js';
export { TILL_CHANNELS, type VerifyMessage, type RequestMessage, type EventMessage, type LimitMessage, type StoreCallContext, type StoreMethod } from './observe/channels.js';
export { MemoryStore, type MemoryStoreOptions } from './store/memory.js';
export { Verifier, type VerifierOptions, type VerifyOptions, type CacheOptions, type VerifierStats } from './verify/verifier.js';
export { KeyManager, unconfirmedRotation, type UnconfirmedRotation, type CreateKeyInput, type CreatedKey, type KeyManagerOptions, type KeyPatch, type RotatedKey, type KeyIdentity } from './manage/manager.js';
export { parseDuration, MAX_DURATION } from './util/duration.js';
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
} from './http/extract.js';
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
} from './http/problem.js';
export { createTill, defaultTill, resetDefaultTill, isTill, type Till, type TillOptions } from './till.js';
export { consoleLogger, silentLogger, type Logger } from './util/logger.js';
export { systemClock, type Clock } from './util/clock.js';
export {
  createAuthenticator,
  createScopeCheck,
  createRateLimitGuard,
  checkOptionNames,
  type AuthOptions,
  type Authenticator,
  type RateLimitOptions,
  type RateLimitGuard,
  type RateLimitVerdict,
  type GuardRefusal,
} from './http/guard.js';
export { BruteForceGuard, type BruteForceOptions } from './limits/brute-force.js';
export { keyHeaderReader, type RequestHeaders } from './http/raw-headers.js';
export { contextOf, type RequestContext } from './http/request-context.js';
export {
  AUDIT_TYPES,
  CHANGE_TYPES,
  SECURITY_TYPES,
  toJsonLines,
  type AuditEntry,
  type AuditRecord,
  type AuditQuery,
  type AuditPage,
  type AuditType,
  type ChangeType,
  type SecurityType,
} from './audit/trail.js';
export { UsageTracker, UsageCounter, dayOf, type KeyUsage, type UsageBatchItem, type UsageOptions } from './audit/usage.js';
export { auditReport, type Report, type ReportOptions, type Finding, type FindingKind } from './audit/report.js';
export { findKeys, type FoundKey } from './key/scan.js';
export {
  createAlerts,
  loggerSink,
  webhookSink,
  signWebhook,
  verifyWebhookSignature,
  SIGNATURE_HEADER,
  type Alert,
  type AlertRule,
  type AlertRuleType,
  type AlertSink,
  type Alerts,
  type AlertsOptions,
  type WebhookOptions,
} from './audit/alerts.js';
