// `till keys list`: keys in creation order, a page at a time or all of them.
import type { Command } from 'commander';
import type { KeyInfo, ListKeysQuery } from '@till/core';
import type { Context } from '../context.js';
import * as input from '../input.js';
import { json, keyRows, LIST_HEADERS, table, toJson } from '../output.js';

interface ListOptions {
  owner?: string;
  identity?: string;
  limit: string;
  cursor?: string;
  all?: boolean;
  json?: boolean;
}

export function registerList(keys: Command, ctx: Context): void {
  keys
    .command('list')
    .description('list keys in creation order, with their status')
    .option('--owner <id>', "only this owner's keys")
    .option('--identity <id>', "only this identity's keys")
    .option('--limit <n>', 'keys per page, 1-1000', '100')
    .option('--cursor <cursor>', 'continue where a previous page stopped')
    .option('--all', 'every page, following the cursor to the end')
    .option('--json', 'print { keys, cursor } as JSON (cursor is null after the last page)')
    .action(async (options: ListOptions, command: Command) => {
      const limit = input.limit(options.limit);
      const identityId = options.identity === undefined ? undefined : input.identityId(options.identity);
      const keyManager = await ctx.keys(command);
      const found: KeyInfo[] = [];
      let cursor = options.cursor;
      do {
        const query: ListKeysQuery = { limit };
        if (options.owner !== undefined) query.ownerId = options.owner;
        if (identityId !== undefined) query.identityId = identityId;
        if (cursor !== undefined) query.cursor = cursor;
        const page = await keyManager.list(query);
        found.push(...page.keys);
        cursor = page.cursor;
      } while (options.all && cursor !== undefined);
      // The last use of each key (written by the verifying processes in batches).
      const lastUsed = new Map(await Promise.all(found.map(async (k) => [k.id, (await keyManager.usage(k.id, { days: 0 })).lastUsedAt] as const)));
      const now = ctx.now();
      if (options.json) {
        ctx.print(json({ keys: found.map((k) => ({ ...toJson(k, now), lastUsedAt: lastUsed.get(k.id) ?? null })), cursor: cursor ?? null }));
        return;
      }
      ctx.print(found.length === 0 ? 'No keys.\n' : table(LIST_HEADERS, keyRows(found, now, lastUsed)));
      if (cursor !== undefined) {
        const owner = `${options.owner !== undefined ? ` --owner ${JSON.stringify(options.owner)}` : ''}${identityId !== undefined ? ` --identity ${identityId}` : ''}`;
        ctx.print(`\nMore keys: till keys list${owner} --cursor ${cursor}\n`);
      }
    });
}
