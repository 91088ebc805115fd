// Alert rules over verification outcomes, deduplicated, delivered to sinks: the logger, a signed webhook, a function.
// One file because the rules, their deduplication and the sinks share one alert shape and one check of their options.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { parseDuration } from '../util/duration.js';
import { tillError, tillMessage } from '../errors.js';
import type { VerificationEvent } from './events.js';
import type { Logger } from '../util/logger.js';
import type { OutcomeCode } from '../verify/outcome.js';
import type { Till } from '../till.js';
import { escapeText, safeJson } from '../util/text.js';
import { startExpiryReminders, type ExpiryReminders } from './reminders.js';

export type AlertRule =
  /** `threshold` failed verifications from one client IP within `window`. */
  | { readonly type: 'ip-failures'; readonly threshold: number; readonly window: string | number }
  /**
   * `threshold` refusals of one key for its own state within `window`: revoked, disabled, expired or
   * not yet valid, or short of a scope (its holder's mistakes, or a stolen key being tried).
   */
  | { readonly type: 'key-failures'; readonly threshold: number; readonly window: string | number }
  /**
   * `threshold` wrong secrets sent with one real key's id within `window`: someone knows the id (ids are
   * public) and is guessing, or holds a key of another environment. Probing, never the key's failure.
   */
  | { readonly type: 'key-probing'; readonly threshold: number; readonly window: string | number }
  /** A revoked key still being tried. */
  | { readonly type: 'revoked-key-used' }
  /** A key revoked as leaked (reason `leaked`, as `till scan --revoke` sets it) still being tried. */
  | { readonly type: 'leaked-key-used' }
  /** A key with `below` credits or fewer left. */
  | { readonly type: 'quota-low'; readonly below: number }
  /**
   * A key expiring within `days` days: once per key and expiry (a changed expiry is reminded of again),
   * for every process sharing the store, read from the store's expiry index every `every` (default `1h`).
   * At most one such rule.
   */
  | { readonly type: 'key-expiring'; readonly days: number; readonly every?: string | number };

export type AlertRuleType = AlertRule['type'];

/** One alert. Keys appear by public id only. */
export interface Alert {
  readonly id: string;
  readonly rule: AlertRuleType;
  readonly at: number;
  /** What the alert is about: a client IP or a key id. */
  readonly subject: string;
  readonly keyId?: string;
  readonly ip?: string;
  /** For `key-expiring`: the key's expiry, epoch ms. */
  readonly expiresAt?: number;
  /** Events counted toward it (the threshold for counting rules, 1 for the others). */
  readonly count: number;
  readonly message: string;
}

export type AlertSink = (alert: Alert) => void | Promise<void>;

export interface AlertsOptions {
  rules: readonly AlertRule[];
  sinks: readonly AlertSink[];
  /** The same rule on the same subject alerts at most once per this window. Default `10m`. */
  dedupWindow?: string | number;
  /** Most subjects (IPs, keys) counted at once, and most keys whose revocation reason is remembered; the least recent go first. Default 10,000. */
  maxSubjects?: number;
  /**
   * Most deliveries one sink may have unsettled at once (a hung webhook, a sink that never resolves);
   * alerts for that sink beyond it are dropped, counted in `stats.dropped` and logged once per burst.
   * Default 1,000.
   */
  maxInFlight?: number;
}

export interface AlertStats {
  /** Alerts raised and handed to the sinks. */
  sent: number;
  /** Alerts held back by deduplication. */
  suppressed: number;
  /** Deliveries not made because a sink already had `maxInFlight` deliveries unsettled (one per sink and alert). */
  dropped: number;
  /** Deliveries handed to a sink whose promise has not settled yet, all sinks together. */
  inFlight: number;
}

export interface Alerts {
  /** Alerts sent, held back by deduplication, dropped for a sink that is behind, and deliveries in flight. */
  readonly stats: Readonly<AlertStats>;
  /** Stops listening. */
  stop(): void;
  /** Resolves when every delivery of the alerts raised so far has settled (later alerts are not waited for). */
  idle(): Promise<void>;
  /**
   * Runs the `key-expiring` check now, besides its timer; resolves with the reminders raised (0 without
   * that rule), or rejects with the store's error.
   */
  checkExpiring(): Promise<number>;
}

/** Refusals of a key for its own state or scopes: its secret matched (a wrong one is probing, not this). */
const KEY_OWN_FAILURES: ReadonlySet<OutcomeCode> = new Set(['REVOKED', 'DISABLED', 'EXPIRED', 'NOT_YET_VALID', 'INSUFFICIENT_SCOPE', 'IP_NOT_ALLOWED']);

const FAILURES: ReadonlySet<OutcomeCode> = new Set([
  'MALFORMED',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'NOT_YET_VALID',
  'INSUFFICIENT_SCOPE',
  'BLOCKED',
  'IP_NOT_ALLOWED',
]);

function invalid(message: string): never {
  throw tillError('INVALID_OPTIONS', 'alerts', `${message}`);
}

function checkRule(rule: AlertRule): AlertRule & { windowMs?: number; everyMs?: number } {
  if (rule === null || typeof rule !== 'object') invalid('each rule must be an object with a type');
  switch (rule.type) {
    case 'ip-failures':
    case 'key-failures':
    case 'key-probing': {
      if (!Number.isInteger(rule.threshold) || rule.threshold < 1) invalid(`${rule.type}: threshold must be a positive integer`);
      let windowMs: number;
      try {
        windowMs = parseDuration(rule.window, `${rule.type} window`);
      } catch (error) {
        invalid((error as Error).message.replace(/^\[till\] \[keys\] /, ''));
      }
      if (windowMs < 1000) invalid(`${rule.type}: window must be at least 1s`);
      return { ...rule, windowMs };
    }
    case 'quota-low':
      if (!Number.isInteger(rule.below) || rule.below < 0) invalid('quota-low: below must be a non-negative integer');
      return rule;
    case 'revoked-key-used':
    case 'leaked-key-used':
      return rule;
    case 'key-expiring': {
      if (!Number.isInteger(rule.days) || rule.days < 1 || rule.days > 3650) invalid('key-expiring: days must be an integer from 1 to 3650');
      let everyMs: number;
      try {
        everyMs = parseDuration(rule.every ?? '1h', 'key-expiring every');
      } catch (error) {
        invalid((error as Error).message.replace(/^\[till\] \[keys\] /, ''));
      }
      if (everyMs < 1000) invalid('key-expiring: every must be at least 1s');
      return { ...rule, everyMs };
    }
    default:
      return invalid(
        `unknown rule type ${JSON.stringify((rule as { type: unknown }).type)}; types: ip-failures, key-failures, key-probing, revoked-key-used, leaked-key-used, quota-low, key-expiring`,
      );
  }
}

/**
 * Watches every verification outcome of `till` and raises alerts by `rules`, each rule and subject at
 * most once per `dedupWindow` (a flood gives one alert, not a million), delivered to every sink
 * without ever holding up a request.
 */
export function createAlerts(till: Till, options: AlertsOptions): Alerts {
  if (options === null || typeof options !== 'object') invalid('options must be { rules, sinks }');
  if (!Array.isArray(options.rules) || options.rules.length === 0) invalid('rules must be a non-empty array');
  if (!Array.isArray(options.sinks) || options.sinks.length === 0 || !options.sinks.every((s) => typeof s === 'function'))
    invalid('sinks must be a non-empty array of functions');
  const rules = options.rules.map(checkRule);
  const expiring = rules.filter((r) => r.type === 'key-expiring');
  if (expiring.length > 1) invalid('at most one key-expiring rule: each key is reminded of once per expiry');
  const dedup = parseDuration(options.dedupWindow ?? '10m', 'dedupWindow');
  const maxSubjects = options.maxSubjects ?? 10_000;
  if (!Number.isInteger(maxSubjects) || maxSubjects < 1) invalid('maxSubjects must be a positive integer');
  const maxInFlight = options.maxInFlight ?? 1000;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) invalid('maxInFlight must be a positive integer');
  const logger = till.logger;
  const counts = new LRUCache<string, { start: number; n: number }>({ max: maxSubjects });
  const fired = new LRUCache<string, number>({ max: maxSubjects });
  const stats: AlertStats = { sent: 0, suppressed: 0, dropped: 0, inFlight: 0 };
  // Deliveries not settled yet: each leaves the set when it settles, so a hung sink holds at most
  // `maxInFlight` of them and a settled one holds nothing (no ever-growing chain of promises).
  const deliveries = new Set<Promise<void>>();
  const sinks = options.sinks.map((sink, index) => ({ sink, index, inFlight: 0, dropping: false }));
  const lookups = new Set<Promise<void>>();
  // Why each revoked key was revoked: final once set (revoking again keeps the first reason), so read once per key.
  const reasons = new LRUCache<string, { reason: string | null }>({ max: maxSubjects });
  const reading = new Map<string, Promise<string | null | undefined>>();

  const deliver = (target: (typeof sinks)[number], alert: Alert): void => {
    if (target.inFlight >= maxInFlight) {
      stats.dropped++;
      if (!target.dropping) {
        target.dropping = true;
        logger.error(
          tillMessage(
            'alerts',
            `sink ${target.index + 1} has ${maxInFlight} deliveries unsettled (maxInFlight): alerts for it are dropped until it catches up; stats.dropped counts them`,
          ),
        );
      }
      return;
    }
    let result: void | Promise<void>;
    try {
      result = target.sink(alert);
    } catch (error) {
      failed(alert, error);
      return;
    }
    if (result === null || typeof result !== 'object' || typeof (result as Promise<void>).then !== 'function') return;
    target.inFlight++;
    stats.inFlight++;
    const delivery: Promise<void> = Promise.resolve(result)
      .then(
        () => {},
        (error: unknown) => failed(alert, error),
      )
      .finally(() => {
        deliveries.delete(delivery);
        target.inFlight--;
        stats.inFlight--;
        // The burst is over once the sink is down to half its allowance: the next burst logs again.
        if (target.dropping && target.inFlight <= maxInFlight >> 1) target.dropping = false;
      });
    deliveries.add(delivery);
  };

  const failed = (alert: Alert, error: unknown): void => {
    logger.error(tillMessage('alerts', `a sink failed for alert ${alert.rule} on ${alert.subject}: ${error instanceof Error ? error.message : String(error)}`));
  };

  const raise = (
    rule: AlertRuleType,
    subject: string,
    at: number,
    fields: Pick<Alert, 'count' | 'message'> & { keyId?: string; ip?: string; expiresAt?: number },
  ): void => {
    const seen = `${rule}\n${subject}`;
    const last = fired.get(seen);
    // A reminder is claimed in the store once per key and expiry: that is its deduplication.
    if (rule !== 'key-expiring' && last !== undefined && at - last < dedup) {
      stats.suppressed++;
      return;
    }
    fired.set(seen, at);
    stats.sent++;
    // The message quotes what a client sent (its address, through a proxy's header): escaped, so that a
    // log line or a chat message made of it reads as what it is.
    const alert: Alert = Object.freeze({ id: randomBytes(8).toString('hex'), rule, at, subject, ...fields, message: escapeText(fields.message) });
    if (rule === 'key-expiring') fired.delete(seen);
    for (const target of sinks) deliver(target, alert);
  };

  /** The reason `keyId` was revoked (null: revoked without one; undefined: not known to be revoked), read at most once per key. */
  const revocationReason = (keyId: string): { reason: string | null } | Promise<string | null | undefined> => {
    const known = reasons.get(keyId);
    if (known !== undefined) return known;
    let read = reading.get(keyId);
    if (read === undefined) {
      read = till.keys
        .get(keyId)
        .then(
          (info) => {
            if (info === null || info.revokedAt === null) return undefined;
            // Only a revoked record is remembered: its reason can no longer change.
            reasons.set(keyId, { reason: info.revokedReason });
            return info.revokedReason;
          },
          () => undefined,
        )
        .finally(() => reading.delete(keyId));
      reading.set(keyId, read);
    }
    return read;
  };

  const counted = (rule: AlertRule & { windowMs?: number }, subject: string, at: number, threshold: number): boolean => {
    const id = `${rule.type}\n${subject}`;
    let c = counts.get(id);
    if (c === undefined || at - c.start >= rule.windowMs!) counts.set(id, (c = { start: at, n: 0 }));
    c.n++;
    return c.n === threshold;
  };

  const onEvent = (event: VerificationEvent): void => {
    const failure = FAILURES.has(event.code);
    for (const rule of rules) {
      switch (rule.type) {
        case 'ip-failures':
          if (failure && event.ip !== undefined && counted(rule, event.ip, event.at, rule.threshold)) {
            raise('ip-failures', event.ip, event.at, {
              ip: event.ip,
              count: rule.threshold,
              message: `${rule.threshold} failed verifications from ${event.ip} within ${rule.window}`,
            });
          }
          break;
        case 'key-failures':
          if (KEY_OWN_FAILURES.has(event.code) && event.keyId !== null && counted(rule, event.keyId, event.at, rule.threshold)) {
            raise('key-failures', event.keyId, event.at, {
              keyId: event.keyId,
              count: rule.threshold,
              message: `${rule.threshold} refusals of key ${event.keyId} for its own state or scopes within ${rule.window}`,
            });
          }
          break;
        case 'key-probing':
          if (event.probe === true && event.keyId !== null && counted(rule, event.keyId, event.at, rule.threshold)) {
            raise('key-probing', event.keyId, event.at, {
              keyId: event.keyId,
              count: rule.threshold,
              message: `${rule.threshold} wrong secrets sent with the id of key ${event.keyId} within ${rule.window}: its id is known to someone without its secret`,
            });
          }
          break;
        case 'revoked-key-used':
          if (event.code === 'REVOKED' && event.keyId !== null) {
            raise('revoked-key-used', event.keyId, event.at, {
              keyId: event.keyId,
              ...(event.ip !== undefined && { ip: event.ip }),
              count: 1,
              message: `revoked key ${event.keyId} was tried${event.ip ? ` from ${event.ip}` : ''}`,
            });
          }
          break;
        case 'leaked-key-used':
          if (event.code === 'REVOKED' && event.keyId !== null) {
            const keyId = event.keyId;
            const at = event.at;
            const ip = event.ip;
            const leaked = (reason: string | null | undefined) => {
              if (reason === 'leaked')
                raise('leaked-key-used', keyId, at, {
                  keyId,
                  ...(ip !== undefined && { ip }),
                  count: 1,
                  message: `key ${keyId}, revoked as leaked, was tried${ip ? ` from ${ip}` : ''}`,
                });
            };
            const reason = revocationReason(keyId);
            if (!(reason instanceof Promise)) {
              leaked(reason.reason);
              break;
            }
            // Why the key was revoked is on its record: read once per key (concurrent events share the read), off the request.
            const lookup = reason.then(leaked);
            lookups.add(lookup);
            void lookup.finally(() => lookups.delete(lookup));
          }
          break;
        case 'quota-low':
          if (event.code === 'VALID' && event.keyId !== null && event.credits !== undefined && event.credits !== null && event.credits <= rule.below) {
            raise('quota-low', event.keyId, event.at, { keyId: event.keyId, count: 1, message: `key ${event.keyId} has ${event.credits} credits left` });
          }
          break;
      }
    }
  };

  // Through the Till's events: the `till:request` channel, this Till's messages only.
  const off = till.events.onVerification(onEvent);
  const rule = expiring[0] as { days: number; everyMs: number } | undefined;
  const reminders: ExpiryReminders | null =
    rule === undefined
      ? null
      : startExpiryReminders(till.keys, rule.days, rule.everyMs, logger, (keyId, expiresAt, at) =>
          raise('key-expiring', keyId, at, {
            keyId,
            expiresAt,
            count: 1,
            message: `key ${keyId} expires at ${new Date(expiresAt).toISOString()}, within ${rule.days} day${rule.days === 1 ? '' : 's'}`,
          }),
        );
  return {
    stats,
    stop() {
      off();
      reminders?.stop();
    },
    async idle() {
      // Only with the rule: without it, the deliveries to wait for are the ones raised before this call.
      if (reminders !== null) await reminders.idle();
      while (lookups.size > 0) await Promise.all([...lookups]);
      await Promise.all([...deliveries]);
    },
    checkExpiring: () => reminders?.check() ?? Promise.resolve(0),
  };
}

/** Alerts as warnings through a logger (Till's, by default). */
export function loggerSink(logger: Logger): AlertSink {
  return (alert) => logger.warn(tillMessage('alert', `${alert.rule}: ${escapeText(alert.message)}`));
}

export interface WebhookOptions {
  url: string;
  /** Signs each body (HMAC-SHA-256); the receiver checks it with `verifyWebhookSignature`. At least 16 characters. */
  secret: string;
  /** Attempts after the first, on a network error, a timeout, 429 or 5xx (a redirect is a failure, never followed nor retried). Default 5. */
  retries?: number;
  /** Milliseconds before the first retry, doubled each time (with jitter). Default 1,000. */
  backoff?: number;
  /** Milliseconds one attempt may take. Default 5,000. */
  timeout?: number;
  /** Most alerts waiting for delivery; more are dropped (and logged). Default 1,000. */
  maxPending?: number;
  logger?: Logger;
}

export const SIGNATURE_HEADER = 'till-signature';

/** `t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>">`: the time is signed too, against replays. */
export function signWebhook(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

/** Checks a webhook's signature header against its raw body, and that it is at most `toleranceSec` old. */
export function verifyWebhookSignature(secret: string, header: string | undefined, body: string, toleranceSec = 300, now = Date.now()): boolean {
  if (typeof header !== 'string' || header.length > 1024) return false;
  // Exactly `t=<digits>,v1=<64 lowercase hex>` in that order: anything else (a part missing, repeated
  // or extra, another encoding) is refused rather than guessed at.
  const match = /^t=(\d{1,15}),v1=([0-9a-f]{64})$/.exec(header);
  if (match === null) return false;
  const t = Number(match[1]);
  if (!(Math.abs(now / 1000 - t) <= toleranceSec)) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
}

/**
 * Posts each alert as JSON (`{ "alert": ... }`) to `url`, signed in the `Till-Signature` header,
 * retried with exponential backoff; delivery runs in the background and never holds up a request.
 * The returned sink resolves when the alert is delivered or given up on.
 */
export function webhookSink(options: WebhookOptions): AlertSink {
  if (options === null || typeof options !== 'object') throw tillError('INVALID_OPTIONS', 'alerts', 'webhookSink needs { url, secret }');
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw tillError('INVALID_OPTIONS', 'alerts', 'webhook url must be an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw tillError('INVALID_OPTIONS', 'alerts', 'webhook url must be http or https');
  if (typeof options.secret !== 'string' || options.secret.length < 16)
    throw tillError('INVALID_OPTIONS', 'alerts', 'webhook secret must be at least 16 characters');
  const retries = options.retries ?? 5;
  const backoff = options.backoff ?? 1000;
  const timeout = options.timeout ?? 5000;
  const maxPending = options.maxPending ?? 1000;
  for (const [name, value] of [
    ['retries', retries],
    ['backoff', backoff],
    ['timeout', timeout],
    ['maxPending', maxPending],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) throw tillError('INVALID_OPTIONS', 'alerts', `webhook ${name} must be a non-negative integer`);
  }
  let inFlight = 0;
  let dropping = false;
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref?.());

  return async (alert) => {
    if (inFlight >= maxPending) {
      // Once per burst, not once per alert: a hung receiver under a flood would otherwise flood the log.
      if (!dropping) options.logger?.error(tillMessage('alerts', `webhook queue full (${maxPending} deliveries pending): alerts are dropped until it drains`));
      dropping = true;
      return;
    }
    if (dropping && inFlight <= maxPending >> 1) dropping = false;
    inFlight++;
    try {
      // Every field escaped the same way (C1, bidi and zero-width characters too); the receiver parses the same values.
      const body = safeJson({ alert });
      for (let attempt = 0; ; attempt++) {
        let retryable = true;
        let why = '';
        try {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(options.secret, body), 'user-agent': 'till-alerts' },
            body,
            signal: AbortSignal.timeout(timeout),
            // Never follow a redirect: it would re-send the signed alert to wherever the Location points.
            redirect: 'manual',
          });
          await res.arrayBuffer().catch(() => undefined);
          if (res.ok) return;
          retryable = res.status === 429 || res.status >= 500;
          why = res.status >= 300 && res.status < 400 ? `HTTP ${res.status}: redirects are not followed` : `HTTP ${res.status}`;
        } catch (error) {
          why = error instanceof Error ? error.message : String(error);
        }
        if (!retryable || attempt >= retries) throw new Error(`webhook delivery failed after ${attempt + 1} attempts (${why})`);
        await sleep(backoff * 2 ** attempt * (0.75 + Math.random() * 0.5));
      }
    } finally {
      inFlight--;
    }
  };
}
