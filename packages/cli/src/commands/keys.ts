// The `till keys` command group.
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { registerCreate } from './create.js';
import { registerDelete } from './delete.js';
import { registerList } from './list.js';
import { registerRevoke } from './revoke.js';
import { registerRotate } from './rotate.js';
import { registerShow } from './show.js';
import { registerToggle } from './toggle.js';
import { registerUpdate } from './update.js';

export function registerKeys(program: Command, ctx: Context): void {
  const keys = program.command('keys').description('create, list, show, update, revoke, rotate, disable, enable and delete API keys');
  registerCreate(keys, ctx);
  registerList(keys, ctx);
  registerShow(keys, ctx);
  registerUpdate(keys, ctx);
  registerRevoke(keys, ctx);
  registerRotate(keys, ctx);
  registerToggle(keys, ctx);
  registerDelete(keys, ctx);
}
