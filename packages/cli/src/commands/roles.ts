// `till roles define|show|list|delete`: named scope bundles that keys hold (`till keys create --role`).
import type { Command } from 'commander';
import { isValidRoleName, type RoleRecord } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { json, table, when } from '../output.js';

const EXAMPLES = `
Examples:
  $ till roles define reporting --scope reports:read --scope exports:*
  $ till roles list
  $ till roles show reporting --json
  $ till keys create --name "BI export" --scope users:read --role reporting --expires 90d
  $ till roles delete reporting --yes            # refused while keys hold it
  $ till roles delete reporting --force --yes    # they lose its scopes at once`;

/** A role name from the command line, checked before Redis is contacted. */
function roleName(text: string): string {
  if (!isValidRoleName(text as unknown)) {
    throw failed(`invalid role name ${JSON.stringify(text.slice(0, 64))}: 1-64 characters of a-z 0-9 _ . -, starting with a letter or digit`);
  }
  return text;
}

function details(role: RoleRecord): string {
  const fields: [string, string][] = [
    ['name', role.name],
    ['scopes', role.scopes.join(', ')],
    ['created', when(role.createdAt)],
    ['updated', when(role.updatedAt)],
    ['version', String(role.version)],
  ];
  return `${fields.map(([label, value]) => `${label.padEnd(8)} ${value}`).join('\n')}\n`;
}

export function registerRoles(program: Command, ctx: Context): void {
  const roles = program
    .command('roles')
    .description('define, show, list and delete roles: named bundles of scopes that keys hold (till keys create --role)')
    .addHelpText('after', EXAMPLES);

  roles
    .command('define')
    .description("define a role, or replace a role's scopes: every key holding it gets them at once, in every service")
    .argument('<name>', 'the role name: a-z 0-9 _ . -, like reporting')
    .requiredOption('--scope <scopes>', 'a scope the role grants (users:read, users:*, *); repeat it or separate with commas', input.collect)
    .option('--reason <text>', 'why, kept in the audit trail')
    .option('--json', 'print { role } as JSON')
    .action(async (rawName: string, options: { scope: string[]; reason?: string; json?: boolean }, command: Command) => {
      const name = roleName(rawName);
      const scopes = input.scopes(options.scope);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const manager = await ctx.roles(command);
      const role = await manager.define(name, scopes, options.reason === undefined ? {} : { reason: options.reason });
      ctx.print(options.json ? json({ role }) : `Defined role ${role.name} (version ${role.version}).\n\n${details(role)}`);
    });

  roles
    .command('show')
    .description('show a role and how many keys hold it')
    .argument('<name>', 'the role name')
    .option('--json', 'print { role, keys } as JSON')
    .action(async (rawName: string, options: { json?: boolean }, command: Command) => {
      const name = roleName(rawName);
      const manager = await ctx.roles(command);
      const role = await manager.get(name);
      if (role === null) throw failed(`no role ${name}: till roles list shows them`);
      const keys = await manager.holders(name);
      ctx.print(options.json ? json({ role, keys }) : `${details(role)}${'keys'.padEnd(8)} ${keys} (not revoked)\n`);
    });

  roles
    .command('list')
    .description('list every role with its scopes')
    .option('--json', 'print { roles } as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const manager = await ctx.roles(command);
      const all = await manager.list();
      if (options.json) ctx.print(json({ roles: all }));
      else if (all.length === 0) ctx.print('No roles. Define one: till roles define <name> --scope <scope>\n');
      else
        ctx.print(
          table(
            ['NAME', 'SCOPES', 'UPDATED'],
            all.map((r) => [r.name, r.scopes.join(' '), when(r.updatedAt)]),
          ),
        );
    });

  roles
    .command('delete')
    .description('delete a role (refused while keys hold it, unless --force: they lose its scopes at once); asks first unless --yes')
    .argument('<name>', 'the role name')
    .option('--force', 'delete it even though keys hold it')
    .option('--reason <text>', 'why, kept in the audit trail')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { role, keys } (the deleted role, and how many keys still named it) as JSON')
    .action(async (rawName: string, options: { force?: boolean; reason?: string; yes?: boolean; json?: boolean }, command: Command) => {
      const name = roleName(rawName);
      if (options.reason !== undefined) input.text(options.reason, '--reason');
      const manager = await ctx.roles(command);
      if ((await manager.get(name)) === null) throw failed(`no role ${name}: till roles list shows them`);
      await confirm(`Delete role ${name}? Keys holding it lose its scopes at once.`, { yes: !!options.yes, action: `delete role ${name}` });
      const deleted = await manager.delete(name, { force: options.force === true, ...(options.reason !== undefined && { reason: options.reason }) });
      ctx.print(
        options.json
          ? json(deleted)
          : `Deleted role ${name}.${deleted.keys > 0 ? ` ${deleted.keys} key${deleted.keys === 1 ? '' : 's'} still name it and lost its scopes.` : ''}\n`,
      );
    });
}
