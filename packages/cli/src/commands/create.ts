// `till keys create`: a new key, printed once.
import type { Command } from 'commander';
import { isValidPrefix, type CreateKeyInput } from '@till/core';
import type { Context } from '../context.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { details, json, secretBlock, toJson } from '../output.js';

interface CreateOptions {
  name: string;
  scope: string[];
  owner?: string;
  expires?: string;
  notBefore?: string;
  meta?: string[];
  prefix?: string;
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
  $ till keys create --name "billing service" --scope invoices:read,invoices:write --owner team-7 --expires 90d
  $ till keys create --name ci --scope deploy:* --expires 2027-06-30 --meta env=prod --prefix sk_live --json
  $ till keys create --name partner --scope search:read --expires 365d --rate per-second=10/1s --rate per-day=10000/1d --credits 50000 --refill 50000/30d
  $ till keys create --name "BI export" --scope users:read --role reporting --expires 90d
  $ till keys create --name office --scope reports:read --expires 90d --allow-ip 203.0.113.0/24 --allow-ip 2001:db8::/32`;

export function registerCreate(keys: Command, ctx: Context): void {
  keys
    .command('create')
    .description('create a key and print it, once: it cannot be shown again')
    .requiredOption('--name <name>', 'a label for people, like "billing service, production"')
    .requiredOption('--scope <scopes>', 'a scope the key holds (users:read, users:*, *); repeat it or separate with commas', input.collect)
    .option('--owner <id>', 'who the key belongs to: a user, team or service id')
    .option('--expires <when>', 'when it stops working: ISO 8601 date or time (2027-01-31), or a duration from now (90d)')
    .option('--not-before <when>', 'when it starts working: ISO 8601 date or time, or a duration from now')
    .option('--meta <key=value>', 'metadata returned with the verified key; repeatable', input.collect)
    .option('--prefix <prefix>', 'prefix of the key, like sk_live (default: $TILL_PREFIX, else till)')
    .option('--rate <name=count/window>', 'a rate limit of the key, like per-second=10/1s; repeatable', input.collect)
    .option('--credits <count>', "uses the key has (each request spends its route's cost); default unlimited")
    .option('--refill <amount/interval>', 'with --credits: top the credits up to amount every interval, like 1000/30d')
    .option(
      '--allow-ip <range>',
      'an IP range the key may be used from (203.0.113.0/24, 2001:db8::/32, one address); repeatable; default anywhere',
      input.collect,
    )
    .option('--role <name>', "a role the key holds (till roles define); its scopes join the key's; repeatable", input.collect)
    .option('--identity <id>', "the identity the key belongs to: it shares the identity's limits and credits (till identities create)")
    .option('--json', 'print { key, record } as JSON')
    .addHelpText('after', EXAMPLES)
    .action(async (options: CreateOptions, command: Command) => {
      const now = ctx.now();
      const request: CreateKeyInput = {
        name: options.name,
        scopes: input.scopes(options.scope),
        metadata: input.metadata(options.meta ?? []),
        ...(options.owner !== undefined && { ownerId: options.owner }),
        ...(options.expires !== undefined && input.expiry(options.expires, now)),
        ...(options.notBefore !== undefined && { notBefore: input.time(options.notBefore, '--not-before', now) }),
        ...input.limitsAndCredits(options),
        ...(options.allowIp !== undefined && { allowedIps: input.allowedIps(options.allowIp) }),
        ...(options.role !== undefined && { roles: input.roles(options.role) }),
        ...(options.identity !== undefined && { identityId: input.identityId(options.identity) }),
      };
      const prefix = options.prefix ?? (ctx.env.TILL_PREFIX || undefined);
      if (prefix !== undefined) {
        if (!isValidPrefix(prefix as unknown)) {
          throw failed(
            `invalid ${options.prefix === undefined ? 'TILL_PREFIX' : '--prefix'} ${JSON.stringify(prefix.slice(0, 40))}: 1-32 characters of a-z, 0-9 and single inner underscores, starting with a letter (like sk_live)`,
          );
        }
        request.prefix = prefix;
      }
      const keyManager = await ctx.keys(command);
      const { key, record } = await keyManager.create(request);
      const at = ctx.now();
      if (options.json) {
        ctx.print(json({ key, record: toJson(record, at) }));
      } else {
        ctx.print(`Created key ${record.id}.\n${secretBlock(key)}${details(record, at)}`);
        if (record.expiresAt === null) ctx.note('note: this key never expires (audits flag such keys); give --expires 90d or a date to bound it\n');
      }
      // The key is printed first: a creation that replicas did not confirm still made it.
      await ctx.confirmChanges(`the creation of key ${record.id} (the key is printed above)`);
    });
}
