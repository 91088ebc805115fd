// `till keys delete`: a key's record goes; its audit trail stays. After confirmation.
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import * as input from '../input.js';
import { json, toJson } from '../output.js';
import { describeKey } from './toggle.js';
import { existingKey } from './show.js';

interface DeleteOptions {
  reason?: string;
  yes?: boolean;
  json?: boolean;
}

export function registerDelete(keys: Command, ctx: Context): void {
  keys
    .command('delete')
    .description('delete a key: it stops working at once and its record goes; its audit trail stays (asks first unless --yes)')
    .argument('<id>', 'the key id')
    .option('--reason <text>', 'why, kept in the audit trail')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { record } (the deleted record) as JSON')
    .action(async (rawId: string, options: DeleteOptions, command: Command) => {
      const id = input.keyId(rawId);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      await confirm(`Delete ${describeKey(current)}? It stops working at once; only its audit trail remains.`, {
        yes: !!options.yes,
        action: `delete key ${id}`,
      });
      const record = await keyManager.delete(id, options.reason === undefined ? {} : { reason: options.reason });
      const now = ctx.now();
      ctx.print(options.json ? json({ record: toJson(record, now) }) : `Deleted key ${id}. Its audit trail stays: till events list --key ${id}\n`);
    });
}
