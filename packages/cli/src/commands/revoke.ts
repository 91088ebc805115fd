// `till keys revoke`: a key stops working for good, after confirmation.
import type { Command } from 'commander';
import type { KeyInfo } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { details, json, toJson, when } from '../output.js';
import { describeKey } from './toggle.js';
import { existingKey } from './show.js';

interface RevokeOptions {
  reason?: string;
  keyOnly?: boolean;
  yes?: boolean;
  json?: boolean;
}

const EXAMPLES = `
A key made by a rotation and the key it replaced form a chain. Revoking one revokes every other key of
its chain that still works: a leaked secret is one key's, but whoever leaked it may hold the others.
To end an old key's grace period early, without touching the key that replaced it, pass --key-only.

Examples:
  $ till keys revoke 3hT9kQ2mXw8ZpL0a --reason "leaked in a CI log"
  $ till keys revoke 3hT9kQ2mXw8ZpL0a --key-only --reason "grace ended early"`;

export function registerRevoke(keys: Command, ctx: Context): void {
  keys
    .command('revoke')
    .description('revoke a key and the other keys of its rotation chain: they stop working at once, for good (asks first unless --yes)')
    .argument('<id>', 'the key id')
    .option('--reason <text>', 'why, kept on the record (default: revoked)')
    .option('--key-only', "revoke this key alone, not the keys of its rotation chain (ends an old key's grace early)")
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { record, chain } as JSON: the key, and the other keys of its chain this revoked')
    .addHelpText('after', EXAMPLES)
    .action(async (rawId: string, options: RevokeOptions, command: Command) => {
      const id = input.keyId(rawId);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      const inChain = !options.keyOnly && (current.rotatedFrom !== null || current.rotatedTo !== null);
      let record = current;
      let chain: KeyInfo[] = [];
      if (current.revokedAt !== null && !inChain) {
        ctx.note(`key ${id} was already revoked at ${when(current.revokedAt)}; nothing changed\n`);
      } else {
        const what = inChain
          ? `${describeKey(current)} and every other key of its rotation chain that still works? They stop`
          : `${describeKey(current)}? It stops`;
        await confirm(`Revoke ${what} working at once and cannot be restored.`, { yes: !!options.yes, action: `revoke key ${id}` });
        const context = options.reason === undefined ? {} : { reason: options.reason };
        if (options.keyOnly) {
          record = await keyManager.revoke(id, { ...context, chain: false });
        } else {
          [record, ...chain] = (await keyManager.revokeChain(id, context)).revoked as [KeyInfo, ...KeyInfo[]];
        }
        if (record.revokedAt === null) throw failed(`key ${id} was not revoked`);
        if (current.revokedAt !== null) record = current;
      }
      const now = ctx.now();
      if (options.json) {
        ctx.print(json({ record: toJson(record, now), chain: chain.map((k) => toJson(k, now)) }));
        return;
      }
      const also = chain.length === 0 ? '' : `Also revoked, of its rotation chain: ${chain.map((k) => k.id).join(', ')}.\n`;
      ctx.print(`${record === current ? 'Key' : 'Revoked key'} ${id}.\n${also}\n${details(record, now)}`);
    });
}
