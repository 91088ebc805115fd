// .gitignore rules, as git reads them for a walk: patterns per directory, the last match wins.

interface Rule {
  readonly regex: RegExp;
  readonly negate: boolean;
  readonly directoryOnly: boolean;
}

/** One directory's rules; `base` is that directory relative to the walk's root ('' for the root). */
export interface IgnoreFile {
  readonly base: string;
  readonly rules: readonly Rule[];
}

/** A glob of .gitignore as a regular expression over a path relative to the file's directory. */
function globToRegex(glob: string, anchored: boolean): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` any directories, `/**` everything below, `**` anything.
        if (glob[i + 2] === '/') {
          out += '(?:.*/)?';
          i += 2;
        } else {
          out += '.*';
          i += 1;
        }
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end === -1) out += '\\[';
      else {
        const body = glob
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\');
        out += `[${body}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < glob.length) {
      out += glob[i + 1]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      i += 1;
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  // Unanchored patterns match at any depth; a match on a directory covers what is below it.
  return new RegExp(`^${anchored ? '' : '(?:.*/)?'}${out}(?:/.*)?$`);
}

/** Parses the text of a .gitignore in directory `base`. */
export function parseIgnore(text: string, base: string): IgnoreFile {
  const rules: Rule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.replace(/(?<!\\)\s+$/, '');
    if (line === '' || line.startsWith('#')) continue;
    let negate = false;
    if (line.startsWith('!')) {
      negate = true;
      line = line.slice(1);
    } else if (line.startsWith('\\!') || line.startsWith('\\#')) line = line.slice(1);
    const directoryOnly = line.endsWith('/');
    if (directoryOnly) line = line.slice(0, -1);
    const anchored = line.includes('/');
    if (line.startsWith('/')) line = line.slice(1);
    if (line === '') continue;
    rules.push({ regex: globToRegex(line, anchored), negate, directoryOnly });
  }
  return { base, rules };
}

/**
 * Whether `path` (relative to the walk's root, `/`-separated) is ignored by the files that apply to
 * it, nearest last: the last matching rule wins.
 */
export function isIgnored(files: readonly IgnoreFile[], path: string, isDirectory: boolean): boolean {
  let ignored = false;
  for (const file of files) {
    if (file.base !== '' && !path.startsWith(`${file.base}/`)) continue;
    const rel = file.base === '' ? path : path.slice(file.base.length + 1);
    for (const rule of file.rules) {
      // A directory-only rule (`build/`) never names a file; the walk skips the directories it names.
      if (rule.directoryOnly && !isDirectory) continue;
      if (rule.regex.test(rel)) ignored = !rule.negate;
    }
  }
  return ignored;
}
