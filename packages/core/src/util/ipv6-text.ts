// The text of an IPv6 address, shared by the client counting (limits/client-ip.ts) and the allowlists
// (verify/allowlist.ts), so that both write one address the same way.

/** RFC 5952 text of eight 16-bit groups: lowercase, no leading zeros, the longest run of two or more zero groups as `::`. */
export function ipv6Text(groups: readonly number[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best === -1) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
}
