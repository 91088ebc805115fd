// `till keys show`: every field of one key except its hash.
import type { Command } from 'commander';
import type { KeyInfo, KeyManager } from '@till/core';
import type { Context } from '../context.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { details, json, toJson } from '../output.js';

/** The key's record, or exit code 1 with "no key <id>". */
export async function existingKey(keys: KeyManager, id: string): Promise<KeyInfo> {
  const info = await keys.get(id);
  if (info === null) throw failed(`no key ${id}`);
  return info;
}

export function registerShow(keys: Command, ctx: Context): void {
  keys
    .command('show')
    .description('show every field of a key (never its secret or hash)')
    .argument('<id>', 'the key id (16 characters, printed with the key)')
    .option('--json', 'print { record, credits, usage } as JSON (credits: left now, or null for unlimited; usage: last use and 7 days of requests)')
    .action(async (rawId: string, options: { json?: boolean }, command: Command) => {
      const id = input.keyId(rawId);
      const keys = await ctx.keys(command);
      const info = await existingKey(keys, id);
      // The live count lives apart from the record (it changes with every request).
      const credits = info.credits === null ? null : await keys.credits(id);
      const usage = await keys.usage(id, { days: 7 });
      const now = ctx.now();
      ctx.print(options.json ? json({ record: toJson(info, now), credits, usage }) : details(info, now, credits, usage));
    });
}
