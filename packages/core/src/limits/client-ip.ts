// Which client a request's address stands for, for counting it (brute-force blocks, rate limits by IP).
import { createHash } from 'node:crypto';
import { ipv6Text } from '../util/ipv6-text.js';
import { isIP } from 'node:net';

/** The IPv6 prefix length that groups addresses of one client by default: a site is often given a /56. */
export const DEFAULT_IPV6_SUBNET = 56;

/**
 * The client an address stands for: an IPv4 address as it is; an IPv6 address by its first
 * `ipv6Subnet` bits (one host may take any address of its /64, and often of a /56, so counting each
 * address apart would let it rotate past every limit), written `2001:db8:0:100::/56`; an IPv4-mapped
 * IPv6 address (`::ffff:192.0.2.1`) as the IPv4 it maps; anything else (a proxy's odd header, no
 * address at all) as a short hash, so that no text a client sent becomes a key name as it is.
 * Short, without braces or spaces, safe in Redis key names and log lines.
 */
export function clientKey(address: string | undefined, ipv6Subnet: number = DEFAULT_IPV6_SUBNET): string {
  if (address === undefined || address.length === 0) return 'unknown';
  const kind = isIP(address);
  if (kind === 4) return address;
  const zone = address.indexOf('%');
  const bare = zone === -1 ? address : address.slice(0, zone);
  if ((kind === 6 || isIP(bare) === 6) && bare.length <= 45) {
    const groups = expand(bare);
    if (groups !== null) {
      if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
        return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
      }
      return ipv6Subnet >= 128 ? ipv6Text(groups) : `${ipv6Text(mask(groups, ipv6Subnet))}/${ipv6Subnet}`;
    }
  }
  return `h:${createHash('sha256').update(address.slice(0, 1024)).digest('base64url').slice(0, 22)}`;
}

/** Whether `value` is a usable IPv6 prefix length for grouping clients. */
export function isValidSubnet(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 128;
}

/** The eight 16-bit groups of a valid IPv6 address (an IPv4 tail counts as two). */
function expand(address: string): number[] | null {
  const lower = address.toLowerCase();
  const double = lower.indexOf('::');
  const parse = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (piece.includes('.')) {
        if (i !== pieces.length - 1) return null;
        const bytes = piece.split('.').map(Number);
        if (bytes.length !== 4 || bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) return null;
        out.push((bytes[0]! << 8) | bytes[1]!, (bytes[2]! << 8) | bytes[3]!);
      } else {
        if (!/^[0-9a-f]{1,4}$/.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  if (double === -1) {
    const all = parse(lower);
    return all !== null && all.length === 8 ? all : null;
  }
  const head = parse(lower.slice(0, double));
  const tail = parse(lower.slice(double + 2));
  if (head === null || tail === null || head.length + tail.length > 7) return null;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function mask(groups: readonly number[], bits: number): number[] {
  return groups.map((g, i) => {
    const keep = Math.min(16, Math.max(0, bits - i * 16));
    return keep === 16 ? g : keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
}
