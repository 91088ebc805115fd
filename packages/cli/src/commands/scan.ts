// `till scan`: keys left in files (by format and check), reported by id and status, never the secret.
import { spawnSync } from 'node:child_process';
import { closeSync, constants, type Dirent, type Stats, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { findKeys, safeJson, type KeyManager } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import { isIgnored, parseIgnore, type IgnoreFile } from '../gitignore.js';
import { guideSection } from '../guide.js';
import { clean, json, table } from '../output.js';

interface ScanOptions {
  offline?: boolean;
  revoke?: boolean;
  yes?: boolean;
  json?: boolean;
}

/** Files larger than this are skipped (and counted): keys live in source and config, not in dumps. */
const MAX_FILE_BYTES = 20 * 1024 * 1024;
/** A NUL byte in the first block marks a binary file, as git decides. */
const SNIFF_BYTES = 8000;

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

/** Files to scan under `paths`, absolute and de-duplicated, each named once. */
function filesOf(paths: readonly string[]): string[] {
  const out = new Set<string>();
  for (const path of paths) {
    let stat: Stats;
    try {
      stat = statSync(path);
    } catch {
      throw failed(`cannot read ${safeJson(path)}: no such file or directory`);
    }
    if (stat.isDirectory()) {
      for (const file of gitFiles(path) ?? walkDirectory(path, '', [])) out.add(resolve(file));
    } else if (stat.isFile()) {
      out.add(resolve(path));
    } else {
      throw failed(`cannot scan ${safeJson(path)}: not a regular file or a directory`);
    }
  }
  return [...out];
}

/**
 * In a git work tree, what git has: every tracked file (ignored or not: `git add -f` puts an ignored
 * file in the repository) and the untracked files it does not ignore. Null outside a work tree or
 * without git: the caller walks instead.
 */
function gitFiles(dir: string): string[] | null {
  const run = spawnSync('git', ['-C', dir, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 1024 * 1024 * 1024,
  });
  if (run.error || run.status !== 0) return null;
  const out: string[] = [];
  for (const name of run.stdout.toString('utf8').split('\0')) {
    if (name === '') continue;
    const path = join(dir, name);
    // An untracked repository inside this one is listed as a directory: list it with its own git.
    if (name.endsWith('/')) out.push(...(gitFiles(path) ?? []));
    else if (isRegularFile(path)) out.push(path);
  }
  return out;
}

/** A regular file, not a symbolic link (to a FIFO, a device, a file outside the tree) nor anything else. */
function isRegularFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false; // tracked but deleted in the work tree
  }
}

/** Outside git: files under `root`, skipping what .gitignore files (and .git) exclude. */
function* walkDirectory(root: string, rel: string, inherited: readonly IgnoreFile[]): Generator<string> {
  const dir = rel === '' ? root : join(root, rel);
  let ignores = inherited;
  try {
    ignores = [...inherited, parseIgnore(readFileSync(join(dir, '.gitignore'), 'utf8'), rel.split(sep).join('/'))];
  } catch {
    // No .gitignore here.
  }
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.name === '.git') continue;
    const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
    // Symbolic links are neither: never followed, never read.
    if (entry.isDirectory()) {
      if (!isIgnored(ignores, childRel, true)) yield* walkDirectory(root, childRel, ignores);
    } else if (entry.isFile() && !isIgnored(ignores, childRel, false)) {
      yield join(root, childRel);
    }
  }
}

/**
 * The file's text, or why it was skipped. Opened without blocking and checked on the descriptor
 * itself: a FIFO or device put in a file's place between listing and reading is never read.
 */
function readText(file: string): string | 'binary' | 'large' | 'unreadable' {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return 'unreadable';
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return 'unreadable';
    if (stat.size > MAX_FILE_BYTES) return 'large';
    const head = Buffer.alloc(Math.min(SNIFF_BYTES, stat.size));
    readSync(fd, head, 0, head.length, 0);
    if (head.includes(0)) return 'binary';
    return readFileSync(fd, 'utf8');
  } catch {
    return 'unreadable';
  } finally {
    closeSync(fd);
  }
}

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
    .argument('<paths...>', 'files and directories (in a git work tree: the files git tracks and the untracked ones it does not ignore; elsewhere a walk that respects .gitignore)')
    .option('--offline', 'do not ask Redis for each key\'s status: any key found counts as live')
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
          const finding: Finding = { file: shown(file), line: found.line, column: found.column, prefix: found.prefix, keyId: found.id, status: 'not checked', docs: DOCS['not checked'] };
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
          await confirm(`Revoke the ${plural(live.length, 'live key')} found in files, as leaked?`, { yes: !!options.yes, action: `revoke ${plural(live.length, 'key')}` });
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
        ctx.print(table(['FILE', 'LINE', 'KEY', 'STATUS'], findings.map((f) => [clean(f.file), `${f.line}:${f.column}`, `${f.prefix}_${f.keyId}…`, LABELS[f.status] ?? f.status.replace(/_/g, ' ')])));
      }
      const skippedText = Object.entries(skipped).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why}`).join(', ');
      const notes: string[] = [];
      const why = (status: Status) => ` why: ${DOCS[status]}`;
      if (options.offline && findings.length > 0) notes.push(`with --offline every key found counts as live: remove them from the files.${why('not checked')}`);
      if (revoked.length > 0) notes.push(`${plural(revoked.length, 'live key')} revoked as leaked: remove ${revoked.length === 1 ? 'it' : 'them'} from the files too.${why('active')}`);
      if (liveLeft > 0) notes.push(`${plural(liveLeft, 'live key')} found: revoke ${liveLeft === 1 ? 'it' : 'them'} (--revoke) and remove ${liveLeft === 1 ? 'it' : 'them'} from the files.${why('active')}`);
      const dead = new Set(findings.filter((f) => (f.status === 'revoked' || f.status === 'expired') && !revoked.includes(f.keyId)).map((f) => `${f.prefix}_${f.keyId}`)).size;
      if (dead > 0) notes.push(`${plural(dead, 'key')} found already revoked or expired: ${dead === 1 ? 'it no longer works' : 'they no longer work'}; remove ${dead === 1 ? 'it' : 'them'} from the files.${why('revoked')}`);
      const unknown = count('unknown');
      if (unknown > 0) notes.push(`${plural(unknown, 'key')} unknown to this Redis: ${unknown === 1 ? 'it' : 'they'} may belong to another environment (scan with its --redis); remove ${unknown === 1 ? 'it' : 'them'} from the files.${why('unknown')}`);
      const mismatch = count('mismatch');
      if (mismatch > 0) {
        notes.push(`${plural(mismatch, 'key')} with a real id whose secret does not match: made up, or TILL_PEPPER differs from your services' pepper (then real keys look like this); not called live, never revoked. Remove ${mismatch === 1 ? 'it' : 'them'} from the files.${why('mismatch')}`);
      }
      const unconfirmable = count('unconfirmable');
      if (unconfirmable > 0) notes.push(`${plural(unconfirmable, 'key')} stored with a pepper cannot be confirmed without it: set TILL_PEPPER to your services' pepper and scan again; nothing was revoked for ${unconfirmable === 1 ? 'it' : 'them'}.${why('unconfirmable')}`);
      ctx.note(`Scanned ${plural(files.length, 'file')}${skippedText ? ` (skipped ${skippedText})` : ''}: ${plural(findings.length, 'key')} found.\n${notes.map((n) => `${n}\n`).join('')}`);
    });
}
