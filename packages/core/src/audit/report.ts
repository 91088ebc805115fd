// The audit report: keys that should not exist any more, or not like this, each with why and what to do.
import { parseDuration } from '../util/duration.js';
import { tillError } from '../errors.js';
import type { KeyUsage, ListKeysQuery } from '../store/types.js';
import type { OutcomeCode } from '../verify/outcome.js';
import { keyStatus, type KeyInfo } from '../store/record.js';
import { isWildcard } from '../verify/scopes.js';
import type { ExpiringKeys, ExpiringOptions } from '../manage/expiring.js';

export type FindingKind = 'never-used' | 'unused' | 'no-expiry' | 'rotation-due' | 'wildcard-scope' | 'failures' | 'expiring';

export interface Finding {
  readonly keyId: string;
  readonly name: string;
  readonly ownerId: string | null;
  readonly kind: FindingKind;
  /** Why the key is listed, with the figures. */
  readonly why: string;
  /** What to do about it. */
  readonly action: string;
  /** The section of the key-handling guide that explains why this finding matters. */
  readonly docs: string;
}

/** Where the key-handling guide lives; each finding links the section that explains it. */
const GUIDE = 'https://github.com/till-keys/till/blob/main/docs/key-hygiene.md';

/** The guide's section for each finding kind (anchors the guide keeps stable). */
const DOCS: Readonly<Record<FindingKind, string>> = {
  'never-used': `${GUIDE}#retire-keys-nobody-uses`,
  unused: `${GUIDE}#retire-keys-nobody-uses`,
  'no-expiry': `${GUIDE}#give-every-key-an-expiry`,
  'rotation-due': `${GUIDE}#rotate-with-grace`,
  'wildcard-scope': `${GUIDE}#least-privilege-scopes`,
  failures: `${GUIDE}#watch-refusals`,
  expiring: 'https://github.com/till-keys/till/blob/main/docs/audit-and-alerts.md#expiry-reminders',
};

export interface ReportOptions {
  /** A key not used for this long is listed (`unused`). Default `90d`. */
  unusedFor?: string | number;
  /** A key never used and older than this is listed (`never-used`). Default `7d`. */
  neverUsedAfter?: string | number;
  /** A key older than this is due for rotation (`rotation-due`). Default `90d`. */
  rotationAge?: string | number;
  /**
   * Failed requests on a key within `failureDays` that list it (`failures`): refused for scope or for
   * the key's state (never wrong secrets, which anyone can send). Default 100.
   */
  failures?: number;
  /** Days counted for failures. Default 7. */
  failureDays?: number;
  /** Only this owner's keys. */
  ownerId?: string;
  /**
   * Lists keys expiring within this long (`expiring`, soonest first, after the others), read from the
   * store's expiry index. A reminder, not a fault: `till audit --revoke` never revokes a key for it. Default: not listed.
   */
  expiringWithin?: string | number;
  /** Now, epoch ms (tests). */
  now?: number;
}

/** What the report reads: the keys a page at a time and each key's usage. A KeyManager is one. */
export interface ReportSource {
  list(query: ListKeysQuery): Promise<{ keys: KeyInfo[]; cursor?: string }>;
  usage(id: string, options: { days?: number }): Promise<KeyUsage>;
  /** Keys expiring soon, from the expiry index (needed for `expiringWithin`). */
  expiring?(options: ExpiringOptions): Promise<ExpiringKeys>;
}

export interface Report {
  readonly generatedAt: number;
  readonly keysChecked: number;
  /** By key, in creation order; a key can have several. Then the `expiring` findings, soonest first. */
  readonly findings: Finding[];
  /**
   * With `expiringWithin`: false when the store's expiry index does not hold keys written before it
   * existed yet (run `till audit --reindex`), so some expiring keys may be missing.
   */
  readonly expiryIndexComplete?: boolean;
}

/**
 * Outcomes that count as failures of a key: its use refused for its own state or scopes, which
 * only a holder of the real secret can cause. Not NOT_FOUND: anyone can send a made-up secret
 * with a key's public id, and such requests must never get a key listed (and revoked by
 * `till audit --revoke`).
 */
const FAILURES: readonly OutcomeCode[] = ['INSUFFICIENT_SCOPE', 'REVOKED', 'DISABLED', 'EXPIRED', 'NOT_YET_VALID', 'IP_NOT_ALLOWED'];

const DAY = 86_400_000;
const days = (ms: number) => Math.floor(ms / DAY);

/**
 * Reads every key (a page at a time) and its usage, and lists the findings. Revoked and expired
 * keys are skipped: they already cannot be used. An admin path, for schedulers and `till audit`.
 */
export async function auditReport(keys: ReportSource, options: ReportOptions = {}): Promise<Report> {
  if (options === null || typeof options !== 'object') throw tillError('INVALID_ARGUMENT', 'audit', 'report options must be an object');
  const now = options.now ?? Date.now();
  const unusedFor = parseDuration(options.unusedFor ?? '90d', 'unusedFor');
  const neverUsedAfter = parseDuration(options.neverUsedAfter ?? '7d', 'neverUsedAfter');
  const rotationAge = parseDuration(options.rotationAge ?? '90d', 'rotationAge');
  const failures = options.failures ?? 100;
  const failureDays = options.failureDays ?? 7;
  const expiringWithin = options.expiringWithin === undefined ? undefined : parseDuration(options.expiringWithin, 'expiringWithin');
  if (expiringWithin !== undefined && typeof keys.expiring !== 'function')
    throw tillError('INVALID_ARGUMENT', 'audit', 'expiringWithin needs a source that reads the expiry index (a KeyManager)');
  if (!Number.isInteger(failures) || failures < 1) throw tillError('INVALID_ARGUMENT', 'audit', 'failures must be a positive integer');
  if (!Number.isInteger(failureDays) || failureDays < 1 || failureDays > 100)
    throw tillError('INVALID_ARGUMENT', 'audit', 'failureDays must be an integer from 1 to 100');

  const findings: Finding[] = [];
  let checked = 0;
  let cursor: string | undefined;
  do {
    const page = await keys.list({ limit: 1000, ...(options.ownerId !== undefined && { ownerId: options.ownerId }), ...(cursor !== undefined && { cursor }) });
    cursor = page.cursor;
    const live = page.keys.filter((k) => {
      const status = keyStatus(k, now);
      return status === 'active' || status === 'disabled' || status === 'not_yet_valid';
    });
    const usages = await Promise.all(live.map((k) => keys.usage(k.id, { days: failureDays })));
    live.forEach((key, i) => {
      checked++;
      findings.push(...judge(key, usages[i]!, now, { unusedFor, neverUsedAfter, rotationAge, failures, failureDays }));
    });
  } while (cursor !== undefined);
  if (expiringWithin === undefined) return { generatedAt: now, keysChecked: checked, findings };
  const complete = await expiringFindings(keys, expiringWithin, options.ownerId, now, findings);
  return { generatedAt: now, keysChecked: checked, findings, expiryIndexComplete: complete };
}

/** The `expiring` findings, from the expiry index a page at a time; whether the index was complete. */
async function expiringFindings(keys: ReportSource, within: number, ownerId: string | undefined, now: number, findings: Finding[]): Promise<boolean> {
  let complete = true;
  let cursor: string | undefined;
  do {
    const page = await keys.expiring!({ within, limit: 1000, ...(ownerId !== undefined && { ownerId }), ...(cursor !== undefined && { cursor }) });
    complete &&= page.complete;
    cursor = page.cursor;
    for (const key of page.keys) {
      const left = key.expiresAt! - now;
      const inDays = left < DAY ? 'within a day' : `in ${days(left)} day${days(left) === 1 ? '' : 's'}`;
      findings.push({
        keyId: key.id,
        name: key.name,
        ownerId: key.ownerId,
        kind: 'expiring',
        why: `expires ${inDays} (${new Date(key.expiresAt!).toISOString()})`,
        action: 'rotate it before then (till keys rotate <id> --grace 7d), or extend it (till keys update <id> --expires 90d)',
        docs: DOCS.expiring,
      });
    }
  } while (cursor !== undefined);
  return complete;
}

function judge(
  key: KeyInfo,
  usage: KeyUsage,
  now: number,
  limits: { unusedFor: number; neverUsedAfter: number; rotationAge: number; failures: number; failureDays: number },
): Finding[] {
  const out: Finding[] = [];
  const add = (kind: FindingKind, why: string, action: string) =>
    out.push({ keyId: key.id, name: key.name, ownerId: key.ownerId, kind, why, action, docs: DOCS[kind] });
  const age = now - key.createdAt;
  if (usage.lastUsedAt === null) {
    if (age >= limits.neverUsedAfter) add('never-used', `never used in the ${days(age)} days since it was created`, 'revoke it if nobody needs it');
  } else if (now - usage.lastUsedAt >= limits.unusedFor) {
    add('unused', `last used ${days(now - usage.lastUsedAt)} days ago`, 'revoke it if its client is gone');
  }
  if (key.expiresAt === null) add('no-expiry', 'never expires', 'give it an expiry (till keys update <id> --expires 90d), or rotate it to one that does');
  if (key.rotatedTo === null && age >= limits.rotationAge)
    add('rotation-due', `created ${days(age)} days ago, never rotated`, 'rotate it (till keys rotate <id> --grace 7d)');
  const wild = key.scopes.filter(isWildcard);
  if (wild.length > 0)
    add('wildcard-scope', `holds wildcard scopes: ${wild.join(', ')}`, 'narrow it to the scopes it needs (till keys update <id> --scope ...)');
  let failed = 0;
  for (const day of usage.days) for (const code of FAILURES) failed += day.counts[code] ?? 0;
  if (failed >= limits.failures)
    add(
      'failures',
      `${failed} failed request${failed === 1 ? '' : 's'} in the last ${limits.failureDays} days`,
      'find who sends them (till events list --key <id>); revoke it if it leaked',
    );
  return out;
}
