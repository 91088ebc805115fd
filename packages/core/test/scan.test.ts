// findKeys: real keys anywhere in text, however they are glued to what comes before; look-alikes never; linear time.
import { describe, expect, it } from 'vitest';
import { findKeys, generateKey } from '../src/index.js';

const ids = (text: string) => findKeys(text).map((f) => [f.prefix, f.id, f.line, f.column]);

describe('findKeys', () => {
  const live = generateKey('sk_live');
  const plain = generateKey('till');
  const id = (k: { key: string }) => k.key.slice(-44, -28);

  it('finds keys alone, after punctuation, after letters, digits and underscores', () => {
    const cases: Array<[string, number]> = [
      [live.key, 1],
      [`TOKEN=${live.key}`, 7],
      [`"${live.key}"`, 2],
      [`x${live.key}`, 2],
      [`9${live.key}`, 2],
      [`key123_${live.key}`, 8],
      [`_${live.key}`, 2],
      [`prod_${live.key}`, 6],
      [`${'a'.repeat(100)}${live.key}`, 101],
    ];
    for (const [text, column] of cases) expect(ids(text), text.slice(0, 12)).toEqual([['sk_live', id(live), 1, column]]);
  });

  it('reports lines and columns, several keys per line, and nothing for look-alikes', () => {
    const badCheck = plain.key.slice(0, -1) + (plain.key.endsWith('0') ? '1' : '0');
    const text = `a = 1\n  ${plain.key} ${live.key}\n${badCheck}\n${plain.key}x\nsk_live_${'x'.repeat(44)}\n`;
    expect(ids(text)).toEqual([
      ['till', id(plain), 2, 3],
      ['sk_live', id(live), 2, 4 + plain.key.length],
    ]);
  });

  it('stays linear on adversarial lines of 1 MB', () => {
    const MB = 1 << 20;
    const lines = [
      'a'.repeat(MB),
      'a_'.repeat(MB / 2),
      `${'_'}${'A'.repeat(43)}`.repeat(MB / 44),
      `a_${'A'.repeat(44)}_`.repeat(MB / 47),
      `${'9_'.repeat(MB / 4)}${'a'.repeat(MB / 2)}`,
      `${'a'.repeat(MB - 50)}_${'Z'.repeat(44)}`,
    ];
    const started = Date.now();
    for (const line of lines) expect(findKeys(line)).toEqual([]);
    // Linear work is well under a second here; backtracking would take minutes. The bound is for a
    // loaded machine, far above the first and far below the second.
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
