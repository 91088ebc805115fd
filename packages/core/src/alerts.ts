// Alert rules over verification outcomes, deduplicated, delivered to sinks: the logger, a signed webhook, a function.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { parseDuration } from './duration.js';
import { TillError } from './errors.js';
import type { VerificationEvent } from './events.js';
import type { Logger } from './logger.js';
import type { OutcomeCode } from './outcome.js';
import type { Till } from './till.js';

export type AlertRule =
  /** `threshold` failed verifications from one client IP within `window`. */
  | { readonly type: 'ip-failures'; readonly threshold: number; readonly window: string | number }
  /** `threshold` failed verifications naming one key id within `window` (wrong secrets, a revoked key...). */
  | { readonly type: 'key-failures'; readonly threshold: number; readonly window: string | number }
  /** A revoked key still being tried. */
  | { readonly type: 'revoked-key-used' }
  /** A key revoked as leaked (reason `leaked`, as `till scan --revoke` sets it) still being tried. */
  | { readonly type: 'leaked-key-used' }
  /** A key with `below` credits or fewer left. */
  | { readonly type: 'quota-low'; readonly below: number };

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
  /** Most subjects (IPs, keys) counted at once; the least recent go first. Default 10,000. */
  maxSubjects?: number;
}

export interface Alerts {
  /** Alerts sent, and alerts held back by deduplication. */
  readonly stats: { sent: number; suppressed: number };
  /** Stops listening. */
  stop(): void;
  /** Resolves when the sinks have been given every alert raised so far (and their promises settled). */
  idle(): Promise<void>;
}

const FAILURES: ReadonlySet<OutcomeCode> = new Set(['MALFORMED', 'NOT_FOUND', 'REVOKED', 'DISABLED', 'EXPIRED', 'NOT_YET_VALID', 'INSUFFICIENT_SCOPE', 'BLOCKED']);

function invalid(message: string): never {
  throw new TillError('INVALID_OPTIONS', `[till] [alerts] ${message}`);
}

function checkRule(rule: AlertRule): AlertRule & { windowMs?: number } {
  if (rule === null || typeof rule !== 'object') invalid('each rule must be an object with a type');
  switch (rule.type) {
    case 'ip-failures':
    case 'key-failures': {
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
    default:
      return invalid(`unknown rule type ${JSON.stringify((rule as { type: unknown }).type)}; types: ip-failures, key-failures, revoked-key-used, leaked-key-used, quota-low`);
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
  if (!Array.isArray(options.sinks) || options.sinks.length === 0 || !options.sinks.every((s) => typeof s === 'function')) invalid('sinks must be a non-empty array of functions');
  const rules = options.rules.map(checkRule);
  const dedup = parseDuration(options.dedupWindow ?? '10m', 'dedupWindow');
  const maxSubjects = options.maxSubjects ?? 10_000;
  if (!Number.isInteger(maxSubjects) || maxSubjects < 1) invalid('maxSubjects must be a positive integer');
  const logger = till.logger;
  const counts = new LRUCache<string, { start: number; n: number }>({ max: maxSubjects });
  const fired = new LRUCache<string, number>({ max: maxSubjects });
  const stats = { sent: 0, suppressed: 0 };
  let pending: Promise<void> = Promise.resolve();
  const lookups = new Set<Promise<void>>();

  const raise = (rule: AlertRuleType, subject: string, at: number, fields: Pick<Alert, 'count' | 'message'> & { keyId?: string; ip?: string }): void => {
    const seen = `${rule}\n${subject}`;
    const last = fired.get(seen);
    if (last !== undefined && at - last < dedup) {
      stats.suppressed++;
      return;
    }
    fired.set(seen, at);
    stats.sent++;
    const alert: Alert = Object.freeze({ id: randomBytes(8).toString('hex'), rule, at, subject, ...fields });
    for (const sink of options.sinks) {
      let delivered: Promise<void>;
      try {
        delivered = Promise.resolve(sink(alert));
      } catch (error) {
        delivered = Promise.reject(error);
      }
      pending = Promise.all([pending, delivered.catch((error: unknown) => logger.error(`[till] [alerts] a sink failed for alert ${alert.rule} on ${alert.subject}: ${error instanceof Error ? error.message : String(error)}`))]).then(() => {});
    }
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
            raise('ip-failures', event.ip, event.at, { ip: event.ip, count: rule.threshold, message: `${rule.threshold} failed verifications from ${event.ip} within ${rule.window}` });
          }
          break;
        case 'key-failures':
          if (failure && event.keyId !== null && counted(rule, event.keyId, event.at, rule.threshold)) {
            raise('key-failures', event.keyId, event.at, { keyId: event.keyId, count: rule.threshold, message: `${rule.threshold} failed verifications naming key ${event.keyId} within ${rule.window}` });
          }
          break;
        case 'revoked-key-used':
          if (event.code === 'REVOKED' && event.keyId !== null) {
            raise('revoked-key-used', event.keyId, event.at, { keyId: event.keyId, ...(event.ip !== undefined && { ip: event.ip }), count: 1, message: `revoked key ${event.keyId} was tried${event.ip ? ` from ${event.ip}` : ''}` });
          }
          break;
        case 'leaked-key-used':
          if (event.code === 'REVOKED' && event.keyId !== null) {
            const keyId = event.keyId;
            const seen = fired.get(`leaked-key-used\n${keyId}`);
            if (seen !== undefined && event.at - seen < dedup) {
              stats.suppressed++;
              break;
            }
            // Why the key was revoked is on its record: read once per key and window, off the request.
            const lookup = till.keys.get(keyId).then(
              (info) => {
                if (info?.revokedReason === 'leaked') {
                  raise('leaked-key-used', keyId, event.at, { keyId, ...(event.ip !== undefined && { ip: event.ip }), count: 1, message: `key ${keyId}, revoked as leaked, was tried${event.ip ? ` from ${event.ip}` : ''}` });
                }
              },
              () => {},
            );
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

  const off = till.events.onVerification(onEvent);
  return {
    stats,
    stop: off,
    async idle() {
      while (lookups.size > 0) await Promise.all([...lookups]);
      await pending;
    },
  };
}

/** Alerts as warnings through a logger (Till's, by default). */
export function loggerSink(logger: Logger): AlertSink {
  return (alert) => logger.warn(`[till] [alert] ${alert.rule}: ${alert.message}`);
}

export interface WebhookOptions {
  url: string;
  /** Signs each body (HMAC-SHA-256); the receiver checks it with `verifyWebhookSignature`. At least 16 characters. */
  secret: string;
  /** Attempts after the first, on a network error, a timeout, 429 or 5xx. Default 5. */
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
  if (typeof header !== 'string') return false;
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || typeof parts.v1 !== 'string' || !/^[0-9a-f]{64}$/.test(parts.v1)) return false;
  if (Math.abs(now / 1000 - t) > toleranceSec) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(parts.v1, 'hex'));
}

/**
 * Posts each alert as JSON (`{ "alert": ... }`) to `url`, signed in the `Till-Signature` header,
 * retried with exponential backoff; delivery runs in the background and never holds up a request.
 * The returned sink resolves when the alert is delivered or given up on.
 */
export function webhookSink(options: WebhookOptions): AlertSink {
  if (options === null || typeof options !== 'object') throw new TillError('INVALID_OPTIONS', '[till] [alerts] webhookSink needs { url, secret }');
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TillError('INVALID_OPTIONS', '[till] [alerts] webhook url must be an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TillError('INVALID_OPTIONS', '[till] [alerts] webhook url must be http or https');
  if (typeof options.secret !== 'string' || options.secret.length < 16) throw new TillError('INVALID_OPTIONS', '[till] [alerts] webhook secret must be at least 16 characters');
  const retries = options.retries ?? 5;
  const backoff = options.backoff ?? 1000;
  const timeout = options.timeout ?? 5000;
  const maxPending = options.maxPending ?? 1000;
  for (const [name, value] of [['retries', retries], ['backoff', backoff], ['timeout', timeout], ['maxPending', maxPending]] as const) {
    if (!Number.isInteger(value) || value < 0) throw new TillError('INVALID_OPTIONS', `[till] [alerts] webhook ${name} must be a non-negative integer`);
  }
  let inFlight = 0;
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref?.());

  return async (alert) => {
    if (inFlight >= maxPending) {
      options.logger?.error(`[till] [alerts] webhook queue full: alert ${alert.rule} on ${alert.subject} dropped`);
      return;
    }
    inFlight++;
    try {
      const body = JSON.stringify({ alert });
      for (let attempt = 0; ; attempt++) {
        let retryable = true;
        let why = '';
        try {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(options.secret, body), 'user-agent': 'till-alerts' },
            body,
            signal: AbortSignal.timeout(timeout),
          });
          await res.arrayBuffer().catch(() => undefined);
          if (res.ok) return;
          retryable = res.status === 429 || res.status >= 500;
          why = `HTTP ${res.status}`;
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
