// @till/core: key format, hashing, verification, stores and key management. No HTTP framework here.
export { TillError, isTillError, type TillErrorCode } from './errors.js';
export { isSafeText, safeText, escapeText, safeJson } from './text.js';
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
} from './outcome.js';
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
} from './key-format.js';
export { crc32 } from './crc32.js';
export { createHasher, type KeyHasher, type HashAlgorithm } from './hash.js';
export { ScopeSet, scopesSatisfy, isValidScope, isValidGrant, isWildcard, normalizeRequired } from './scopes.js';
export { keyStatus, toKeyInfo, toVerifiedKey, type KeyRecord, type KeyInfo, type KeyStatus } from './record.js';
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
} from './limits.js';
export { LocalBuckets } from './store/buckets.js';
export { Limiter } from './limiter.js';
export { TillEvents, type TillEvent, type TillEventType, type TillEventListener, type VerificationEvent, type VerificationListener } from './events.js';
export { MemoryStore, type MemoryStoreOptions } from './store/memory.js';
export { Verifier, type VerifierOptions, type VerifyOptions, type CacheOptions, type VerifierStats } from './verifier.js';
export { KeyManager, unconfirmedRotation, type UnconfirmedRotation, type CreateKeyInput, type CreatedKey, type KeyManagerOptions, type KeyPatch, type RotatedKey, type KeyIdentity } from './manager.js';
export { parseDuration, MAX_DURATION } from './duration.js';
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
} from './http.js';
export { createTill, defaultTill, resetDefaultTill, isTill, type Till, type TillOptions } from './till.js';
export { consoleLogger, silentLogger, type Logger } from './logger.js';
export { systemClock, type Clock } from './clock.js';
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
} from './guard.js';
export { BruteForceGuard, type BruteForceOptions } from './brute-force.js';
export { keyHeaderReader, type RequestHeaders } from './raw-headers.js';
export { contextOf, type RequestContext } from './request-context.js';
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
} from './audit.js';
export { UsageTracker, UsageCounter, dayOf, type KeyUsage, type UsageBatchItem, type UsageOptions } from './usage.js';
export { auditReport, type Report, type ReportOptions, type Finding, type FindingKind } from './report.js';
export { findKeys, type FoundKey } from './scan.js';
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
} from './alerts.js';
