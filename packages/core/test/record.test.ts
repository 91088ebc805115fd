import { describe, expect, it } from 'vitest';
import { compactInfo, decodeRecord, encodeRecord, expandInfo, toKeyInfo, type KeyRecord } from '../src/store/record.js';
import { sampleRecord } from './store-conformance.js';

describe('record encoding', () => {
  const plain = sampleRecord({ metadata: {} });
  const full: KeyRecord = sampleRecord({
    hashAlgorithm: 'hmac-sha256',
    ownerId: 'team-1',
    scopes: ['a:read', '*'],
    metadata: { plan: 'pro', nested: { n: 1 } },
    updatedAt: plain.createdAt + 10,
    expiresAt: plain.createdAt + 1000,
    notBefore: plain.createdAt + 1,
    revokedAt: plain.createdAt + 20,
    revokedReason: 'leaked',
    disabled: true,
    rotatedFrom: 'aaaaaaaaaaaaaaaa',
    rotatedTo: 'bbbbbbbbbbbbbbbb',
    limits: [{ name: 'minute', limit: 60, window: 60_000 }],
    credits: { remaining: 5, setAt: plain.createdAt, generation: 2, refill: { amount: 10, interval: 1000 } },
    version: 7,
    allowedIps: ['203.0.113.0/24'],
    roles: ['reporting'],
    identityId: 'acme',
  });

  it('reads back every record it writes, whole', () => {
    expect(decodeRecord(encodeRecord(plain))).toEqual(plain);
    expect(decodeRecord(encodeRecord(full))).toEqual(full);
  });

  it('writes the version first and leaves out fields at their defaults', () => {
    const json = encodeRecord(plain);
    expect(json.startsWith(`{"version":${plain.version},`)).toBe(true);
    expect(Object.keys(JSON.parse(json)).sort()).toEqual(['createdAt', 'hash', 'id', 'name', 'prefix', 'scopes', 'version']);
    expect(json.length).toBeLessThan(JSON.stringify(plain).length * 0.6);
    // Nothing left out when nothing is at its default.
    expect(Object.keys(JSON.parse(encodeRecord(full))).sort()).toEqual(Object.keys(full).sort());
  });

  it('compacts and expands snapshots (no hash) the same way', () => {
    for (const r of [plain, full]) {
      const info = toKeyInfo(r);
      const compact = compactInfo(info);
      expect(compact).not.toHaveProperty('hash');
      expect(expandInfo(JSON.parse(JSON.stringify(compact)))).toEqual(info);
    }
  });

  it('still rejects what is not a record', () => {
    for (const bad of [
      { ...plain, updatedAt: 'x' },
      { ...plain, disabled: 'no' },
      { ...plain, hashAlgorithm: 'md5' },
      { ...plain, version: undefined },
    ]) {
      expect(() => decodeRecord(JSON.stringify(bad))).toThrow();
    }
  });
});
