// The .gitignore rules `till scan` follows, against what git does with them.
import { describe, expect, it } from 'vitest';
import { isIgnored, parseIgnore } from '../src/gitignore.js';

describe('.gitignore rules', () => {
  const root = parseIgnore(
    ['# comment', '', '*.log', '!keep.log', '/dist', 'build/', 'docs/**/*.tmp', 'a?c', '\\#hash', 'cache/*.bin', 'trailing   '].join('\n'),
    '',
  );
  const nested = parseIgnore('secret.txt\n!important.log\n', 'src/deep');
  const files = [root, nested];
  const cases: Array<[string, boolean, boolean]> = [
    ['app.log', false, true],
    ['src/app.log', false, true],
    ['keep.log', false, false],
    ['dist', true, true],
    ['src/dist', true, false],
    ['build', true, true],
    ['src/build', true, true],
    ['build', false, false], // a file named build: `build/` names directories only
    ['docs/a/b/c.tmp', false, true],
    ['docs/c.tmp', false, true],
    ['other/c.tmp', false, false],
    ['abc', false, true],
    ['abbc', false, false],
    ['#hash', false, true],
    ['cache/x.bin', false, true],
    ['cache/sub/x.bin', false, false],
    ['trailing', false, true],
    ['src/deep/secret.txt', false, true],
    ['src/secret.txt', false, false],
    ['src/deep/important.log', false, false],
    ['src/config.ts', false, false],
  ];
  for (const [path, isDirectory, expected] of cases) {
    it(`${expected ? 'ignores' : 'keeps'} ${path}${isDirectory ? '/' : ''}`, () => {
      expect(isIgnored(files, path, isDirectory)).toBe(expected);
    });
  }
});
