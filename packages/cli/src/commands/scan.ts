// `till scan`: keys left in files (by format and check), reported by id and status, never the secret.
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { Command } from 'commander';
import { findKeys, keyStatus, type KeyManager } from '@till/core';
import type { Context } from '../context.js';
import { confirm } from '../confirm.js';
import { failed } from '../errors.js';
import { isIgnored, parseIgnore, type IgnoreFile } from '../gitignore.js';
import { json, table } from '../output.js';

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

type Status = 'active' | 'disabled' | 'not_yet_valid' | 'revoked' | 'expired' | 'unknown' | 'not checked';

interface Finding {
  file: string;
  line: number;
  column: number;
  prefix: string;
  keyId: string;
  status: Status;
}

const LIVE: ReadonlySet<Status> = new Set(['active', 'disabled', 'not_yet_valid']);

const EXAMPLES = `
Examples:
  $ till scan .                      # every file git would not ignore
  $ till scan src config --json
  $ till scan . --revoke --yes       # revokes every live key found, with reason "leaked"
  $ till scan . --offline            # no Redis: any key found fails

Exit code 1 when a live key is found, or a key this Redis does not know (it may be another
environment's), or with --offline any key; so it works as a CI step and as a pre-commit hook (see
the README).`;

/** Files under `paths`, skipping what .gitignore files (and .git) exclude. */
function* walk(paths: readonly string[]): Generator<string> {
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw failed(`cannot read ${JSON.stringify(path)}: no such file or directory`);
    }
    if (!stat.isDirectory()) {
      yield path;
      continue;
    }
    yield* walkDirectory(path, '', []);
  }
}

function* walkDirectory(root: string, rel: string, inherited: readonly IgnoreFile[]): Generator<string> {
  const dir = rel === '' ? root : join(root, rel);
  let ignores = inherited;
  try {
    ignores = [...inherited, parseIgnore(readFileSync(join(dir, '.gitignore'), 'utf8'), rel.split(sep).join('/'))];
  } catch {
    // No .gitignore here.
  }
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.name === '.git') continue;
    const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) {
      if (!isIgnored(ignores, childRel, true)) yield* walkDirectory(root, childRel, ignores);
    } else if (entry.isFile() && !isIgnored(ignores, childRel, false)) {
      yield join(root, childRel);
    }
  }
}

/** The file's text, or why it was skipped. */
function readText(file: string): string | 'binary' | 'large' | 'unreadable' {
  try {
    const { size } = statSync(file);
    if (size > MAX_FILE_BYTES) return 'large';
    const fd = openSync(file, 'r');
    try {
      const head = Buffer.alloc(Math.min(SNIFF_BYTES, size));
      readSync(fd, head, 0, head.length, 0);
      if (head.includes(0)) return 'binary';
    } finally {
      closeSync(fd);
    }
    return readFileSync(file, 'utf8');
  } catch {
    return 'unreadable';
  }
}

/** A path as printed: relative to the working directory when under it, else as found. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel === '' || rel.startsWith('..') ? file : rel;
}

async function statusOf(keys: KeyManager, id: string, now: number): Promise<Status> {
  const info = await keys.get(id);
  return info === null ? 'unknown' : keyStatus(info, now);
}

export function registerScan(program: Command, ctx: Context): void {
  program
    .command('scan')
    .description('find API keys in files (by format and check) and report each by id and status, never the secret')
    .argument('<paths...>', 'files and directories (directories are walked, .gitignore respected)')
    .option('--offline', 'do not ask Redis for each key\'s status: any key found counts as live')
    .option('--revoke', 'revoke every live key found, with reason "leaked" (asks first unless --yes)')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .option('--json', 'print { scanned, skipped, findings, revoked } as JSON')
    .addHelpText('after', EXAMPLES)
    .action(async (paths: string[], options: ScanOptions, command: Command) => {
      if (options.offline && options.revoke) throw failed('--revoke needs Redis: it cannot go with --offline');
      const files = [...walk(paths)];
      const progress = !options.json && process.stderr.isTTY && files.length >= 500;
      const skipped = { binary: 0, large: 0, unreadable: 0 };
      const findings: Finding[] = [];
      files.forEach((file, i) => {
        if (progress && i % 100 === 0) ctx.note(`\rscanning ${i}/${files.length} files`);
        const text = readText(file);
        if (typeof text !== 'string' || text === 'binary' || text === 'large' || text === 'unreadable') {
          skipped[text as keyof typeof skipped]++;
          return;
        }
        for (const found of findKeys(text)) {
          findings.push({ file: shown(file), line: found.line, column: found.column, prefix: found.prefix, keyId: found.id, status: 'not checked' });
        }
      });
      if (progress) ctx.note(`\rscanned ${files.length} files${' '.repeat(12)}\n`);

      const revoked: string[] = [];
      if (!options.offline && findings.length > 0) {
        const keys = await ctx.keys(command);
        const now = ctx.now();
        const statuses = new Map<string, Status>();
        for (const id of new Set(findings.map((f) => f.keyId))) statuses.set(id, await statusOf(keys, id, now));
        for (const f of findings) f.status = statuses.get(f.keyId)!;
        const live = [...statuses].filter(([, s]) => LIVE.has(s)).map(([id]) => id);
        if (options.revoke && live.length > 0) {
          await confirm(`Revoke the ${live.length} live key${live.length === 1 ? '' : 's'} found in files, as leaked?`, { yes: !!options.yes, action: `revoke ${live.length} keys` });
          for (const id of live) {
            await keys.revoke(id, { reason: 'leaked' });
            revoked.push(id);
          }
        }
      }
      // A key this store does not know may be another environment's: it fails the scan too.
      const alive = findings.some((f) => LIVE.has(f.status) || f.status === 'not checked' || f.status === 'unknown');
      if (alive) ctx.exitCode = 1;
      if (options.json) {
        ctx.print(json({ scanned: files.length, skipped, findings, revoked }));
        return;
      }
      if (findings.length > 0) {
        // prefix_<id>…: the public part; the secret that follows is never printed.
        ctx.print(table(['FILE', 'LINE', 'KEY', 'STATUS'], findings.map((f) => [f.file, `${f.line}:${f.column}`, `${f.prefix}_${f.keyId}…`, f.status.replace(/_/g, ' ')])));
      }
      const skippedText = Object.entries(skipped).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why}`).join(', ');
      ctx.note(`Scanned ${files.length} files${skippedText ? ` (skipped ${skippedText})` : ''}: ${findings.length} keys found` +
        (alive ? options.offline ? '; with --offline every key found counts as live.\n' : `; live keys found${revoked.length > 0 ? `, ${revoked.length} revoked as leaked (remove them from the files too)` : ': revoke them (--revoke) and remove them from the files'}.\n` : '.\n'));
    });
}
