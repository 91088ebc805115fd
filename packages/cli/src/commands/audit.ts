// `till audit`: the keys an audit should look at, each with why and what to do; --revoke acts on them.
import type { Command } from 'commander';
import type { Finding, ReportOptions } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { GUIDE } from '../guide.js';
import { clean, json, table, when } from '../output.js';

interface AuditOptions {
  unusedFor: string;
  neverUsedAfter: string;
  rotationAge: string;
  failures: string;
  owner?: string;
  revoke?: boolean;
  reason?: string;
  yes?: boolean;
  json?: boolean;
}

const EXAMPLES = `
Examples:
  $ till audit
  $ till audit --unused-for 30d --rotation-age 180d --owner team-7
  $ till audit --json > audit.json                      # for schedulers
  $ till audit --revoke --yes --reason "quarterly audit"  # revokes every key listed

Each finding names the section of the key-handling guide that explains why it matters
(${GUIDE}).`;

export function registerAudit(program: Command, ctx: Context): void {
  program
    .command('audit')
    .description('list keys never used, unused for long, without expiry, due for rotation, with wildcard scopes or many failures')
    .option('--unused-for <duration>', 'list keys not used for this long', '90d')
    .option('--never-used-after <duration>', 'list keys never used and older than this', '7d')
    .option('--rotation-age <duration>', 'list keys older than this that were never rotated', '90d')
    .option('--failures <n>', 'list keys with at least this many refused requests in the last 7 days (scope or state; wrong secrets never count)', '100')
    .option('--owner <id>', "only this owner's keys")
    .option('--revoke', 'revoke every key listed (asks first unless --yes)')
    .option('--reason <text>', 'with --revoke: the reason kept on each key (default: audit: <findings>)')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { generatedAt, keysChecked, findings, revoked } as JSON (each finding with the guide section in `docs`)')
    .addHelpText('after', EXAMPLES)
    .action(async (options: AuditOptions, command: Command) => {
      const report: ReportOptions = {
        unusedFor: input.duration(options.unusedFor, '--unused-for'),
        neverUsedAfter: input.duration(options.neverUsedAfter, '--never-used-after'),
        rotationAge: input.duration(options.rotationAge, '--rotation-age'),
        failures: input.count(options.failures, '--failures'),
      };
      if (options.owner !== undefined) report.ownerId = input.text(options.owner, '--owner');
      if (options.reason !== undefined) {
        input.text(options.reason, '--reason');
        if (!options.revoke) throw failed('--reason goes with --revoke');
      }
      const keyManager = await ctx.keys(command);
      const result = await keyManager.report(report);
      const byKey = new Map<string, Finding[]>();
      for (const f of result.findings) byKey.set(f.keyId, [...(byKey.get(f.keyId) ?? []), f]);
      const revoked: string[] = [];
      if (options.revoke && byKey.size > 0) {
        await confirm(`Revoke the ${byKey.size} key${byKey.size === 1 ? '' : 's'} listed? They stop working at once and cannot be restored.`, {
          yes: !!options.yes,
          action: `revoke ${byKey.size} keys`,
        });
        for (const [id, findings] of byKey) {
          const reason = options.reason ?? `audit: ${findings.map((f) => f.kind).join(', ')}`;
          await keyManager.revoke(id, { reason });
          revoked.push(id);
        }
      }
      if (options.json) {
        ctx.print(json({ ...result, revoked }));
        return;
      }
      if (result.findings.length === 0) {
        ctx.print(`Checked ${result.keysChecked} keys at ${when(result.generatedAt)}: nothing to report.\n`);
        return;
      }
      ctx.print(
        table(
          ['KEY', 'NAME', 'OWNER', 'FINDING', 'WHY', 'WHAT TO DO'],
          result.findings.map((f) => [f.keyId, clean(f.name), f.ownerId === null ? '-' : clean(f.ownerId), f.kind, f.why, f.action.replace('<id>', f.keyId)]),
        ),
      );
      // Each kind of finding once, with the section of the key-handling guide that says why it matters.
      const sections = new Map(result.findings.map((f) => [f.kind, f.docs]));
      ctx.print(`\n${table(['FINDING', 'WHY IT MATTERS'], [...sections])}`);
      ctx.print(
        `\nChecked ${result.keysChecked} keys at ${when(result.generatedAt)}: ${result.findings.length} findings on ${byKey.size} keys.` +
          (revoked.length > 0 ? ` Revoked ${revoked.length} keys.` : options.revoke ? '' : ' Add --revoke to revoke them.') +
          '\n',
      );
    });
}
