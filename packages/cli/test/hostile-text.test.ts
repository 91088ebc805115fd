// What `till` prints of text from outside (names, owners, metadata, file names): escaped, never obeyed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKey, type KeyInfo } from '@till/core';
import { clean, details, json, keyRows, toJson } from '../src/output.js';
import { assertBuilt, runTill } from './harness.js';

const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

const info = (fields: Partial<KeyInfo>): KeyInfo =>
  ({
    id: generateKey('till').id,
    prefix: 'till',
    name: 'admin',
    ownerId: null,
    scopes: [],
    metadata: {},
    createdAt: 0,
    updatedAt: 0,
    notBefore: null,
    expiresAt: null,
    revokedAt: null,
    revokedReason: null,
    disabled: false,
    rotatedFrom: null,
    rotatedTo: null,
    version: 1,
    limits: [],
    credits: null,
    ...fields,
  }) as KeyInfo;

describe('till output of hostile text', () => {
  it('a name that shows as "admin" but is not prints with its hidden characters escaped', () => {
    const spoof = info({
      name: 'ad\u202e\u2066nimda\u2069\u200e',
      ownerId: 'team\u0085\u061c',
      metadata: { 'k\u200b': 'v\u2028', n: 1 },
      revokedAt: 1,
      revokedReason: 'x\u009b2J',
    });
    const rows = keyRows([spoof], 0);
    expect(rows[0]![1]).toBe('ad\\u202e\\u2066nimda\\u2069\\u200e');
    expect(rows[0]![2]).toBe('team\\u0085\\u061c');
    const text = details(spoof, 0);
    expect(RAW.test(text), JSON.stringify(text)).toBe(false);
    expect(clean('\u001b[31m')).toBe('\\u001b[31m');
  });

  it('--json writes C1, bidi and zero-width characters as \\u escapes', () => {
    const spoof = info({ name: 'ad\u202emin\u0085', ownerId: '\u200bops' });
    const text = json({ record: toJson(spoof, 0) });
    expect(RAW.test(text), text).toBe(false);
    expect(text).toContain('"name": "ad\\u202emin\\u0085"');
    expect(JSON.parse(text).record.name).toBe('ad\u202emin\u0085');
  });
});

describe('till scan: file names', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('a file named with an ANSI escape, a newline and a bidi override is printed escaped', async () => {
    assertBuilt();
    dir = mkdtempSync(join(tmpdir(), 'till-scan-names-'));
    const name = 'a\u001b[2J\nFAKE  1:1  none\u202e\u0085.txt';
    writeFileSync(join(dir, name), `key = ${generateKey('till').key}\n`);
    const human = await runTill(['scan', dir, '--offline']);
    expect(human.code).toBe(1);
    expect(RAW.test(human.stdout), JSON.stringify(human.stdout)).toBe(false);
    expect(human.stdout).toContain('a\\u001b[2J\\u000aFAKE  1:1  none\\u202e\\u0085.txt');
    const asJson = await runTill(['scan', dir, '--offline', '--json']);
    expect(RAW.test(asJson.stdout.replace(/\n/g, '')), asJson.stdout).toBe(false);
    expect(JSON.parse(asJson.stdout).findings[0].file).toContain(name);
  });
});
