// @till/core: what applications call: createTill(), the stores, key management, audit, alerts and their
// types. No HTTP framework here: use an adapter (@till/express, @till/koa, @till/fastify); adapter
// authors find their kit in @till/core/http, the Redis store is in @till/core/redis, metrics in @till/core/metrics.
export { createTill, defaultTill, resetDefaultTill, isTill, type Till, type TillOptions } from './till.js';
export { TillError, isTillError, type TillErrorCode } from './errors.js';
export {
  OUTCOME_CODES,
  type OutcomeCode,
  type FailureCode,
  type VerifiedKey,
  type VerifyResult,
  type VerifySuccess,
  type VerifyFailure,
  type Usage,
  type MaybePromise,
} from './verify/outcome.js';
export type { Verifier, VerifyOptions, CacheOptions, VerifierStats } from './verify/verifier.js';
// The key format: apps and tools that handle keys and ids (validating a route's :id, the CLI's input).
export {
  generateKey,
  parseKey,
  isValidPrefix,
  isValidKeyId,
  KEY_PATTERN,
  ID_LENGTH,
  type GeneratedKey,
  type ParsedKey,
  type ParseFailureReason,
} from './key/format.js';
export { isValidGrant } from './verify/scopes.js';
export {
  unconfirmedRotation,
  type KeyManager,
  type UnconfirmedRotation,
  type CreateKeyInput,
  type CreatedKey,
  type KeyPatch,
  type RotatedKey,
  type KeyIdentity,
} from './manage/manager.js';
export { keyStatus, type KeyRecord, type KeyInfo, type KeyStatus } from './store/record.js';
// Identities: owners whose limits and credits all of their keys share.
export type { IdentityManager, CreateIdentityInput, IdentityPatch, DeletedIdentity } from './identity/manager.js';
export { isValidIdentityId, type IdentityRecord } from './identity/record.js';
export type { IdentityCharge, IdentityPage, ListIdentitiesQuery } from './store/types.js';
// The store contract, for custom stores.
export { MemoryStore, type MemoryStoreOptions } from './store/memory.js';
export type { KeyStore, KeyPage, ListKeysQuery, InvalidationListener, ConsumeRequest, ConsumeResult } from './store/types.js';
export type { KeyUsage, UsageBatchItem, UsageOptions } from './audit/usage.js';
// Limits and credits. The two checks are what key creation runs, for tools that check input before the store (the CLI).
export {
  normalizeRateLimits,
  normalizeCredits,
  type RateLimit,
  type RateLimitInput,
  type LimitCharge,
  type LimitState,
  type Credits,
  type CreditsInput,
  type ChargeOutcome,
} from './limits/rules.js';
export { parseDuration } from './util/duration.js';
export type { TillEvent, TillEventType, TillEventListener, VerificationEvent, VerificationListener } from './audit/events.js';
export {
  TILL_CHANNELS,
  type VerifyMessage,
  type RequestMessage,
  type EventMessage,
  type LimitMessage,
  type StoreCallContext,
  type StoreMethod,
} from './observe/channels.js';
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
export { consoleLogger, silentLogger, type Logger } from './util/logger.js';
export type { Clock } from './util/clock.js';
// Printing text that clients control (key names, metadata) to a terminal or a log: the CLI and admin tools.
export { escapeText, safeJson } from './util/text.js';
// Expiry reminders: the expiry index every store keeps, read by `till.keys.expiring()`, the audit and the `key-expiring` alert rule.
export type { ExpiringKeys, ExpiringOptions } from './manage/manager.js';
export type { ExpiringQuery, ExpiringPage, ExpiringEntry, ReindexResult } from './store/types.js';
export { indexedExpiry } from './store/expiry.js';
// IP allowlists: the range check key creation runs, for tools that check input before the store (the CLI).
export { parseCidr, normalizeAllowlist, MAX_ALLOWED_IPS, type Cidr } from './verify/allowlist.js';
// Roles: named scope bundles keys hold (`till.roles`), and the name check the CLI shares.
export { isValidRoleName, MAX_ROLES, type RoleRecord } from './store/role.js';
export type { RoleManager, DeletedRole } from './manage/roles.js';
