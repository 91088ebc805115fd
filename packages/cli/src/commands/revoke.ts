// `till keys revoke`: a key stops working for good, after confirmation.
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { details, json, toJson, when } from '../output.js';
import { describeKey } from './toggle.js';
import { existingKey } from './show.js';

interface RevokeOptions {
  reason?: string;
  yes?: boolean;
  json?: boolean;
}

export function registerRevoke(keys: Command, ctx: Context): void {
  keys
    .command('revoke')
    .description('revoke a key: it stops working at once, for good (asks first unless --yes)')
    .argument('<id>', 'the key id')
    .option('--reason <text>', 'why, kept on the record (default: revoked)')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { record } as JSON')
    .action(async (rawId: string, options: RevokeOptions, command: Command) => {
      const id = input.keyId(rawId);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      let record = current;
      if (current.revokedAt !== null) {
        ctx.note(`key ${id} was already revoked at ${when(current.revokedAt)}; nothing changed\n`);
      } else {
        await confirm(`Revoke ${describeKey(current)}? It stops working at once and cannot be restored.`, { yes: !!options.yes, action: `revoke key ${id}` });
        record = await keyManager.revoke(id, options.reason === undefined ? {} : { reason: options.reason });
        if (record.revokedAt === null) throw failed(`key ${id} was not revoked`);
      }
      const now = ctx.now();
      ctx.print(options.json ? json({ record: toJson(record, now) }) : `${record === current ? 'Key' : 'Revoked key'} ${id}.\n\n${details(record, now)}`);
    });
}
