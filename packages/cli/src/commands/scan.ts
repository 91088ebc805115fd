// `till scan`: keys left in files (by format and check), reported by id and status, never the secret.
import { relative } from 'node:path';
import type { Command } from 'commander';
import { findKeys, type KeyManager } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import { guideSection } from '../guide.js';
import { filesOf, readText } from './scan-files.js';
import { clean, json, table } from '../output.js';

interface ScanOptions {
  offline?: boolean;
  revoke?: boolean;
  yes?: boolean;
  json?: boolean;
}

/**
 * A key's status as the scan judged it. A stored status (active ... expired) only when the key's
 * secret matched the stored digest: ids are public, so an id alone proves nothing. `mismatch`: a
 * key with this id exists but not with this secret; `unconfirmable`: stored with a pepper this run
 * does not have (TILL_PEPPER).
 */
type Status = 'active' | 'disabled' | 'not_yet_valid' | 'revoked' | 'expired' | 'unknown' | 'mismatch' | 'unconfirmable' | 'not checked';

interface Finding {
  file: string;
  line: number;
  column: number;
  prefix: string;
  keyId: string;
  status: Status;
  /** The section of the key-handling guide that says why this result matters and what to do. */
  docs: string;
}

/** Confirmed keys that still work, or may (disabled, not yet valid): the ones --revoke revokes. */
const LIVE: ReadonlySet<Status> = new Set(['active', 'disabled', 'not_yet_valid']);
/** Found keys that are not known to be dead: the scan fails while any is left. */
const MAY_BE_LIVE: ReadonlySet<Status> = new Set([...LIVE, 'unknown', 'mismatch', 'unconfirmable', 'not checked']);

/** Why each status matters, in the key-handling guide. */
const DOCS: Readonly<Record<Status, string>> = {
  active: guideSection('the-first-hour-after-a-leak'),
  disabled: guideSection('the-first-hour-after-a-leak'),
  not_yet_valid: guideSection('the-first-hour-after-a-leak'),
  unknown: guideSection('the-first-hour-after-a-leak'),
  revoked: guideSection('where-keys-live'),
  expired: guideSection('where-keys-live'),
  mismatch: guideSection('what-a-scan-result-means'),
  unconfirmable: guideSection('what-a-scan-result-means'),
  'not checked': guideSection('scan-before-you-commit'),
};

const LABELS: Partial<Record<Status, string>> = {
  mismatch: 'secret does not match',
  unconfirmable: 'cannot confirm without the pepper',
};

const EXAMPLES = `
Examples:
  $ till scan .                      # in a git work tree: tracked files and untracked ones not ignored
  $ till scan src config --json
  $ till scan . --revoke --yes       # revokes every live key found, with reason "leaked"
  $ till scan . --offline            # no Redis: any key found fails

A key counts as live only when its secret matches the stored one (key ids are public); set
TILL_PEPPER to your services' pepper.

Exit code 1 while something found may still be live: a live key not revoked by this run, a key this
Redis does not know (it may be another environment's), a key whose secret does not match or cannot
be checked without TILL_PEPPER, or with --offline any key. 0 when every key found is revoked or
expired. So it works as a CI step and as a pre-commit hook: ${guideSection('scan-before-you-commit')}.
Each result names the section of that guide that says why it matters.`;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A path as printed: relative to the working directory when under it, else as found. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel === '' || rel.startsWith('..') ? file : rel;
}

/** What the store says about a found key, judged by its secret (`identify`), never by its id. */
async function statusOf(keys: KeyManager, key: string): Promise<Status> {
  const identity = await keys.identify(key);
  return identity.match === 'confirmed' ? identity.status! : identity.match;
}

export function registerScan(program: Command, ctx: Context): void {
  program
    .command('scan')
    .description('find API keys in files (by format and check) and report each by id and status, never the secret')
    .argument(
      '<paths...>',
      'files and directories (in a git work tree: the files git tracks and the untracked ones it does not ignore; elsewhere a walk that respects .gitignore)',
    )
    .option('--offline', "do not ask Redis for each key's status: any key found counts as live")
    .option('--revoke', 'revoke every live key found (its secret confirmed), with reason "leaked" (asks first unless --yes)')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { scanned, skipped, findings, revoked } as JSON')
    .addHelpText('after', EXAMPLES)
    .action(async (paths: string[], options: ScanOptions, command: Command) => {
      if (options.offline && options.revoke) throw failed('--revoke needs Redis: it cannot go with --offline');
      const files = filesOf(paths);
      const progress = !options.json && process.stderr.isTTY && files.length >= 500;
      const skipped = { binary: 0, large: 0, unreadable: 0 };
      const findings: Finding[] = [];
      // Each finding's full key, kept in memory only to ask the store about it; never printed.
      const keyOf = new Map<Finding, string>();
      files.forEach((file, i) => {
        if (progress && i % 100 === 0) ctx.note(`\rscanning ${i}/${files.length} files`);
        const text = readText(file);
        if (text === 'binary' || text === 'large' || text === 'unreadable') {
          skipped[text]++;
          return;
        }
        for (const found of findKeys(text)) {
          const finding: Finding = {
            file: shown(file),
            line: found.line,
            column: found.column,
            prefix: found.prefix,
            keyId: found.id,
            status: 'not checked',
            docs: DOCS['not checked'],
          };
          findings.push(finding);
          keyOf.set(finding, text.slice(found.index, found.index + found.prefix.length + 1 + 44));
        }
      });
      if (progress) ctx.note(`\rscanned ${files.length} files${' '.repeat(12)}\n`);

      const revoked: string[] = [];
      if (!options.offline && findings.length > 0) {
        const keys = await ctx.keys(command);
        // By full key, not by id: a forged key and the real one share an id, not a verdict.
        const statuses = new Map<string, Status>();
        for (const key of new Set(keyOf.values())) statuses.set(key, await statusOf(keys, key));
        for (const f of findings) f.status = statuses.get(keyOf.get(f)!)!;
        const live = [...new Set(findings.filter((f) => LIVE.has(f.status)).map((f) => f.keyId))];
        if (options.revoke && live.length > 0) {
          await confirm(`Revoke the ${plural(live.length, 'live key')} found in files, as leaked?`, {
            yes: !!options.yes,
            action: `revoke ${plural(live.length, 'key')}`,
          });
          for (const id of live) {
            await keys.revoke(id, { reason: 'leaked' });
            revoked.push(id);
          }
          for (const f of findings) if (LIVE.has(f.status) && revoked.includes(f.keyId)) f.status = 'revoked';
        }
      }
      keyOf.clear();
      // A revocation by this run moves a key to the rest of the first hour (out of the files, the history).
      for (const f of findings) f.docs = revoked.includes(f.keyId) ? DOCS.active : DOCS[f.status];
      const count = (status: Status) => new Set(findings.filter((f) => f.status === status).map((f) => `${f.prefix}_${f.keyId}`)).size;
      const liveLeft = new Set(findings.filter((f) => LIVE.has(f.status)).map((f) => f.keyId)).size;
      if (findings.some((f) => MAY_BE_LIVE.has(f.status))) ctx.exitCode = 1;
      if (options.json) {
        ctx.print(json({ scanned: files.length, skipped, findings, revoked }));
        return;
      }
      if (findings.length > 0) {
        // prefix_<id>…: the public part; the secret that follows is never printed. A file's name may
        // hold anything (an ANSI escape, a newline): it is printed escaped.
        ctx.print(
          table(
            ['FILE', 'LINE', 'KEY', 'STATUS'],
            findings.map((f) => [clean(f.file), `${f.line}:${f.column}`, `${f.prefix}_${f.keyId}…`, LABELS[f.status] ?? f.status.replace(/_/g, ' ')]),
          ),
        );
      }
      const skippedText = Object.entries(skipped)
        .filter(([, n]) => n > 0)
        .map(([why, n]) => `${n} ${why}`)
        .join(', ');
      const notes: string[] = [];
      const why = (status: Status) => ` why: ${DOCS[status]}`;
      if (options.offline && findings.length > 0) notes.push(`with --offline every key found counts as live: remove them from the files.${why('not checked')}`);
      if (revoked.length > 0)
        notes.push(
          `${plural(revoked.length, 'live key')} revoked as leaked: remove ${revoked.length === 1 ? 'it' : 'them'} from the files too.${why('active')}`,
        );
      if (liveLeft > 0)
        notes.push(
          `${plural(liveLeft, 'live key')} found: revoke ${liveLeft === 1 ? 'it' : 'them'} (--revoke) and remove ${liveLeft === 1 ? 'it' : 'them'} from the files.${why('active')}`,
        );
      const dead = new Set(
        findings.filter((f) => (f.status === 'revoked' || f.status === 'expired') && !revoked.includes(f.keyId)).map((f) => `${f.prefix}_${f.keyId}`),
      ).size;
      if (dead > 0)
        notes.push(
          `${plural(dead, 'key')} found already revoked or expired: ${dead === 1 ? 'it no longer works' : 'they no longer work'}; remove ${dead === 1 ? 'it' : 'them'} from the files.${why('revoked')}`,
        );
      const unknown = count('unknown');
      if (unknown > 0)
        notes.push(
          `${plural(unknown, 'key')} unknown to this Redis: ${unknown === 1 ? 'it' : 'they'} may belong to another environment (scan with its --redis); remove ${unknown === 1 ? 'it' : 'them'} from the files.${why('unknown')}`,
        );
      const mismatch = count('mismatch');
      if (mismatch > 0) {
        notes.push(
          `${plural(mismatch, 'key')} with a real id whose secret does not match: made up, or TILL_PEPPER differs from your services' pepper (then real keys look like this); not called live, never revoked. Remove ${mismatch === 1 ? 'it' : 'them'} from the files.${why('mismatch')}`,
        );
      }
      const unconfirmable = count('unconfirmable');
      if (unconfirmable > 0)
        notes.push(
          `${plural(unconfirmable, 'key')} stored with a pepper cannot be confirmed without it: set TILL_PEPPER to your services' pepper and scan again; nothing was revoked for ${unconfirmable === 1 ? 'it' : 'them'}.${why('unconfirmable')}`,
        );
      ctx.note(
        `Scanned ${plural(files.length, 'file')}${skippedText ? ` (skipped ${skippedText})` : ''}: ${plural(findings.length, 'key')} found.\n${notes.map((n) => `${n}\n`).join('')}`,
      );
    });
}
