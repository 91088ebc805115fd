// Finding keys in text: the key shape, then the check, so that look-alikes are never reported.
import { BODY_LENGTH, ID_LENGTH, isValidPrefix, MAX_PREFIX_LENGTH, parseKey } from './format.js';

/** A key found in text: where, and its public parts. The secret is never part of a finding. */
export interface FoundKey {
  /** Offset of the key's first character in the text. */
  readonly index: number;
  /** 1-based line and column. */
  readonly line: number;
  readonly column: number;
  readonly prefix: string;
  readonly id: string;
}

// The body of a key: an underscore after a prefix's last character, then 44 base62 characters not
// followed by another. The body holds no underscore, so each candidate costs at most 45 steps and
// candidates never overlap: linear in the text, whatever it holds.
const BODY = /(?<=[a-z0-9])_[0-9A-Za-z]{44}(?![0-9A-Za-z])/g;

const isHeadChar = (c: number) => c === 95 /* _ */ || (c >= 97 && c <= 122) || (c >= 48 && c <= 57);

/**
 * Every key in `text` whose check is right (a look-alike passes one in about 57 billion). A key glued
 * to text before it (`export TOKEN=till_...`, `xtill_...`, `9sk_live_...`) is found by trying each
 * shorter prefix among the 32 characters before the body, longest first: the check covers the prefix,
 * so only the real one passes.
 */
export function findKeys(text: string): FoundKey[] {
  const found: FoundKey[] = [];
  let lineStarts: number[] | null = null;
  for (const match of text.matchAll(BODY)) {
    const underscore = match.index!;
    const body = text.slice(underscore + 1, underscore + 1 + BODY_LENGTH);
    let from = underscore;
    while (from > 0 && underscore - from < MAX_PREFIX_LENGTH && isHeadChar(text.charCodeAt(from - 1))) from--;
    for (let start = from; start < underscore; start++) {
      const prefix = text.slice(start, underscore);
      if (!isValidPrefix(prefix)) continue;
      if (!parseKey(`${prefix}_${body}`).ok) continue;
      lineStarts ??= starts(text);
      const line = lineOf(lineStarts, start);
      found.push({ index: start, line: line + 1, column: start - lineStarts[line]! + 1, prefix, id: body.slice(0, ID_LENGTH) });
      break;
    }
  }
  return found;
}

function starts(text: string): number[] {
  const out = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) out.push(i + 1);
  return out;
}

/** The 0-based line holding `index` (binary search over line starts). */
function lineOf(lineStarts: readonly number[], index: number): number {
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid]! <= index) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
