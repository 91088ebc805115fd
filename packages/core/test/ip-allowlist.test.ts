// IP allowlists: the CIDR parser (with a fuzz test against Node's own address checks), the matcher
// (against node:net BlockList as an oracle), and the verifier's check of it.
import { BlockList, isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TillError } from '../src/errors.js';
import { decodeRecord, encodeRecord } from '../src/store/record.js';
import { createTill } from '../src/till.js';
import { compileAllowlist, IpPolicy, ipAllowed, normalizeAllowlist, POLICY_MEMO_MAX, parseCidr } from '../src/verify/allowlist.js';
import type { VerifyResult } from '../src/verify/outcome.js';
import { sampleRecord } from './store-conformance.js';

const allows = (ranges: string[], address: string | undefined) => ipAllowed([compileAllowlist(normalizeAllowlist(ranges, 'test'))], address);

const refusedWith = (value: unknown): TillError => {
  try {
    parseCidr(value);
  } catch (error) {
    expect(error).toBeInstanceOf(TillError);
    return error as TillError;
  }
  throw new Error(`parsed ${String(value)}`);
};

describe('parseCidr', () => {
  it('reads IPv4, IPv6 and IPv4-mapped IPv6 ranges into canonical text', () => {
    expect(parseCidr('203.0.113.0/24').text).toBe('203.0.113.0/24');
    expect(parseCidr('203.0.113.7').text).toBe('203.0.113.7/32');
    expect(parseCidr('0.0.0.0/0').text).toBe('0.0.0.0/0');
    expect(parseCidr('2001:DB8::/32').text).toBe('2001:db8::/32');
    expect(parseCidr('2001:0db8:0000:0000:0000:0000:0000:0001').text).toBe('2001:db8::1/128');
    expect(parseCidr('::/0').text).toBe('::/0');
    expect(parseCidr('::1').text).toBe('::1/128');
    expect(parseCidr('fe80::/10').text).toBe('fe80::/10');
    // An IPv4-mapped range is the IPv4 range it maps.
    expect(parseCidr('::ffff:192.0.2.0/120')).toMatchObject({ family: 4, text: '192.0.2.0/24', bits: 24 });
    expect(parseCidr('::ffff:c000:201').text).toBe('192.0.2.1/32');
    expect(parseCidr(' 10.0.0.0/8 ').text).toBe('10.0.0.0/8');
  });

  it('refuses what is not a range with INVALID_ARGUMENT, saying why', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['203.0.113.5/24', /host bits are set; the network of \/24 is 203\.0\.113\.0\/24/],
      ['2001:db8::1/32', /host bits are set; the network of \/32 is 2001:db8::\/32/],
      ['10.0.0.0/33', /at most 32/],
      ['::/129', /at most 128/],
      ['10.0.0.0/08', /leading zeros/],
      ['10.0.0.0/', /prefix length/],
      ['010.0.0.1', /not an IPv4 or IPv6/],
      ['256.0.0.1', /not an IPv4 or IPv6/],
      ['1.2.3', /not an IPv4 or IPv6/],
      ['1:2:3:4:5:6:7:8:9', /not an IPv4 or IPv6/],
      ['1::2::3', /not an IPv4 or IPv6/],
      ['12345::', /not an IPv4 or IPv6/],
      ['fe80::1%eth0', /zone/],
      ['example.com', /not an IPv4 or IPv6/],
      ['', /at most 64 characters/],
      ['1'.repeat(65), /at most 64 characters/],
      [42, /must be a string/],
      [null, /must be a string/],
    ];
    for (const [value, why] of cases) {
      const error = refusedWith(value);
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toMatch(why);
    }
  });

  it('fuzz: any input parses to a range Node agrees is an address, or is refused with INVALID_ARGUMENT; never anything else', () => {
    const near = fc.oneof(
      fc.string({ maxLength: 70 }),
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:./%'), maxLength: 50 }),
      fc
        .tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), fc.option(fc.integer({ min: -2, max: 140 })))
        .map(([ip, bits]) => (bits === null ? ip : `${ip}/${bits}`)),
      fc.anything(),
    );
    fc.assert(
      fc.property(near, (value) => {
        let cidr: ReturnType<typeof parseCidr>;
        try {
          cidr = parseCidr(value);
        } catch (error) {
          expect(error).toBeInstanceOf(TillError);
          expect((error as TillError).code).toBe('INVALID_ARGUMENT');
          expect((error as TillError).message.length).toBeLessThan(300);
          return;
        }
        const address = (value as string).trim().split('/')[0]!;
        expect(isIP(address)).not.toBe(0);
        // Canonical text parses to itself.
        expect(parseCidr(cidr.text)).toEqual(cidr);
      }),
      { numRuns: 5000 },
    );
  });

  it('fuzz: every address Node accepts is a one-host range', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const cidr = parseCidr(ip);
        expect(cidr.bits === 32 || cidr.bits === 128).toBe(true);
        expect(allows([ip], ip)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

/** A valid IPv4 network of `bits` bits from a random word. */
const v4Network = fc.tuple(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 })).map(([word, bits]) => {
  const mask = bits === 0 ? 0 : (-1 << (32 - bits)) >>> 0;
  const w = (word & mask) >>> 0;
  return { text: `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`, bits };
});
const v4Address = fc.nat(0xffffffff).map((w) => `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`);
const hexGroups = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });
const v6Address = hexGroups.map((g) => g.map((x) => x.toString(16)).join(':'));
const v6Network = fc.tuple(hexGroups, fc.integer({ min: 0, max: 128 })).map(([g, bits]) => {
  const masked = g.map((x, i) => {
    const keep = Math.min(16, Math.max(0, bits - i * 16));
    return keep === 0 ? 0 : x & ((0xffff << (16 - keep)) & 0xffff);
  });
  return { text: masked.map((x) => x.toString(16)).join(':'), bits };
});

describe('ipAllowed', () => {
  it('lets in the addresses of a range and no others, IPv4 and IPv6 alike (oracle: node:net BlockList)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            v4Network.map((n) => ({ ...n, family: 'ipv4' as const })),
            v6Network.map((n) => ({ ...n, family: 'ipv6' as const })),
          ),
          {
            minLength: 1,
            maxLength: 10,
          },
        ),
        fc.array(fc.oneof(v4Address, v6Address), { minLength: 1, maxLength: 10 }),
        (networks, addresses) => {
          const oracle = new BlockList();
          for (const n of networks) oracle.addSubnet(n.text, n.bits, n.family);
          const list = networks.map((n) => `${n.text}/${n.bits}`);
          // Some addresses from inside the ranges too, not only random ones.
          for (const address of [...addresses, ...networks.map((n) => n.text)]) {
            const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
            // BlockList does not see an IPv4 address in an IPv6 range (::/0, ::ffff:0:0/96): left to the cases below.
            if (family === 'ipv4' && networks.some((n) => n.family === 'ipv6' && n.bits <= 96)) continue;
            expect(allows(list, address)).toBe(oracle.check(address, family));
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('sees an IPv4 client of a dual-stack server (::ffff:a.b.c.d) as its IPv4 address, and the other way round', () => {
    expect(allows(['203.0.113.0/24'], '::ffff:203.0.113.9')).toBe(true);
    expect(allows(['203.0.113.0/24'], '::FFFF:cb00:7109')).toBe(true);
    expect(allows(['203.0.113.0/24'], '::ffff:203.0.114.9')).toBe(false);
    expect(allows(['::ffff:203.0.113.0/120'], '203.0.113.200')).toBe(true);
    expect(allows(['::ffff:0:0/96'], '198.51.100.1')).toBe(true);
    expect(allows(['::/0'], '198.51.100.1')).toBe(true);
    expect(allows(['2001:db8::/32'], '198.51.100.1')).toBe(false);
    expect(allows(['0.0.0.0/0'], '2001:db8::1')).toBe(false);
  });

  it('refuses no address, and anything that is not an IP; a zone on a client address is dropped', () => {
    for (const address of [undefined, '', 'unknown', '203.0.113.9, 10.0.0.1', '203.0.113.9:443', ' 203.0.113.9', '1'.repeat(100)]) {
      expect(allows(['0.0.0.0/0', '::/0'], address)).toBe(false);
    }
    expect(allows(['fe80::/10'], 'fe80::1%eth0')).toBe(true);
    expect(ipAllowed([], undefined)).toBe(true);
  });

  it('needs an address to pass every list given (a key and its owner)', () => {
    const office = compileAllowlist(['203.0.113.0/24']);
    const region = compileAllowlist(['203.0.0.0/16', '2001:db8::/32']);
    expect(ipAllowed([office, region], '203.0.113.1')).toBe(true);
    expect(ipAllowed([office, region], '203.0.112.1')).toBe(false);
    expect(ipAllowed([office, region], '2001:db8::1')).toBe(false);
  });
});

describe("IpPolicy (a cache entry's allowlists with its verdicts on recent addresses)", () => {
  it('answers as ipAllowed does for every address, however many it has seen, and keeps no junk', () => {
    const policy = new IpPolicy([compileAllowlist(['203.0.113.0/24'])]);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3 * POLICY_MEMO_MAX; i++) {
        const inside = `203.0.113.${i % 256}`;
        const outside = `198.51.${i % 256}.1`;
        expect(policy.allows(inside)).toBe(true);
        expect(policy.allows(outside)).toBe(false);
      }
    }
    expect(policy.allows(undefined)).toBe(false);
    expect(policy.allows('203.0.113.1'.padEnd(100, ' '))).toBe(false);
    expect((policy as unknown as { seen: Map<string, boolean> }).seen.size).toBeLessThanOrEqual(POLICY_MEMO_MAX);
  });
});

describe('normalizeAllowlist and stored records', () => {
  it('keeps canonical ranges once each, in order, and bounds the list', () => {
    expect(normalizeAllowlist(['2001:DB8::/32', '10.0.0.1', '2001:db8:0::/32', '10.0.0.1/32'], 'keys')).toEqual(['2001:db8::/32', '10.0.0.1/32']);
    expect(normalizeAllowlist([], 'keys')).toEqual([]);
    expect(() => normalizeAllowlist('10.0.0.0/8', 'keys')).toThrow(/must be an array/);
    expect(() => normalizeAllowlist(new Array(257).fill('10.0.0.1'), 'keys')).toThrow(/at most 256/);
    expect(() => normalizeAllowlist(['10.0.0.0/8', 'x'], 'cli')).toThrow(/^\[till\] \[cli\] invalid IP range "x"/);
  });

  it('a stored record keeps its allowlist, and one with a range not written by Till is refused', () => {
    const record = sampleRecord({ allowedIps: ['203.0.113.0/24'] });
    expect(decodeRecord(encodeRecord(record)).allowedIps).toEqual(['203.0.113.0/24']);
    expect(decodeRecord(encodeRecord(sampleRecord())).allowedIps).toEqual([]);
    expect(encodeRecord(sampleRecord())).not.toContain('allowedIps');
    for (const bad of [['203.0.113.5/24'], 'x', [1], ['10.0.0.1']]) {
      expect(() => decodeRecord(JSON.stringify({ ...JSON.parse(encodeRecord(record)), allowedIps: bad }))).toThrow(/allowedIps/);
    }
  });
});

const sync = (r: VerifyResult | Promise<VerifyResult>) => {
  expect(r).not.toBeInstanceOf(Promise);
  return r as VerifyResult;
};

describe('the verifier and a key with an allowlist', () => {
  it('admits an allowed address, refuses others with IP_NOT_ALLOWED from the cache, and a key without a list reads no address', async () => {
    const till = createTill({ auditEvents: false });
    const { key, record } = await till.keys.create({ name: 'office', scopes: ['a'], allowedIps: ['203.0.113.0/24', '2001:db8::/32'] });
    expect(record.allowedIps).toEqual(['203.0.113.0/24', '2001:db8::/32']);
    expect((await till.verify(key, { ip: '203.0.113.5' })).valid).toBe(true);
    expect(sync(till.verify(key, { ip: '2001:db8:1::9' })).valid).toBe(true);
    expect(sync(till.verify(key, { ip: '198.51.100.1' }))).toEqual({ valid: false, code: 'IP_NOT_ALLOWED', keyId: record.id });
    expect(sync(till.verify(key))).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    // Through the adapter's reader: called for this key, once per verification.
    let reads = 0;
    const ipOf = (req: { ip: string }) => {
      reads++;
      return req.ip;
    };
    expect(sync(till.verifier.verify(key, undefined, ipOf, { ip: '::ffff:203.0.113.77' })).valid).toBe(true);
    expect(sync(till.verifier.verify(key, undefined, ipOf, { ip: '203.0.114.1' })).code).toBe('IP_NOT_ALLOWED');
    expect(reads).toBe(2);
    // A key without an allowlist: its address is never read.
    const open = await till.keys.create({ name: 'open', scopes: ['a'] });
    await till.verify(open.key);
    expect(sync(till.verifier.verify(open.key, undefined, ipOf, { ip: '198.51.100.1' })).valid).toBe(true);
    expect(reads).toBe(2);
    await till.close();
  });

  it('refuses before anything is charged: a refused address spends no credits and no limit', async () => {
    const till = createTill({ auditEvents: false });
    const { key, record } = await till.keys.create({
      name: 'metered',
      scopes: ['a'],
      allowedIps: ['203.0.113.0/24'],
      credits: { remaining: 2 },
      limits: [{ name: 'per-minute', limit: 2, window: '1m' }],
    });
    for (let i = 0; i < 5; i++) expect((await till.verify(key, { ip: '198.51.100.1' })).code).toBe('IP_NOT_ALLOWED');
    expect(await till.keys.credits(record.id)).toBe(2);
    const first = await till.verify(key, { ip: '203.0.113.1' });
    expect(first).toMatchObject({ valid: true, usage: { credits: 1, limits: [{ name: 'per-minute', remaining: 1 }] } });
    await till.close();
  });

  it('checks the status first (a revoked key says REVOKED from anywhere) and the address before scopes', async () => {
    const till = createTill({ auditEvents: false });
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'], allowedIps: ['203.0.113.0/24'] });
    expect((await till.verify(key, { ip: '198.51.100.1', scopes: ['b'] })).code).toBe('IP_NOT_ALLOWED');
    expect((await till.verify(key, { ip: '203.0.113.1', scopes: ['b'] })).code).toBe('INSUFFICIENT_SCOPE');
    await till.keys.revoke(record.id);
    expect((await till.verify(key, { ip: '198.51.100.1' })).code).toBe('REVOKED');
    await till.close();
  });

  it('follows an update of the allowlist at once, rotation copies it, and bad input is INVALID_ARGUMENT', async () => {
    const till = createTill({ auditEvents: false });
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'], allowedIps: ['203.0.113.0/24'] });
    expect((await till.verify(key, { ip: '198.51.100.1' })).code).toBe('IP_NOT_ALLOWED');
    const updated = await till.keys.update(record.id, { allowedIps: ['198.51.100.0/24'] });
    expect(updated.allowedIps).toEqual(['198.51.100.0/24']);
    expect((await till.verify(key, { ip: '198.51.100.1' })).valid).toBe(true);
    expect((await till.verify(key, { ip: '203.0.113.1' })).code).toBe('IP_NOT_ALLOWED');
    await till.keys.update(record.id, { allowedIps: null });
    expect((await till.verify(key)).valid).toBe(true);
    await till.keys.update(record.id, { allowedIps: ['10.0.0.0/8'] });
    const rotated = await till.keys.rotate(record.id);
    expect(rotated.record.allowedIps).toEqual(['10.0.0.0/8']);
    await expect(till.keys.update(record.id, { allowedIps: ['10.0.0.1/8'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.create({ name: 'x', scopes: ['a'], allowedIps: ['nope'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(till.keys.create({ name: 'x', scopes: ['a'], allowedIps: '10.0.0.0/8' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await till.close();
  });

  it('records a refused address in the audit trail as a misuse of the key, under its owner, and counts it in usage', async () => {
    const till = createTill();
    const { key, record } = await till.keys.create({ name: 'k', scopes: ['a'], ownerId: 'team-7', allowedIps: ['203.0.113.0/24'] });
    const seen: string[] = [];
    till.events.onVerification((event) => seen.push(`${event.code} ${event.ip ?? '-'}`));
    const { createAuthenticator } = await import('../src/http/authenticator.js');
    const auth = createAuthenticator<{ ip: string }>({ till }, 'test');
    const request = { headers: { authorization: `Bearer ${key}`, 'user-agent': 'ua' }, rawHeaders: ['Authorization', `Bearer ${key}`] } as never;
    const result = await auth.authenticate(request, { ip: '198.51.100.7' }, (c: { ip: string }) => c.ip);
    expect(result).toMatchObject({ code: 'IP_NOT_ALLOWED', keyId: record.id });
    expect(auth.problem(result as never).status).toBe(403);
    await till.auditWriter!.flush();
    await till.usage!.flush();
    const { entries } = await till.keys.audit({ keyId: record.id });
    expect(entries.at(-1)).toMatchObject({ type: 'key.misused', code: 'IP_NOT_ALLOWED', keyId: record.id, ownerId: 'team-7', ip: '198.51.100.7' });
    expect(seen).toContain('IP_NOT_ALLOWED 198.51.100.7');
    expect((await till.keys.usage(record.id, { days: 1 })).days[0]?.counts).toMatchObject({ IP_NOT_ALLOWED: 1 });
    await till.close();
  });
});
