// `till keys update`: name, scopes, metadata and expiry of a key.
import type { Command } from 'commander';
import type { KeyPatch } from '@till/core';
import type { Context } from '../context.js';
import { usage } from '../errors.js';
import * as input from '../input.js';
import { details, json, toJson } from '../output.js';

interface UpdateOptions {
  name?: string;
  scope?: string[];
  meta?: string[];
  unsetMeta?: string[];
  expires?: string;
  rate?: string[];
  credits?: string;
  refill?: string;
  allowIp?: string[];
  role?: string[];
  identity?: string;
  json?: boolean;
}

const EXAMPLES = `
Examples:
  $ till keys update 3hT9kQ2mXw8ZpL0a --scope reports:read --scope reports:export
  $ till keys update 3hT9kQ2mXw8ZpL0a --meta tier=gold --unset-meta trial --expires 2027-12-31
  $ till keys update 3hT9kQ2mXw8ZpL0a --expires never
  $ till keys update 3hT9kQ2mXw8ZpL0a --rate per-minute=600/1m --credits 1000 --refill 1000/30d
  $ till keys update 3hT9kQ2mXw8ZpL0a --rate none --credits none
  $ till keys update 3hT9kQ2mXw8ZpL0a --allow-ip 203.0.113.0/24 --allow-ip 198.51.100.7
  $ till keys update 3hT9kQ2mXw8ZpL0a --allow-ip none
  $ till keys update 3hT9kQ2mXw8ZpL0a --role reporting --role billing`;

export function registerUpdate(keys: Command, ctx: Context): void {
  keys
    .command('update')
    .description("change a key's name, scopes, metadata, expiry, rate limits, credits, IP allowlist or roles (a revoked key cannot change)")
    .argument('<id>', 'the key id')
    .option('--name <name>', 'a new name')
    .option('--scope <scopes>', 'the new scopes, replacing all current ones; repeat or separate with commas', input.collect)
    .option('--meta <key=value>', 'set a metadata entry, keeping the others; repeatable', input.collect)
    .option('--unset-meta <key>', 'remove a metadata entry; repeatable', input.collect)
    .option('--expires <when>', 'a new expiry: ISO 8601 date or time, a duration from now (30d), or never')
    .option('--rate <name=count/window>', 'the new rate limits, replacing all current ones (none removes them); repeatable', input.collect)
    .option('--credits <count>', 'set the credits anew (the live count restarts here), or none for unlimited')
    .option('--refill <amount/interval>', 'with --credits: top up to amount every interval, like 1000/30d')
    .option('--allow-ip <range>', 'the IP ranges the key may be used from, replacing the current ones (none: anywhere); repeatable', input.collect)
    .option('--role <name>', 'the roles the key holds, replacing the current ones (none: no roles); repeatable', input.collect)
    .option('--identity <id>', 'move the key to another identity, or none to take it out of its identity')
    .option('--json', 'print { record } as JSON')
    .addHelpText('after', EXAMPLES)
    .action(async (rawId: string, options: UpdateOptions, command: Command) => {
      const id = input.keyId(rawId);
      const now = ctx.now();
      const patch: KeyPatch = {};
      if (options.name !== undefined) patch.name = options.name;
      if (options.scope !== undefined) patch.scopes = input.scopes(options.scope);
      const setMeta = input.metadata(options.meta ?? []);
      const unsetMeta = options.unsetMeta ?? [];
      if (options.expires !== undefined) Object.assign(patch, input.expiry(options.expires, now, true));
      Object.assign(patch, input.limitsAndCredits(options));
      if (options.allowIp !== undefined) patch.allowedIps = input.allowedIps(options.allowIp, true);
      if (options.role !== undefined) patch.roles = input.roles(options.role, true);
      if (options.identity !== undefined) patch.identityId = options.identity.trim().toLowerCase() === 'none' ? null : input.identityId(options.identity);
      const changesMeta = Object.keys(setMeta).length > 0 || unsetMeta.length > 0;
      if (Object.keys(patch).length === 0 && !changesMeta) {
        throw usage('nothing to update: give --name, --scope, --meta, --unset-meta, --expires, --rate, --credits, --allow-ip, --role or --identity');
      }
      const keyManager = await ctx.keys(command);
      if (changesMeta) {
        // Merged by core inside its compare-and-set: a concurrent metadata change is not lost.
        patch.setMetadata = setMeta;
        patch.unsetMetadata = unsetMeta;
      }
      const record = await keyManager.update(id, patch);
      const at = ctx.now();
      ctx.print(options.json ? json({ record: toJson(record, at) }) : `Updated key ${record.id}.\n\n${details(record, at)}`);
    });
}
