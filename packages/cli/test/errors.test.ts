// The refusal of whole keys on the command line: found however they are glued to the argument.
import { describe, expect, it } from 'vitest';
import { generateKey } from '@till/core';
import { keyInArguments } from '../src/errors.js';

describe('keyInArguments', () => {
  const { key, id } = generateKey('till');
  const live = generateKey('sk_live');

  it('finds a whole key alone or glued to the text of an argument', () => {
    for (const arg of [key, `--name=${key}`, `--name=prod_${key}`, `leaked:${key}`, `9${key}`, `x_${key}`]) {
      expect(keyInArguments(['keys', 'update', 'AAAAAAAAAAAAAAAA', arg]), arg.slice(0, 14)).toBe(id);
    }
    expect(keyInArguments([`--reason=prod_${live.key}`])).toBe(live.id);
  });

  it('lets ids, cut keys and look-alikes through', () => {
    const badCheck = key.slice(0, -1) + (key.endsWith('0') ? '1' : '0');
    expect(keyInArguments(['keys', 'show', id, key.slice(0, 40), badCheck, `till_${'x'.repeat(44)}`])).toBeNull();
  });
});
