// Rotation chains: the keys a key replaced stay usable for their grace period, so a change of the newest
// key reaches them (in step), and revoking one key revokes every key of its chain that still works.
import { isTillError, tillError } from '../errors.js';
import type { ChangeType } from '../audit/trail.js';
import type { Credits } from '../limits/rules.js';
import { keyStatus, type KeyInfo, type KeyRecord } from '../store/record.js';
import { checkId, checkText, fail } from './checks.js';
import type { ChangeContext } from './types.js';
import { MAX_ATTEMPTS, type KeyWriter } from './writer.js';

/** Most keys followed along one rotation chain (a key rotated daily for almost three years). */
const MAX_CHAIN = 1000;

/**
 * What every live key of a rotation chain shares with its newest key: a change of these on the newest
 * key reaches the keys still in their grace period. Their expiry and start stay their own.
 */
const CHAIN_FIELDS = ['name', 'scopes', 'metadata', 'limits', 'credits', 'disabled'] as const;

/** Fields of a chain's newest key that a predecessor does not hold alike (none: in step). */
function chainDiffers(record: KeyRecord, head: KeyRecord): boolean {
  return CHAIN_FIELDS.some((f) => JSON.stringify(record[f]) !== JSON.stringify(head[f]));
}

/**
 * Credits set anew on `record`: counted where its credits were (a rotation chain's one count, or its
 * own), under a generation above both its version and the generation they had, so the store restarts
 * the count and never takes an older policy for the newer one.
 */
export function creditsAnew(record: KeyRecord, credits: Credits): Credits {
  const generation = Math.max(record.version + 1, (record.credits?.generation ?? 0) + 1);
  // A key of a chain counts where the chain does, even from a first policy (its predecessors follow it).
  const account = record.credits?.account ?? (record.rotatedFrom !== null ? record.id : undefined);
  return Object.freeze({ ...credits, generation, ...(account !== undefined && { account }) });
}

/**
 * The keys `record` replaced that still work (not revoked, not expired), newest first. The walk goes
 * through the others: graces differ, so an older key may outlive a newer one.
 */
export async function livePredecessors(writer: KeyWriter, record: KeyRecord): Promise<KeyRecord[]> {
  const out: KeyRecord[] = [];
  const now = writer.clock();
  let from = record.rotatedFrom;
  for (let n = 0; from !== null && n < MAX_CHAIN; n++) {
    const previous = await writer.store.get(from);
    if (previous === null) break;
    const status = keyStatus(previous, now);
    if (status !== 'revoked' && status !== 'expired') out.push(previous);
    from = previous.rotatedFrom;
  }
  return out;
}

/**
 * A change of a chain's newest key, then the same on the keys it replaced that still work (their
 * grace period): a narrowing, a disabling or new credits reach every key the holder may present.
 * A change saved but not announced (NOT_ANNOUNCED) still reaches them, and is reported after.
 */
export async function withChain(
  writer: KeyWriter,
  change: Promise<KeyInfo>,
  id: string,
  type: ChangeType,
  context: ChangeContext | undefined,
): Promise<KeyInfo> {
  let unannounced: unknown;
  const note = (error: unknown) => {
    if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
    unannounced ??= error;
  };
  const info = await change.catch((error: unknown) => {
    note(error);
    return null;
  });
  if (info === null || info.rotatedFrom !== null) await syncPredecessors(writer, id, type, context, note);
  if (unannounced !== undefined || info === null) throw unannounced;
  return info;
}

/**
 * Brings the live predecessors of `id` in step with it (CHAIN_FIELDS), then reads `id` again: if it
 * changed meanwhile, once more. Whichever change is the last to write a predecessor, its writer then
 * sees the newest key unchanged since it read it, so the predecessors end as the newest key is.
 */
async function syncPredecessors(
  writer: KeyWriter,
  id: string,
  type: ChangeType,
  context: ChangeContext | undefined,
  note: (error: unknown) => void,
): Promise<void> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const head = await writer.store.get(id);
    if (head === null || head.rotatedFrom === null) return;
    for (const predecessor of await livePredecessors(writer, head)) {
      await writer
        .change(
          predecessor.id,
          (record) => {
            if (record.revokedAt !== null || !chainDiffers(record, head)) return null;
            const next: { -readonly [K in keyof KeyRecord]: KeyRecord[K] } = { ...record };
            for (const f of CHAIN_FIELDS) (next as Record<string, unknown>)[f] = head[f];
            return next;
          },
          type,
          context,
          `follows ${head.id}, which replaced it`,
        )
        .catch(note);
    }
    const after = await writer.store.get(id);
    if (after === null || after.version === head.version) return;
  }
  throw tillError('CONFLICT', 'keys', `key ${id} kept changing while the keys it replaced were brought in step; try again`);
}

/**
 * Revokes `id` and, with `chain`, every other key of its rotation chain that still works: the keys that
 * replaced it, and those it replaced that are in their grace period. Resolves with the named key's
 * record first, then each key of its chain this call revoked.
 */
export async function revokeKeys(writer: KeyWriter, id: string, options: ChangeContext & { chain?: boolean }, chain: boolean): Promise<KeyInfo[]> {
  if (options === null || typeof options !== 'object') fail('revoke options must be an object like { reason: "leaked" }');
  if (options.chain !== undefined && typeof options.chain !== 'boolean') fail('chain must be true or false');
  const reason = options.reason === undefined ? 'revoked' : checkText(options.reason, 'reason');
  const context = { ...(options.actor !== undefined && { actor: options.actor }), reason };
  let unannounced: unknown;
  // One key: true once revoked by this call, false when it already was. Saved but not announced
  // (NOT_ANNOUNCED) counts as revoked, and the error is reported once the whole chain is done.
  const revokeOne = async (keyId: string, detail?: string): Promise<{ info: KeyInfo; made: boolean } | null> => {
    let made = false;
    try {
      const info = await writer.change(
        keyId,
        (record, now) => {
          made = record.revokedAt === null;
          return made ? { ...record, revokedAt: now, revokedReason: reason } : null;
        },
        'key.revoked',
        context,
        detail,
      );
      return { info, made };
    } catch (error) {
      if (!isTillError(error, 'NOT_ANNOUNCED')) throw error;
      unannounced ??= error;
      const info = await writer.info(keyId);
      return info === null ? null : { info, made: true };
    }
  };
  return writer.confirmed(
    (async () => {
      const named = await revokeOne(checkId(id));
      if (named === null) throw tillError('KEY_NOT_FOUND', 'keys', `no key ${id}`);
      const out = [named.info];
      if (chain) {
        const detail = `with its rotation chain (revoked: ${id})`;
        let failure: unknown;
        // Keys that replaced it: once a key is revoked it can no longer be rotated, so its rotatedTo is
        // final and the walk misses no rotation that lands meanwhile.
        let next = named.info.rotatedTo;
        for (let n = 0; next !== null && n < MAX_CHAIN; n++) {
          const done = await revokeOne(next, detail).catch((error: unknown) => {
            failure ??= error;
            return null;
          });
          if (done === null) break;
          if (done.made) out.push(done.info);
          next = done.info.rotatedTo;
        }
        // Keys it replaced that still work (a leak of the new key reaches the old one in its grace).
        const record = await writer.store.get(id);
        for (const previous of record === null ? [] : await livePredecessors(writer, record)) {
          const done = await revokeOne(previous.id, detail).catch((error: unknown) => {
            failure ??= error;
            return null;
          });
          if (done?.made) out.push(done.info);
        }
        if (failure !== undefined) throw failure;
      }
      if (unannounced !== undefined) throw unannounced;
      return out;
    })(),
  );
}
