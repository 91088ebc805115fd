// What a refusal leaves behind besides its response: an audit entry and an event for verification listeners.
import type { SecurityType } from '../audit/trail.js';
import { parseKey } from '../key/format.js';
import { clientKey } from '../limits/client-ip.js';
import type { Till } from '../till.js';
import { isWrongSecret, type VerifyFailure, type VerifyResult } from '../verify/outcome.js';

/** How each refusal goes into the audit trail. A request without any key is no attempt; an outage is not the client's. */
const AUDITED: Partial<Record<string, SecurityType>> = {
  MALFORMED: 'auth.failed',
  NOT_FOUND: 'auth.failed',
  INSUFFICIENT_SCOPE: 'auth.failed',
  REVOKED: 'key.misused',
  DISABLED: 'key.misused',
  EXPIRED: 'key.misused',
  NOT_YET_VALID: 'key.misused',
  RATE_LIMITED: 'limit.refused',
  USAGE_EXCEEDED: 'limit.refused',
  BLOCKED: 'client.blocked',
  IP_NOT_ALLOWED: 'key.misused',
};

/** Whether a refusal with this code goes into the audit trail at all (so callers skip reading the client's address). */
export function isAudited(code: string): boolean {
  return AUDITED[code] !== undefined;
}

/**
 * The key id a refusal names: its own, or the id of the well-formed key that did not verify (public,
 * and what an operator searches by).
 */
function keyIdOf(failure: VerifyFailure, key: string | null): string | null {
  if (failure.keyId !== undefined) return failure.keyId;
  if (key === null) return null;
  const parsed = parseKey(key);
  return parsed.ok ? parsed.id : null;
}

/**
 * A client address as events and the trail carry it: a valid IP as canonical text, anything else (what
 * a proxy header may hold: kilobytes, braces, escapes) as a short hash, never the client's text.
 */
function textOfAddress(address: string | undefined): string | undefined {
  return address === undefined ? undefined : clientKey(address, 128);
}

/** Tells verification listeners of an outcome (only called when someone listens). */
export function observeOutcome(till: Till, result: VerifyResult, key: string | null, address: string | undefined, userAgent: unknown): void {
  const keyId = result.valid ? result.key.id : keyIdOf(result, key);
  const ip = textOfAddress(address);
  const credits = result.usage?.credits;
  till.events.emitVerification({
    code: result.code,
    keyId,
    at: till.verifier.clock(),
    ...(isWrongSecret(result) && { probe: true }),
    ...(ip !== undefined && { ip }),
    ...(typeof userAgent === 'string' && { userAgent: userAgent.slice(0, 200) }),
    ...(credits !== undefined && { credits }),
  });
}

/**
 * Records a refusal in the audit trail (in batches, off the request path), under the key's owner when
 * the key is known: `till events list --owner` then finds what was tried with an owner's keys.
 */
export function auditRefusal(
  till: Till,
  failure: VerifyFailure,
  key: string | null,
  address: string | undefined,
  userAgent: unknown,
  detail?: string,
  ownerId?: string | null,
): void {
  const type = isWrongSecret(failure) ? 'key.probed' : AUDITED[failure.code];
  if (type === undefined || till.auditWriter === null) return;
  const ip = textOfAddress(address);
  const keyId = keyIdOf(failure, key);
  const owner = ownerId !== undefined ? ownerId : keyId === null || failure.code === 'MALFORMED' ? null : till.verifier.ownerOf(keyId);
  till.auditWriter.record({ type, code: failure.code, keyId, ownerId: owner, ip, userAgent, ...(detail !== undefined && { detail }) });
}

/**
 * A route guard's refusal of a request whose key is known (or absent): into the trail under the key's
 * owner, and to listeners. The client's address is read only when one of them wants it.
 */
export function recordRefusal(
  till: Till,
  failure: VerifyFailure,
  ip: () => string | undefined,
  userAgent: unknown,
  ownerId: string | null,
  detail?: string,
): void {
  if (till.auditWriter !== null) auditRefusal(till, failure, null, ip(), userAgent, detail, ownerId);
  if (till.events.observed) observeOutcome(till, failure, null, ip(), userAgent);
}
