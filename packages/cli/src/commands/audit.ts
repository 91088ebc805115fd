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
  expiringWithin?: string;
  reindex?: boolean;
}

/** `--expiring-within`: a whole number of days, or a duration like `36h`. */
function within(text: string): number {
  return /^\d+$/.test(text) ? input.count(text, '--expiring-within') * 86_400_000 : input.duration(text, '--expiring-within');
}

const EXAMPLES = `
Examples:
  $ till audit
  $ till audit --unused-for 30d --rotation-age 180d --owner team-7
  $ till audit --json > audit.json                      # for schedulers
  $ till audit --revoke --yes --reason "quarterly audit"  # revokes every key listed
  $ till audit --expiring-within 14                     # also keys expiring within 14 days
  $ till audit --reindex --expiring-within 14           # once, after upgrading a Redis store from 0.1

Each finding names the section of the key-handling guide that explains why it matters
(${GUIDE}).`;

export function registerAudit(program: Command, ctx: Context): void {
  program
    .command('audit')
    .description('list keys never used, unused for long, without expiry, due for rotation, with wildcard scopes or many failures, or expiring soon')
    .option('--unused-for <duration>', 'list keys not used for this long', '90d')
    .option('--never-used-after <duration>', 'list keys never used and older than this', '7d')
    .option('--rotation-age <duration>', 'list keys older than this that were never rotated', '90d')
    .option('--failures <n>', 'list keys with at least this many refused requests in the last 7 days (scope or state; wrong secrets never count)', '100')
    .option('--owner <id>', "only this owner's keys")
    .option(
      '--expiring-within <days>',
      'also list keys expiring within this many days (or a duration like 36h), read from the expiry index; never revoked by --revoke',
    )
    .option('--reindex', "first rebuild the expiry index from the keys' records (once, for keys written before 0.2.0)")
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
      if (options.expiringWithin !== undefined) report.expiringWithin = within(options.expiringWithin);
      if (options.reason !== undefined) {
        input.text(options.reason, '--reason');
        if (!options.revoke) throw failed('--reason goes with --revoke');
      }
      const keyManager = await ctx.keys(command);
      const reindexed = options.reindex ? await keyManager.reindexExpiries() : undefined;
      if (reindexed !== undefined && !options.json)
        ctx.note(`Rebuilt the expiry index: ${reindexed.indexed} of ${reindexed.checked} keys have an expiry to remind of.\n`);
      const result = await keyManager.report(report);
      // Keys to revoke: an upcoming expiry is a reminder, not a fault, so it alone revokes nothing.
      const byKey = new Map<string, Finding[]>();
      for (const f of result.findings) if (f.kind !== 'expiring') byKey.set(f.keyId, [...(byKey.get(f.keyId) ?? []), f]);
      if (result.expiryIndexComplete === false)
        ctx.note(
          'Note: the expiry index does not hold the keys written before it existed yet, so keys expiring soon may be missing: run `till audit --reindex` once.\n',
        );
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
        ctx.print(json({ ...result, revoked, ...(reindexed !== undefined && { reindexed }) }));
        return;
      }
      if (result.findings.length === 0) {
        ctx.print(`Checked ${result.keysChecked} keys at ${when(result.generatedAt)}: nothing to report.\n`);
        return;
      }
      ctx.print(
        table(
          ['KEY', 'NAME', 'OWNER', 'FINDING', 'WHY', 'WHAT TO DO'],
          result.findings.map((f) => [
            f.keyId,
            clean(f.name),
            f.ownerId === null ? '-' : clean(f.ownerId),
            f.kind,
            f.why,
            f.action.replaceAll('<id>', f.keyId),
          ]),
        ),
      );
      // Each kind of finding once, with the section of the key-handling guide that says why it matters.
      const sections = new Map(result.findings.map((f) => [f.kind, f.docs]));
      ctx.print(`\n${table(['FINDING', 'WHY IT MATTERS'], [...sections])}`);
      ctx.print(
        `\nChecked ${result.keysChecked} keys at ${when(result.generatedAt)}: ${result.findings.length} findings on ${new Set(result.findings.map((f) => f.keyId)).size} keys.` +
          (revoked.length > 0
            ? ` Revoked ${revoked.length} keys.`
            : options.revoke || byKey.size === 0
              ? ''
              : byKey.size < new Set(result.findings.map((f) => f.keyId)).size
                ? ` Add --revoke to revoke the ${byKey.size} keys listed for more than an upcoming expiry.`
                : ' Add --revoke to revoke them.') +
          '\n',
      );
    });
}
