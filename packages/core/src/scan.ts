// Finding keys in text: the key shape, then the check, so that look-alikes are never reported.
import { BODY_LENGTH, ID_LENGTH, isValidPrefix, parseKey } from './key-format.js';

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

// A prefix-like run, an underscore, 44 base62 characters, not inside a longer run of either.
const CANDIDATE = /(?<![a-z0-9])[a-z][a-z0-9_]{0,64}_[0-9A-Za-z]{44}(?![0-9A-Za-z])/g;

/**
 * Every key in `text` whose check is right (a look-alike passes one in about 57 billion). A key glued
 * to text before it (`export TOKEN=till_...`, `xtill_...`) is found by trying each shorter prefix.
 */
export function findKeys(text: string): FoundKey[] {
  const found: FoundKey[] = [];
  let lineStarts: number[] | null = null;
  for (const match of text.matchAll(CANDIDATE)) {
    const candidate = match[0];
    const body = candidate.slice(-BODY_LENGTH);
    const head = candidate.slice(0, -BODY_LENGTH - 1);
    // The longest prefix first: a real prefix may itself hold underscores.
    for (let i = 0; i < head.length; i++) {
      const prefix = head.slice(i);
      if (!isValidPrefix(prefix)) continue;
      if (!parseKey(`${prefix}_${body}`).ok) continue;
      lineStarts ??= starts(text);
      const index = match.index! + i;
      const line = lineOf(lineStarts, index);
      found.push({ index, line: line + 1, column: index - lineStarts[line]! + 1, prefix, id: body.slice(0, ID_LENGTH) });
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
