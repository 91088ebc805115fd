// `till events list`: the audit trail, filtered, as a table, one JSON document, or JSON lines.
import type { Command } from 'commander';
import { AUDIT_TYPES, toJsonLines, type AuditEntry, type AuditQuery } from '@till/core';
import type { Context } from '../context.js';
import { failed } from '../errors.js';
import * as input from '../input.js';
import { clean, json, table, when } from '../output.js';

interface EventsOptions {
  key?: string;
  owner?: string;
  type?: string[];
  since?: string;
  until?: string;
  limit: string;
  cursor?: string;
  all?: boolean;
  json?: boolean;
  jsonl?: boolean;
}

const EXAMPLES = `
Examples:
  $ till events list --key 3hT9kQ2mXw8ZpL0a
  $ till events list --type auth.failed --type client.blocked --since 24h
  $ till events list --owner team-7 --since 2027-01-01 --all --jsonl > audit.jsonl`;

/** Who or what an entry names: the actor of a change, the client of a security event. */
function who(e: AuditEntry): string {
  if (e.actor) return clean(e.actor);
  if (e.ip) return clean(e.ip);
  return '-';
}

/** What happened beyond the type: the reason, the outcome, the detail, how often. */
function what(e: AuditEntry): string {
  const parts = [
    e.code,
    e.reason === null ? undefined : clean(e.reason),
    e.detail === undefined ? undefined : clean(e.detail),
    e.count && e.count > 1 ? `x${e.count}` : undefined,
  ];
  return parts.filter((p) => p !== undefined && p !== '').join('; ') || '-';
}

export function registerEvents(program: Command, ctx: Context): void {
  const events = program.command('events').description('read the audit trail: key changes and security events');
  registerTail(events, ctx);
  events
    .command('list')
    .description('list audit entries, oldest first, by key, owner, type and time')
    .option('--key <id>', "only this key's entries (its whole history, deleted keys included)")
    .option('--owner <id>', "only this owner's keys")
    .option('--type <type>', `only entries of this type; repeatable (${AUDIT_TYPES.join(', ')})`, input.collect)
    .option('--since <when>', 'entries from this time: ISO 8601, or a duration back from now (24h, 7d)')
    .option('--until <when>', 'entries before this time: ISO 8601, or a duration back from now')
    .option('--limit <n>', 'entries per page, 1-1000', '100')
    .option('--cursor <cursor>', 'continue where a previous page stopped')
    .option('--all', 'every page, following the cursor to the end')
    .option('--json', 'print { entries, cursor } as JSON')
    .option('--jsonl', 'print one JSON entry per line (for export)')
    .addHelpText('after', EXAMPLES)
    .action(async (options: EventsOptions, command: Command) => {
      const now = ctx.now();
      const query: AuditQuery = { limit: input.limit(options.limit) };
      if (options.key !== undefined) query.keyId = input.keyId(options.key);
      if (options.owner !== undefined) query.ownerId = input.text(options.owner, '--owner');
      if (options.type !== undefined) query.types = input.auditTypes(options.type);
      if (options.since !== undefined) query.from = input.past(options.since, '--since', now);
      if (options.until !== undefined) query.to = input.past(options.until, '--until', now);
      if (options.json && options.jsonl) throw failed('give --json or --jsonl, not both');
      const keyManager = await ctx.keys(command);
      const found: AuditEntry[] = [];
      let cursor = options.cursor;
      do {
        const page = await keyManager.audit({ ...query, ...(cursor !== undefined && { cursor }) });
        found.push(...page.entries);
        cursor = page.cursor;
      } while (options.all && cursor !== undefined);
      if (options.jsonl) return ctx.print(toJsonLines(found));
      if (options.json) return ctx.print(json({ entries: found, cursor: cursor ?? null }));
      ctx.print(
        found.length === 0
          ? 'No entries.\n'
          : table(
              ['time', 'type', 'key', 'who', 'what'],
              found.map((e) => [when(e.at), e.type, e.keyId ?? '-', who(e), what(e)]),
            ),
      );
      if (cursor !== undefined) ctx.print(`\nMore entries: add --cursor ${cursor} (or --all)\n`);
    });
}

interface TailOptions {
  key?: string;
  type?: string[];
  interval: string;
  jsonl?: boolean;
  for?: string;
}

/** `till events tail`: new entries as they are written, until interrupted (or `--for` has passed). */
export function registerTail(events: Command, ctx: Context): void {
  events
    .command('tail')
    .description('follow the audit trail live: print entries as they are written, until Ctrl+C')
    .option('--key <id>', "only this key's entries")
    .option('--type <type>', 'only entries of this type; repeatable', input.collect)
    .option('--interval <duration>', 'how often to look for new entries', '1s')
    .option('--for <duration>', 'stop after this long (for scripts); default: until interrupted')
    .option('--jsonl', 'print one JSON entry per line')
    .action(async (options: TailOptions, command: Command) => {
      const every = input.duration(options.interval, '--interval');
      if (every < 100) throw failed('--interval must be at least 100ms');
      const until = options.for === undefined ? Number.POSITIVE_INFINITY : ctx.now() + input.duration(options.for, '--for');
      const query: AuditQuery = { limit: 1000 };
      if (options.key !== undefined) query.keyId = input.keyId(options.key);
      if (options.type !== undefined) query.types = input.auditTypes(options.type);
      const keyManager = await ctx.keys(command);
      // Start at the end: find the newest entry's id, then print what comes after it.
      const startedAt = ctx.now();
      let cursor: string | undefined;
      for (let page = await keyManager.audit({ ...query, from: startedAt - 1000 }); ; ) {
        if (page.entries.length > 0) cursor = page.entries[page.entries.length - 1]!.id;
        if (page.cursor === undefined) break;
        page = await keyManager.audit({ ...query, cursor: page.cursor });
      }
      let stopped = false;
      const stop = () => {
        stopped = true;
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      ctx.note(`following the audit trail (Ctrl+C to stop)\n`);
      try {
        while (!stopped && ctx.now() < until) {
          const page = await keyManager.audit({ ...query, ...(cursor !== undefined ? { cursor } : { from: startedAt }) });
          for (const e of page.entries) {
            ctx.print(options.jsonl ? toJsonLines([e]) : `${when(e.at)}  ${e.type.padEnd(14)}  ${(e.keyId ?? '-').padEnd(16)}  ${who(e)}  ${what(e)}\n`);
            cursor = e.id;
          }
          if (page.cursor === undefined) await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, until - ctx.now()))));
        }
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
