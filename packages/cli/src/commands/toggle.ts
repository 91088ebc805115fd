// `till keys disable` / `till keys enable`: stop a key until it is enabled again, and undo that.
import type { Command } from 'commander';
import type { KeyInfo } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { clean, details, json, toJson } from '../output.js';
import { existingKey } from './show.js';

/** `key abc ("billing", owner team-7)`, for prompts. */
export function describeKey(info: KeyInfo): string {
  const owner = info.ownerId === null ? '' : `, owner ${clean(info.ownerId)}`;
  return `key ${info.id} ("${clean(info.name)}"${owner})`;
}

export function assertChangeable(info: KeyInfo): void {
  if (info.revokedAt !== null) throw failed(`key ${info.id} is revoked; a revoked key cannot change`);
}

/** As core refuses it: a rotated key follows the key that replaced it (revoke is the exception). */
export function assertCurrent(info: KeyInfo): void {
  assertChangeable(info);
  if (info.rotatedTo !== null) {
    throw failed(
      `key ${info.id} was rotated to ${info.rotatedTo}: change that key instead (its changes reach this one during its grace period); to end this key's grace early: till keys revoke ${info.id} --key-only`,
    );
  }
}

export function registerToggle(keys: Command, ctx: Context): void {
  keys
    .command('disable')
    .description('disable a key: it stops working until enabled again (asks first unless --yes)')
    .argument('<id>', 'the key id')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { record } as JSON')
    .action(async (rawId: string, options: { yes?: boolean; json?: boolean }, command: Command) => {
      const id = input.keyId(rawId);
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      assertCurrent(current);
      let record = current;
      if (current.disabled) {
        ctx.note(`key ${id} is already disabled; nothing changed\n`);
      } else {
        await confirm(`Disable ${describeKey(current)}? It stops working until enabled again.`, { yes: !!options.yes, action: `disable key ${id}` });
        record = await keyManager.disable(id);
      }
      print(ctx, record, record === current ? 'Key' : 'Disabled key', options.json);
    });

  keys
    .command('enable')
    .description('enable a disabled key again')
    .argument('<id>', 'the key id')
    .option('--json', 'print { record } as JSON')
    .action(async (rawId: string, options: { json?: boolean }, command: Command) => {
      const id = input.keyId(rawId);
      const keyManager = await ctx.keys(command);
      const current = await existingKey(keyManager, id);
      assertCurrent(current);
      let record = current;
      if (!current.disabled) ctx.note(`key ${id} is not disabled; nothing changed\n`);
      else {
        record = await keyManager.enable(id);
        await ctx.confirmChanges(`enabling key ${id}`);
      }
      print(ctx, record, record === current ? 'Key' : 'Enabled key', options.json);
    });
}

function print(ctx: Context, record: KeyInfo, headline: string, asJson: boolean | undefined): void {
  const now = ctx.now();
  ctx.print(asJson ? json({ record: toJson(record, now) }) : `${headline} ${record.id}.\n\n${details(record, now)}`);
}
