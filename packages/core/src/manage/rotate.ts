// Rotation: a new key with the old one's settings, and the old key expiring after a grace period.
import { isTillError, tillError, type TillError } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import { assertRotatable, checkId, fail } from './checks.js';
import type { ChangeContext, CreatedKey, RotatedKey, UnconfirmedRotation } from './types.js';
import type { KeyWriter } from './writer.js';

const DEFAULT_GRACE = '24h';

/**
 * Issues a new key with the old one's name, owner, scopes, metadata and prefix (and, if the old
 * key expires, the same lifetime counted from now), and makes the old key expire after `grace`
 * (default 24h), never later than it would have. The two are linked by rotatedFrom/rotatedTo.
 * A revoked, disabled or already rotated key cannot be rotated.
 */
export async function rotateKey(writer: KeyWriter, id: string, options: { grace?: string | number } & ChangeContext): Promise<RotatedKey> {
  checkId(id);
  if (options === null || typeof options !== 'object') fail('rotate options must be an object like { grace: "24h" }');
  const grace = parseDuration(options.grace ?? DEFAULT_GRACE, 'grace');
  const old = await writer.existing(id);
  assertRotatable(old);
  const now = writer.clock();
  const lifetime = old.expiresAt === null ? null : old.expiresAt - old.createdAt;
  const created = await writer.insertNew(
    {
      prefix: old.prefix,
      name: old.name,
      ownerId: old.ownerId,
      scopes: old.scopes,
      metadata: old.metadata,
      createdAt: now,
      expiresAt: lifetime === null ? null : now + lifetime,
      notBefore: null,
      rotatedFrom: old.id,
      limits: old.limits,
      // The chain shares one balance, the first key's count: rotating never copies it (see decisions).
      credits: old.credits === null ? null : { ...old.credits, account: old.credits.account ?? old.id },
      allowedIps: old.allowedIps,
      roles: old.roles,
      identityId: old.identityId ?? null,
    },
    options,
  );
  try {
    const previous = await writer.confirmed(
      writer.change(
        id,
        (record, t) => {
          assertRotatable(record);
          // The new key copied the record as read above: if the key changed since (narrower scopes,
          // another owner), the copy is wrong, so the rotation is abandoned and the new key revoked.
          if (record.version !== old.version) {
            throw tillError('CONFLICT', 'keys', `key ${id} changed during the rotation; rotate it again`);
          }
          const graceEnd = t + grace;
          return { ...record, rotatedTo: created.record.id, expiresAt: record.expiresAt === null ? graceEnd : Math.min(record.expiresAt, graceEnd) };
        },
        'key.rotated',
        options,
        `rotated to ${created.record.id}`,
      ),
    );
    return { ...created, previous, announced: true };
  } catch (error) {
    if (isTillError(error, 'NOT_ANNOUNCED')) {
      // The rotation is made; only the old key's new expiry was not announced (services keep its
      // old one until their cache TTL). The new key must reach the caller all the same.
      const previous = await writer.info(id);
      if (previous !== null) return { ...created, previous, announced: false };
    }
    if (isTillError(error, 'NOT_REPLICATED')) throw await rotationNotReplicated(writer, error, id, created);
    // The old key changed under us (revoked, rotated elsewhere): the new key must not outlive that.
    await writer
      .change(created.record.id, (record, t) => ({ ...record, revokedAt: t, revokedReason: 'rotation aborted' }), 'key.revoked', {
        ...(options.actor !== undefined && { actor: options.actor }),
        reason: 'rotation aborted',
      })
      .catch(() => {});
    throw error;
  }
}

/**
 * A rotation made on the primary that replicas did not confirm: a failover now could bring the old
 * key back without its new expiry (and lose the new key). The rotation stands (undoing it would need
 * confirming too); the error carries it, new key included, in `rotation` (not enumerable: logging or
 * serializing the error does not print the key), so that the caller can hand the key over.
 */
async function rotationNotReplicated(writer: KeyWriter, error: TillError, id: string, created: CreatedKey): Promise<TillError> {
  const previous = await writer.info(id).catch(() => null);
  const out = tillError(
    'NOT_REPLICATED',
    'keys',
    `key ${id} was rotated to ${created.record.id} on the primary, but not confirmed by replicas: a failover now could bring the old key back without its new expiry. The new key is in error.rotation; check with keys.get(${JSON.stringify(id)}) later (${error.message.replace(/^(?:\[[^\]]*\]\s*)+/, '')})`,
    { cause: error },
  );
  Object.defineProperty(out, 'rotation', { value: { ...created, previous } satisfies UnconfirmedRotation, enumerable: false });
  return out;
}
