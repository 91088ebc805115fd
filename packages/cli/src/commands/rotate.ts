// `till keys rotate`: a new key with the same settings; the old one keeps working for a grace period.
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { unconfirmedRotation } from '@till/core';
import { failed, notReplicated } from '../errors.js';
import * as input from '../input.js';
import { json, secretBlock, toJson, when } from '../output.js';
import { existingKey } from './show.js';
import { assertChangeable, describeKey } from './toggle.js';

interface RotateOptions {
  grace: string;
  yes?: boolean;
  json?: boolean;
}

const EXAMPLES = `
The new key has the old one's name, owner, scopes, metadata and prefix, and shares its credits (one
balance for both, never a copy). The old key keeps working until the grace period ends (never later
than its own expiry), then expires by itself: deploy the new key within it. The two are linked by
rotatedFrom / rotatedTo. From then on, change the new key: its changes reach the old one (expiry
aside), which cannot be changed on its own. Revoking either revokes both; to end the grace early,
till keys revoke <old id> --key-only.

Examples:
  $ till keys rotate 3hT9kQ2mXw8ZpL0a --grace 7d
  $ till keys rotate 3hT9kQ2mXw8ZpL0a --yes --json | jq -r .key`;

export function registerRotate(keys: Command, ctx: Context): void {
  keys
    .command('rotate')
    .description('issue a new key that replaces this one; the old key expires after a grace period (asks first unless --yes)')
    .argument('<id>', 'the key id')
    .option('--grace <duration>', 'how long the old key keeps working, like 24h, 7d or 1h30m', '24h')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { key, record, previous } as JSON: the new key, its record, the old record')
    .addHelpText('after', EXAMPLES)
    .action(async (rawId: string, options: RotateOptions, command: Command) => {
      const id = input.keyId(rawId);
      const grace = input.duration(options.grace, '--grace');
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      // The same refusals core makes, checked before asking rather than after.
      assertChangeable(current);
      if (current.rotatedTo !== null) throw failed(`key ${id} was already rotated to ${current.rotatedTo}; rotate that key instead`);
      if (current.disabled) throw failed(`key ${id} is disabled; enable it before rotating`);
      const graceEnd = current.expiresAt === null ? ctx.now() + grace : Math.min(current.expiresAt, ctx.now() + grace);
      await confirm(`Rotate ${describeKey(current)}? A new key is issued; this one stops working at about ${when(graceEnd)}.`, {
        yes: !!options.yes,
        action: `rotate key ${id}`,
      });
      // A rotation that replicas did not confirm (--replicas) is made all the same: its new key is
      // printed, then the command fails with NOT_REPLICATED.
      let unconfirmed: unknown;
      const { key, record, previous } = await keyManager.rotate(id, { grace: options.grace }).catch((error: unknown) => {
        const rotation = unconfirmedRotation(error);
        if (rotation === null) throw error;
        unconfirmed = error;
        // The old key could not be read back: it is printed as it was, with the expiry it now has.
        return { ...rotation, previous: rotation.previous ?? { ...current, rotatedTo: rotation.record.id, expiresAt: graceEnd } };
      });
      const now = ctx.now();
      const done = () => {
        if (unconfirmed !== undefined)
          throw notReplicated(`the rotation of key ${id} to ${record.id} (the new key is printed above)`, (unconfirmed as Error).cause ?? unconfirmed);
      };
      if (options.json) {
        ctx.print(json({ key, record: toJson(record, now), previous: toJson(previous, now) }));
        return done();
      }
      ctx.print(
        `Rotated key ${previous.id} to ${record.id}.\n${secretBlock(key)}` +
          `new key  ${record.id}  expires ${when(record.expiresAt, 'never')}\n` +
          `old key  ${previous.id}  expires ${when(previous.expiresAt, 'never')} (grace ${options.grace})\n\n` +
          `Deploy the new key before then; the old one stops working by itself (to end it early: till keys revoke ${previous.id} --key-only).\n`,
      );
      done();
    });
}
