// `till identities`: create, show, list, update and delete identities, the owners whose limits and
// credits all of their keys share.
import type { Command } from 'commander';
import type { CreateIdentityInput, IdentityPatch, IdentityRecord } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed, usage } from '../errors.js';
import * as input from '../input.js';
import { clean, json, span, table, when } from '../output.js';

interface IdentityOptions {
  name?: string;
  meta?: string[];
  rate?: string[];
  credits?: string;
  refill?: string;
  allowIp?: string[];
  role?: string[];
  json?: boolean;
}

const EXAMPLES = `
Examples:
  $ till identities create acme --name "Acme Corp" --rate per-minute=1000/1m --credits 100000 --refill 100000/30d
  $ till keys create --name "acme ci" --scope deploy:* --identity acme --expires 90d
  $ till identities show acme
  $ till identities update acme --rate per-minute=5000/1m --role reporting
  $ till identities delete acme --force --yes`;

function creditsText(identity: IdentityRecord, live?: number | null): string {
  const c = identity.credits;
  if (c === null) return 'unlimited';
  const left = live === undefined || live === null ? `${c.remaining} when set` : `${live} left`;
  return `${left}${c.refill === null ? '' : `, topped up to ${c.refill.amount} every ${span(c.refill.interval)}`}`;
}

/** An identity as a list of fields for people. */
function details(identity: IdentityRecord, keys?: number, live?: number | null): string {
  const meta = Object.entries(identity.metadata);
  const fields: [string, string][] = [
    ['id', clean(identity.id)],
    ['name', clean(identity.name)],
    ['metadata', meta.length === 0 ? '-' : meta.map(([k, v]) => `${clean(k)}=${clean(typeof v === 'string' ? v : JSON.stringify(v))}`).join(', ')],
    ['rate limits', identity.limits.length === 0 ? '-' : identity.limits.map((l) => `${l.name} ${l.limit}/${span(l.window)}`).join(', ')],
    ['credits', creditsText(identity, live)],
    ['allowed ips', identity.allowedIps.length === 0 ? 'any' : identity.allowedIps.join(', ')],
    ['roles', identity.roles.length === 0 ? '-' : identity.roles.join(', ')],
    ['created', when(identity.createdAt)],
    ['updated', when(identity.updatedAt)],
    ['version', String(identity.version)],
    ...(keys === undefined ? [] : [['keys', String(keys)] as [string, string]]),
  ];
  const width = Math.max(...fields.map(([label]) => label.length));
  return `${fields.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}

/** The fields that `create` and `update` share, from their options. */
function fieldsOf(options: IdentityOptions): IdentityPatch {
  const meta = input.metadata(options.meta ?? []);
  return {
    ...(options.name !== undefined && { name: options.name }),
    ...(Object.keys(meta).length > 0 && { metadata: meta }),
    ...input.limitsAndCredits(options),
    ...(options.allowIp !== undefined && { allowedIps: options.allowIp.length === 1 && options.allowIp[0] === 'none' ? [] : options.allowIp }),
    ...(options.role !== undefined && { roles: options.role.length === 1 && options.role[0] === 'none' ? [] : options.role }),
  };
}

function withCommonOptions(command: Command, verb: string): Command {
  return command
    .option('--meta <key=value>', `metadata of the identity${verb === 'update' ? ' (replacing all of it)' : ''}; repeatable`, input.collect)
    .option('--rate <name=count/window>', 'a rate limit shared by all of its keys, like per-minute=1000/1m; repeatable (none removes them)', input.collect)
    .option('--credits <count>', 'credits shared by all of its keys (each key with credits of its own spends both); none for unlimited')
    .option('--refill <amount/interval>', 'with --credits: top the credits up to amount every interval, like 100000/30d')
    .option('--allow-ip <cidr>', 'a network its keys may be used from, like 203.0.113.0/24; repeatable (none: any)', input.collect)
    .option('--role <name>', 'a role all of its keys hold; repeatable (none removes them)', input.collect)
    .option('--json', 'print { identity } as JSON');
}

export function registerIdentities(program: Command, ctx: Context): void {
  const identities = program
    .command('identities')
    .description('create, show, list, update and delete identities: owners whose limits and credits all of their keys share')
    .addHelpText('after', EXAMPLES);

  withCommonOptions(
    identities
      .command('create')
      .description('create an identity; give keys to it with till keys create --identity <id>')
      .argument('[id]', 'its id: your own customer, team or tenant id (drawn when left out)')
      .requiredOption('--name <name>', 'a label for people, like "Acme Corp"'),
    'create',
  ).action(async (rawId: string | undefined, options: IdentityOptions, command: Command) => {
    const request: CreateIdentityInput = { ...(fieldsOf(options) as CreateIdentityInput), name: options.name! };
    if (rawId !== undefined) request.id = input.identityId(rawId);
    const manager = await ctx.identities(command);
    const identity = await manager.create(request);
    ctx.print(options.json ? json({ identity }) : `Created identity ${clean(identity.id)}.\n\n${details(identity)}`);
    await ctx.confirmChanges(`the creation of identity ${identity.id}`);
  });

  identities
    .command('show')
    .description('show an identity and how many keys it has')
    .argument('<id>', 'the identity id')
    .option('--json', 'print { identity, keys, credits } as JSON (keys: how many name it; credits: left now, or null for unlimited)')
    .action(async (rawId: string, options: { json?: boolean }, command: Command) => {
      const id = input.identityId(rawId);
      const manager = await ctx.identities(command);
      const identity = await manager.get(id);
      if (identity === null) throw failed(`no identity ${id}`);
      const keys = await manager.keyCount(id);
      // The live count lives apart from the record (it changes with every request).
      const credits = identity.credits === null ? null : await manager.credits(id);
      ctx.print(options.json ? json({ identity, keys, credits }) : `${details(identity, keys, credits)}Its keys: till keys list --identity ${id}\n`);
    });

  identities
    .command('list')
    .description('list identities in creation order, a page at a time')
    .option('--limit <n>', 'identities per page (1-1000)', '100')
    .option('--cursor <cursor>', 'the cursor printed with the previous page')
    .option('--json', 'print { identities, cursor } as JSON')
    .action(async (options: { limit: string; cursor?: string; json?: boolean }, command: Command) => {
      const limit = input.limit(options.limit);
      const manager = await ctx.identities(command);
      const page = await manager.list({ limit, ...(options.cursor !== undefined && { cursor: options.cursor }) });
      if (options.json) {
        ctx.print(json(page.cursor === undefined ? { identities: page.identities } : page));
        return;
      }
      if (page.identities.length === 0) {
        ctx.print('No identities.\n');
        return;
      }
      const rows = page.identities.map((i) => [
        clean(i.id),
        clean(i.name),
        i.limits.length === 0 ? '-' : i.limits.map((l) => `${l.name} ${l.limit}/${span(l.window)}`).join(', '),
        creditsText(i),
        when(i.createdAt),
      ]);
      ctx.print(table(['ID', 'NAME', 'RATE LIMITS', 'CREDITS', 'CREATED'], rows));
      if (page.cursor !== undefined) ctx.note(`more: till identities list --cursor ${page.cursor}\n`);
    });

  withCommonOptions(
    identities
      .command('update')
      .description("change an identity's name, metadata, limits, credits, networks or roles: every service sees it as fast as a revocation")
      .argument('<id>', 'the identity id')
      .option('--name <name>', 'a new name'),
    'update',
  ).action(async (rawId: string, options: IdentityOptions, command: Command) => {
    const id = input.identityId(rawId);
    const patch = fieldsOf(options);
    if (Object.keys(patch).length === 0) throw usage('nothing to update: give --name, --meta, --rate, --credits, --allow-ip or --role');
    const manager = await ctx.identities(command);
    const identity = await manager.update(id, patch);
    ctx.print(options.json ? json({ identity }) : `Updated identity ${clean(identity.id)}.\n\n${details(identity)}`);
  });

  identities
    .command('delete')
    .description('delete an identity; refused while keys name it unless --force (its keys are then refused as disabled)')
    .argument('<id>', 'the identity id')
    .option('--force', 'delete it even though keys still name it')
    .option('--reason <text>', 'why, kept in the audit trail')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { identity, keys } (the deleted identity, and how many keys still named it) as JSON')
    .action(async (rawId: string, options: { force?: boolean; reason?: string; yes?: boolean; json?: boolean }, command: Command) => {
      const id = input.identityId(rawId);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const manager = await ctx.identities(command);
      const current = await manager.get(id);
      if (current === null) throw failed(`no identity ${id}`);
      const keys = await manager.keyCount(id);
      if (keys > 0 && !options.force) {
        throw failed(
          `identity ${id} still has ${keys} key${keys === 1 ? '' : 's'}: move or delete them first (till keys list --identity ${id}), or give --force (its keys are then refused as disabled)`,
        );
      }
      await confirm(
        `Delete identity ${clean(id)} (${clean(current.name)})?${keys > 0 ? ` Its ${keys} key${keys === 1 ? '' : 's'} will be refused as disabled.` : ''}`,
        { yes: !!options.yes, action: `delete identity ${id}` },
      );
      const deleted = await manager.delete(id, { ...(options.force && { force: true }), ...(options.reason !== undefined && { reason: options.reason }) });
      ctx.print(
        options.json
          ? json(deleted)
          : `Deleted identity ${clean(id)}.${deleted.keys > 0 ? ` ${deleted.keys} key${deleted.keys === 1 ? '' : 's'} still name it and are refused as disabled.` : ''}\n`,
      );
    });
}
