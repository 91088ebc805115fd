// What `till` prints: aligned tables and field lists for people, one JSON document for scripts.
import { escapeText, keyStatus, safeJson, type KeyInfo, type KeyStatus, type KeyUsage } from '@till/core';

/** A record as printed by `--json`: the API's KeyInfo (times in epoch milliseconds) plus its status now. */
export type KeyJson = KeyInfo & { status: KeyStatus };

export function statusOf(info: KeyInfo, now: number): KeyStatus {
  return keyStatus(info, now);
}

export function toJson(info: KeyInfo, now: number): KeyJson {
  // Fields in a reading order (stored records come back in another), every field kept.
  const {
    id,
    prefix,
    name,
    ownerId,
    scopes,
    metadata,
    createdAt,
    updatedAt,
    notBefore,
    expiresAt,
    revokedAt,
    revokedReason,
    disabled,
    rotatedFrom,
    rotatedTo,
    version,
    ...rest
  } = info;
  return {
    id,
    prefix,
    name,
    ownerId,
    scopes,
    metadata,
    status: statusOf(info, now),
    createdAt,
    updatedAt,
    notBefore,
    expiresAt,
    revokedAt,
    revokedReason,
    disabled,
    rotatedFrom,
    rotatedTo,
    version,
    ...rest,
  };
}

/** One JSON document; controls, C1, bidi and zero-width characters in it are written as \\u escapes. */
export function json(value: unknown): string {
  return `${safeJson(value, 2)}\n`;
}

/**
 * Stored text (names, metadata, file names) may hold anything: never let it drive the terminal or
 * read as other text (controls, C1, bidi and zero-width characters are printed as \\u escapes).
 */
export function clean(text: string): string {
  return escapeText(text);
}

/** ISO 8601 in UTC to the second, or `none` for a missing time. */
export function when(ms: number | null, none = '-'): string {
  return ms === null ? none : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function statusLabel(status: KeyStatus): string {
  return status.replace(/_/g, ' ');
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

export function keyRows(keys: readonly KeyInfo[], now: number, lastUsed: ReadonlyMap<string, number | null> = new Map()): string[][] {
  return keys.map((k) => [
    k.id,
    clean(k.name),
    k.ownerId === null ? '-' : clean(k.ownerId),
    k.scopes.length === 0 ? '-' : k.scopes.join(','),
    statusLabel(statusOf(k, now)),
    when(k.createdAt),
    when(k.expiresAt, 'never'),
    when(lastUsed.get(k.id) ?? null, 'never'),
  ]);
}

export const LIST_HEADERS = ['ID', 'NAME', 'OWNER', 'SCOPES', 'STATUS', 'CREATED', 'EXPIRES', 'LAST USED'];

/** A key's use as `show` prints it: the last use and the requests of the last days by outcome. */
export function usageRows(usage: KeyUsage): [string, string][] {
  const totals: Record<string, number> = {};
  for (const day of usage.days) for (const [code, n] of Object.entries(day.counts)) totals[code] = (totals[code] ?? 0) + n;
  const all = Object.values(totals).reduce((a, b) => a + b, 0);
  const parts = Object.entries(totals)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${n} ${code}`);
  return [
    ['last used', when(usage.lastUsedAt, 'never')],
    [`requests (${usage.days.length}d)`, all === 0 ? '0' : `${all}: ${parts.join(', ')}`],
  ];
}

/** Every field of a key except the hash, one per line. */
export function details(info: KeyInfo, now: number, live?: number | null, usage?: KeyUsage): string {
  const meta = Object.entries(info.metadata);
  const fields: [string, string][] = [
    ['id', info.id],
    ['name', clean(info.name)],
    ['status', statusLabel(statusOf(info, now))],
    ['prefix', info.prefix],
    ['owner', info.ownerId === null ? '-' : clean(info.ownerId)],
    ['scopes', info.scopes.length === 0 ? '-' : info.scopes.join(', ')],
    ['metadata', meta.length === 0 ? '-' : meta.map(([k, v]) => `${clean(k)}=${clean(typeof v === 'string' ? v : JSON.stringify(v))}`).join(', ')],
    ['created', when(info.createdAt)],
    ['updated', when(info.updatedAt)],
    ['not before', when(info.notBefore)],
    ['expires', when(info.expiresAt, 'never')],
    ['rate limits', info.limits.length === 0 ? '-' : info.limits.map((l) => `${l.name} ${l.limit}/${span(l.window)}`).join(', ')],
    ['credits', creditsText(info, live)],
    ['allowed IPs', info.allowedIps === undefined || info.allowedIps.length === 0 ? 'any' : info.allowedIps.join(', ')],
    ['roles', info.roles === undefined || info.roles.length === 0 ? '-' : info.roles.join(', ')],
    ['revoked', info.revokedAt === null ? '-' : `${when(info.revokedAt)}${info.revokedReason ? ` (${clean(info.revokedReason)})` : ''}`],
    ['disabled', info.disabled ? 'yes' : 'no'],
    ['rotated from', info.rotatedFrom ?? '-'],
    ['rotated to', info.rotatedTo ?? '-'],
    ...(info.identityId ? [['identity', clean(info.identityId)] as [string, string]] : []),
    ['version', String(info.version)],
    ...(usage === undefined ? [] : usageRows(usage)),
  ];
  const width = Math.max(...fields.map(([label]) => label.length));
  return `${fields.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}

/** The one time a full key is printed, with the warning that goes with it. */
export function secretBlock(key: string): string {
  return [
    '',
    `    ${key}`,
    '',
    'This is the only time this key is shown. Store it now (in a secret manager):',
    'Till keeps only a hash of it and cannot show it again. If it is lost, rotate or revoke it.',
    '',
    '',
  ].join('\n');
}

/** Milliseconds as the largest unit that divides them: 86400000 -> 1d, 90000 -> 90s. */
export function span(ms: number): string {
  for (const [unit, size] of [
    ['w', 604_800_000],
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Credits as set, with the live count when it was read. */
function creditsText(info: KeyInfo, live: number | null | undefined): string {
  if (info.credits === null) return 'unlimited';
  const refill = info.credits.refill === null ? '' : `, topped up to ${info.credits.refill.amount} every ${span(info.credits.refill.interval)}`;
  const left = live === undefined || live === null ? `${info.credits.remaining} when set` : `${live} left`;
  return `${left}${refill}`;
}
