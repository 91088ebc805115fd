// The files \`till scan\` reads: git's list when in a repository, else a walk that honours .gitignore;
// regular files only, binary and very large files skipped.
import { spawnSync } from 'node:child_process';
import { closeSync, constants, type Dirent, type Stats, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { safeJson } from '@till/core';
import { failed } from '../errors.js';
import { isIgnored, parseIgnore, type IgnoreFile } from '../gitignore.js';

/** Files larger than this are skipped (and counted): keys live in source and config, not in dumps. */
const MAX_FILE_BYTES = 20 * 1024 * 1024;
/** A NUL byte in the first block marks a binary file, as git decides. */
const SNIFF_BYTES = 8000;

/** Files to scan under `paths`, absolute and de-duplicated, each named once. */
export function filesOf(paths: readonly string[]): string[] {
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
export function readText(file: string): string | 'binary' | 'large' | 'unreadable' {
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
