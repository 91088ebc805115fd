// The built `till` binary, run as a process against a real Redis: output, exit codes, and what it leaves in the store.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTill, silentLogger, type KeyInfo, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { deleteNamespace, newClient, redisUrl, uniqueNamespace } from '@till/testkit/redis';
import { freePort } from '@till/testkit/redis-server';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { wrongSecretKey } from '@till/testkit/key-forgery';
import { assertBuilt, hasGit, hasScript, keysIn, occurrences, runTill, runTillInTerminal, snapshot, startTill, type Run } from './harness.js';

const PEPPER = 'cli-test-pepper-0123456789abcdef';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const COMMANDS = ['create', 'list', 'show', 'update', 'revoke', 'rotate', 'disable', 'enable', 'delete'];

const namespace = uniqueNamespace();
let client: Redis;
let store: RedisStore;
/** A Till on the same namespace and pepper as the CLI, with no cache: every check reads Redis. */
let till: Till;
const tills: Till[] = [];

function tillAt(offsetMs: number): Till {
  const made = createTill({ store, pepper: PEPPER, logger: silentLogger, cache: { ttl: 0, negativeTtl: 0 }, clock: () => Date.now() + offsetMs });
  tills.push(made);
  return made;
}

const env = () => ({ REDIS_URL: redisUrl(), TILL_PEPPER: PEPPER });
const till$ = (...args: string[]) => runTill(['--namespace', namespace, ...args], env());
const parse = <T = Record<string, unknown>>(run: Run): T => JSON.parse(run.stdout) as T;

/** The key-handling guide every audit finding and scan result points to. */
const GUIDE = 'https://github.com/till-keys/till/blob/main/docs/key-hygiene.md';
const repoFile = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');

/** The anchors of the guide's headings, as GitHub makes them (lower case, spaces to hyphens, no punctuation). */
function guideAnchors(): string[] {
  return [...repoFile('docs/key-hygiene.md').matchAll(/^#{2,4} (.+)$/gm)].map(([, heading]) =>
    heading!
      .trim()
      .toLowerCase()
      .replace(/[^\w\- ]/g, '')
      .replace(/ /g, '-'),
  );
}

/**
 * `run` on every item, at most `limit` processes at a time: dozens of Node processes started at once
 * on a 2-core machine take longer than any test budget. Results in the order of `items`.
 */
async function eachLimited<T, R>(items: readonly T[], limit: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await run(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** `at` lies `offset` after some moment between `before` and now: no bound on how long the run took. */
function expectOffsetFrom(at: number, offset: number, before: number): void {
  expect(at).toBeGreaterThanOrEqual(before + offset);
  expect(at).toBeLessThanOrEqual(Date.now() + offset);
}

async function outcome(key: string, at = till): Promise<string> {
  return (await at.verify(key)).code;
}

/** A key made through the API (faster than a process), for the commands that act on existing keys. */
async function apiKey(name: string, extra: Partial<Parameters<Till['keys']['create']>[0]> = {}) {
  return till.keys.create({ name, scopes: ['reports:read'], ownerId: 'team-api', ...extra });
}

/** The store holds no full key and no secret part of one. */
async function expectStoreFreeOf(keys: readonly string[]): Promise<void> {
  const dump = JSON.stringify(await snapshot(client, namespace));
  for (const key of keys) {
    const body = key.slice(key.length - 44);
    expect(occurrences(dump, key), 'full key in the store').toBe(0);
    expect(occurrences(dump, body.slice(16, 38)), 'secret in the store').toBe(0);
  }
}

beforeAll(() => {
  assertBuilt();
  client = newClient();
  store = new RedisStore({ client, namespace });
  till = tillAt(0);
});

afterAll(async () => {
  for (const t of tills) await t.close();
  await store?.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

describe('till --help', () => {
  it('works on the program, the group and every command, with the exit codes', async () => {
    const runs = await eachLimited(
      [['--help'], ['keys', '--help'], ...COMMANDS.map((c) => ['keys', c, '--help']), ['keys', 'help', 'rotate'], ['--version']],
      4,
      (args) => runTill(args),
    );
    const [root, group, ...rest] = runs;
    const version = rest.pop()!;
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    expect(root!.stdout).toContain('Usage: till');
    expect(root!.stdout).toMatch(/Exit codes:[\s\S]*0 +done[\s\S]*1 +refused or failed[\s\S]*2 +usage error[\s\S]*3 +Redis unreachable/);
    expect(root!.stdout).toMatch(/REDIS_URL[\s\S]*TILL_PEPPER[\s\S]*TILL_PREFIX/);
    for (const c of COMMANDS) expect(group!.stdout).toContain(c);
    COMMANDS.forEach((c, i) => {
      expect(rest[i]!.stdout).toContain(`Usage: till keys ${c}`);
      expect(rest[i]!.stdout).toContain('Exit codes:');
    });
    expect(rest[COMMANDS.length]!.stdout).toContain('--grace <duration>');
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 60_000);
});

describe('till keys create', () => {
  it('prints the key once with the warning and the record; only a hash is stored', async () => {
    const before = Date.now();
    const run = await till$(
      'keys',
      'create',
      '--name',
      'billing service',
      '--scope',
      'invoices:read',
      '--scope',
      'invoices:write,reports:*',
      '--owner',
      'team-7',
      '--expires',
      '30d',
      '--meta',
      'env=prod',
      '--meta',
      'tier=2',
    );
    expect(run.code, run.stderr).toBe(0);
    const [key, ...others] = keysIn(run.stdout + run.stderr);
    expect(others).toHaveLength(0);
    expect(key).toMatch(/^till_[0-9A-Za-z]{44}$/);
    expect(occurrences(run.stdout, key!)).toBe(1);
    expect(occurrences(run.stderr, key!)).toBe(0);
    expect(run.stdout).toMatch(/only time this key is shown/i);
    expect(run.stdout).toMatch(/cannot show it again/);

    const id = key!.slice(5, 21);
    expect(run.stdout).toMatch(new RegExp(`^id +${id}$`, 'm'));
    expect(run.stdout).toMatch(/^name +billing service$/m);
    expect(run.stdout).toMatch(/^owner +team-7$/m);
    expect(run.stdout).toMatch(/^scopes +invoices:read, invoices:write, reports:\*$/m);
    expect(run.stdout).toMatch(/^status +active$/m);
    expect(run.stdout).toMatch(/^metadata +env=prod, tier=2$/m);
    expect(run.stdout).toMatch(/^expires +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);

    const record = (await till.keys.get(id))!;
    expect(record).toMatchObject({
      name: 'billing service',
      ownerId: 'team-7',
      scopes: ['invoices:read', 'invoices:write', 'reports:*'],
      metadata: { env: 'prod', tier: '2' },
    });
    expectOffsetFrom(record.expiresAt!, 30 * DAY, before);
    expect(await outcome(key!)).toBe('VALID');
    expect((await till.verify(key!, { scopes: ['invoices:write'] })).code).toBe('VALID');
    await expectStoreFreeOf([key!]);
  });

  it('--json prints one document { key, record }, with --prefix, dates and not-before', async () => {
    const expires = new Date(Date.now() + 10 * DAY).toISOString();
    const before = Date.now();
    const [withJson, prefixed, fromEnv] = await Promise.all([
      till$('keys', 'create', '--name', 'ci', '--scope', 'deploy:*', '--expires', expires, '--not-before', '1h', '--json'),
      till$('keys', 'create', '--name', 'live', '--scope', 'a', '--prefix', 'sk_live', '--json'),
      runTill(['--namespace', namespace, 'keys', 'create', '--name', 'env prefix', '--scope', 'a', '--json'], { ...env(), TILL_PREFIX: 'till_test' }),
    ]);
    for (const run of [withJson, prefixed, fromEnv]) expect(run.code, run.stderr).toBe(0);
    const created = parse<{ key: string; record: KeyInfo & { status: string } }>(withJson);
    expect(Object.keys(created).sort()).toEqual(['key', 'record']);
    expect(occurrences(withJson.stdout, created.key)).toBe(1);
    expect(created.record).toMatchObject({ name: 'ci', scopes: ['deploy:*'], ownerId: null, expiresAt: Date.parse(expires), status: 'not_yet_valid' });
    expect(created.record).not.toHaveProperty('hash');
    expectOffsetFrom(created.record.notBefore!, HOUR, before);
    expect(await outcome(created.key)).toBe('NOT_YET_VALID');
    expect(await outcome(created.key, tillAt(HOUR + 60_000))).toBe('VALID');

    const live = parse<{ key: string; record: KeyInfo }>(prefixed);
    expect(live.key.startsWith('sk_live_')).toBe(true);
    expect(live.record.prefix).toBe('sk_live');
    expect(await outcome(live.key)).toBe('VALID');
    expect(parse<{ key: string }>(fromEnv).key.startsWith('till_test_')).toBe(true);
    await expectStoreFreeOf([created.key, live.key, parse<{ key: string }>(fromEnv).key]);
  });
});

describe('till keys list and show', () => {
  const owner = 'team-list';
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    // One key in each status; "expired" is made by a Till whose clock runs two days behind. Each is
    // made on a clock of its own hour: keys made in the same millisecond list by id, not in the order made.
    const made = (hoursAgo: number, name: string, extra: Partial<Parameters<Till['keys']['create']>[0]> = {}) =>
      tillAt(-hoursAgo * HOUR).keys.create({ name, scopes: ['reports:read'], ownerId: owner, ...extra });
    ids.active = (await made(4, 'active one', { expiresIn: '30d' })).record.id;
    ids.revoked = (await made(3, 'revoked one')).record.id;
    await till.keys.revoke(ids.revoked, { reason: 'test' });
    ids.disabled = (await made(2, 'disabled one')).record.id;
    await till.keys.disable(ids.disabled);
    ids.expired = (await made(48, 'expired one', { scopes: ['a'], expiresIn: '1d' })).record.id;
    ids.later = (await made(1, 'later one', { notBefore: Date.now() + DAY })).record.id;
  });

  it('lists a table with status, pages by cursor, follows --all, filters by --owner', async () => {
    const [human, page1, all, other] = await Promise.all([
      till$('keys', 'list', '--owner', owner),
      till$('keys', 'list', '--owner', owner, '--limit', '2', '--json'),
      till$('keys', 'list', '--owner', owner, '--limit', '2', '--all', '--json'),
      till$('keys', 'list', '--owner', 'nobody'),
    ]);
    for (const run of [human, page1, all, other]) expect(run.code, run.stderr).toBe(0);
    const lines = human.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID +NAME +OWNER +SCOPES +STATUS +CREATED +EXPIRES +LAST USED$/);
    const statusOf = (id: string) => lines.find((l) => l.startsWith(id))?.split(/ {2,}/)[4];
    expect(statusOf(ids.active!)).toBe('active');
    expect(statusOf(ids.revoked!)).toBe('revoked');
    expect(statusOf(ids.disabled!)).toBe('disabled');
    expect(statusOf(ids.expired!)).toBe('expired');
    expect(statusOf(ids.later!)).toBe('not yet valid');
    expect(lines).toHaveLength(6);
    expect(other.stdout).toBe('No keys.\n');

    const first = parse<{ keys: KeyInfo[]; cursor: string | null }>(page1);
    // The expired key was made with a clock two days behind, so it comes first in creation order.
    expect(first.keys.map((k) => k.id)).toEqual([ids.expired, ids.active]);
    expect(first.cursor).toEqual(expect.any(String));
    const [page2, humanPage] = await Promise.all([
      till$('keys', 'list', '--owner', owner, '--limit', '2', '--cursor', first.cursor!, '--json'),
      till$('keys', 'list', '--owner', owner, '--limit', '2'),
    ]);
    expect(parse<{ keys: KeyInfo[] }>(page2).keys.map((k) => k.id)).toEqual([ids.revoked, ids.disabled]);
    expect(humanPage.stdout).toContain(`--cursor ${first.cursor}`);
    const everything = parse<{ keys: (KeyInfo & { status: string })[]; cursor: string | null }>(all);
    expect(everything.cursor).toBeNull();
    expect(everything.keys.map((k) => [k.id, k.status])).toEqual([
      [ids.expired, 'expired'],
      [ids.active, 'active'],
      [ids.revoked, 'revoked'],
      [ids.disabled, 'disabled'],
      [ids.later, 'not_yet_valid'],
    ]);
    expect(all.stdout).not.toContain('"hash');
  });

  it('shows every field but the hash, for people and as JSON', async () => {
    const [human, asJson] = await Promise.all([till$('keys', 'show', ids.revoked!), till$('keys', 'show', ids.revoked!, '--json')]);
    expect(human.code, human.stderr).toBe(0);
    expect(asJson.code, asJson.stderr).toBe(0);
    for (const field of [
      'id',
      'name',
      'status',
      'prefix',
      'owner',
      'scopes',
      'metadata',
      'created',
      'updated',
      'not before',
      'expires',
      'rate limits',
      'credits',
      'revoked',
      'disabled',
      'rotated from',
      'rotated to',
      'version',
    ]) {
      expect(human.stdout).toMatch(new RegExp(`^${field} `, 'm'));
    }
    expect(human.stdout).toMatch(/^revoked +\S+ \(test\)$/m);
    const { record } = parse<{ record: KeyInfo & { status: string } }>(asJson);
    expect(record).toEqual({ ...(await till.keys.get(ids.revoked!)), status: 'revoked' });
    expect(parse<{ credits: unknown }>(asJson).credits).toBeNull();
    expect(human.stdout).toMatch(/^rate limits +-$/m);
    expect(human.stdout).toMatch(/^credits +unlimited$/m);
    expect(asJson.stdout + human.stdout).not.toMatch(/hash|sha256|hmac/i);
  });
});

describe('till keys update', () => {
  it('changes name, scopes (replacing them), metadata (merging) and expiry', async () => {
    const { record } = await apiKey('to update', { metadata: { env: 'dev', trial: 'yes' }, expiresIn: '1d' });
    const run = await till$(
      'keys',
      'update',
      record.id,
      '--name',
      'updated',
      '--scope',
      'a:read,b:write',
      '--meta',
      'env=prod',
      '--unset-meta',
      'trial',
      '--expires',
      '2099-01-01T00:00:00Z',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    const expected = { name: 'updated', scopes: ['a:read', 'b:write'], metadata: { env: 'prod' }, expiresAt: Date.parse('2099-01-01T00:00:00Z'), version: 2 };
    expect(parse<{ record: KeyInfo }>(run).record).toMatchObject(expected);
    expect(await till.keys.get(record.id)).toMatchObject(expected);

    const never = await till$('keys', 'update', record.id, '--expires', 'never');
    expect(never.code, never.stderr).toBe(0);
    expect(never.stdout).toMatch(/^expires +never$/m);
    expect((await till.keys.get(record.id))!.expiresAt).toBeNull();

    // An entry named __proto__ is an entry like any other, not silently dropped.
    const proto = await till$('keys', 'update', record.id, '--meta', '__proto__=x', '--json');
    expect(proto.code, proto.stderr).toBe(0);
    expect(Object.getOwnPropertyDescriptor((await till.keys.get(record.id))!.metadata, '__proto__')?.value).toBe('x');
  });
});

describe('rate limits and credits', () => {
  it('create, show (with the live credits) and update them; the verifier enforces what was set', async () => {
    const run = await till$(
      'keys',
      'create',
      '--name',
      'partner',
      '--scope',
      'search:read',
      '--rate',
      'per-second=2/1s',
      '--rate',
      'per-day=10000/1d',
      '--credits',
      '3',
      '--refill',
      '1000/30d',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    const { key, record } = parse<{ key: string; record: KeyInfo }>(run);
    expect(record.limits).toEqual([
      { name: 'per-second', limit: 2, window: 1000 },
      { name: 'per-day', limit: 10_000, window: DAY },
    ]);
    expect(record.credits).toMatchObject({ remaining: 3, refill: { amount: 1000, interval: 30 * DAY } });
    expect((await till.verify(key)).valid).toBe(true);
    const shown = await till$('keys', 'show', record.id);
    expect(shown.stdout).toMatch(/^rate limits +per-second 2\/1s, per-day 10000\/1d$/m);
    expect(shown.stdout).toMatch(/^credits +2 left, topped up to 1000 every 30d$/m);
    expect(parse<{ credits: number }>(await till$('keys', 'show', record.id, '--json')).credits).toBe(2);

    const updated = await till$('keys', 'update', record.id, '--rate', 'none', '--credits', 'none', '--json');
    expect(updated.code, updated.stderr).toBe(0);
    expect(parse<{ record: KeyInfo }>(updated).record).toMatchObject({ limits: [], credits: null });
    const again = await till$('keys', 'update', record.id, '--credits', '0');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^credits +0 when set$/m);
    expect((await till.verify(key)).code).toBe('USAGE_EXCEEDED');
  });
});

describe('usage', () => {
  it('show prints the last use and the requests of the last 7 days; list the last use', async () => {
    const { key, record } = await apiKey('used', { ownerId: 'team-usage' });
    for (let i = 0; i < 3; i++) expect((await till.verify(key)).valid).toBe(true);
    expect((await till.verify(withWrongSecret(key))).code).toBe('NOT_FOUND');
    await till.usage!.flush();
    const shown = await till$('keys', 'show', record.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^last used +\d{4}-\d{2}-\d{2}T\S+Z$/m);
    // The wrong secret is probing of the id, not a use of the key: not in its counts.
    expect(shown.stdout).toMatch(/^requests \(7d\) +3: 3 VALID$/m);
    const listed = parse<{ keys: Array<{ id: string; lastUsedAt: number | null }> }>(await till$('keys', 'list', '--owner', 'team-usage', '--json'));
    expect(listed.keys.map((k) => [k.id, typeof k.lastUsedAt])).toEqual([[record.id, 'number']]);
    const never = await apiKey('never used', { ownerId: 'team-usage' });
    const table = await till$('keys', 'list', '--owner', 'team-usage');
    expect(table.stdout.split('\n').find((l) => l.startsWith(never.record.id))).toMatch(/ never$/);
  });
});

describe('the key-handling guide', () => {
  it('has every section that audit findings and scan results name', () => {
    const named = [repoFile('packages/core/src/audit/report.ts'), repoFile('packages/cli/src/commands/scan.ts')].flatMap((source) =>
      [...source.matchAll(/(?:\$\{GUIDE\}#|guideSection\(')([a-z0-9-]+)/g)].map(([, anchor]) => anchor!),
    );
    expect(new Set(named).size).toBeGreaterThanOrEqual(8);
    const anchors = guideAnchors();
    for (const anchor of named) expect(anchors, anchor).toContain(anchor);
  });
});

describe('till audit', () => {
  it('lists findings with why and what to do, as JSON for schedulers, and revokes what it lists', async () => {
    const wild = await apiKey('wild', { ownerId: 'team-report', scopes: ['admin:*'] });
    const fine = await apiKey('fine', { ownerId: 'team-report', expiresIn: '30d' });
    const human = await till$('audit', '--owner', 'team-report');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^${wild.record.id} +wild +team-report +wildcard-scope +holds wildcard scopes: admin:\\* +narrow it`, 'm'));
    expect(human.stdout).toContain('Checked 2 keys');
    expect(human.stdout).toMatch(/^FINDING +WHY IT MATTERS$/m);
    expect(human.stdout).toMatch(new RegExp(`^no-expiry +${GUIDE}#give-every-key-an-expiry$`, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^wildcard-scope +${GUIDE}#least-privilege-scopes$`, 'm'));
    const report = parse<{ keysChecked: number; findings: Array<{ keyId: string; kind: string }>; revoked: string[] }>(
      await till$('audit', '--owner', 'team-report', '--json'),
    );
    expect(report.keysChecked).toBe(2);
    expect(report.findings.map((f) => [f.keyId, f.kind])).toEqual([
      [wild.record.id, 'no-expiry'],
      [wild.record.id, 'wildcard-scope'],
    ]);
    expect((report.findings as Array<{ docs?: string }>).map((f) => f.docs)).toEqual([`${GUIDE}#give-every-key-an-expiry`, `${GUIDE}#least-privilege-scopes`]);
    const refused = await till$('audit', '--owner', 'team-report', '--revoke');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^till: refusing to revoke 1 keys without confirmation/);
    const revoked = await till$('audit', '--owner', 'team-report', '--revoke', '--yes', '--json');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(parse<{ revoked: string[] }>(revoked).revoked).toEqual([wild.record.id]);
    expect(await till.keys.get(wild.record.id)).toMatchObject({ revokedReason: 'audit: no-expiry, wildcard-scope' });
    expect((await till.keys.get(fine.record.id))!.revokedAt).toBeNull();
    expect((await till$('audit', '--owner', 'team-report')).stdout).toMatch(/^Checked 1 keys at \S+: nothing to report\.$/m);
  });
});

describe('the audit trail', () => {
  it('records who changed what (TILL_ACTOR), deletes keeping the history, and lists and exports it', async () => {
    const env2 = { ...env(), TILL_ACTOR: 'ops-bot' };
    const made = await runTill(['--namespace', namespace, 'keys', 'create', '--name', 'temp', '--scope', 'a:read', '--owner', 'team-audit', '--json'], env2);
    expect(made.code, made.stderr).toBe(0);
    const { key, record } = parse<{ key: string; record: KeyInfo }>(made);
    const revoked = await runTill(['--namespace', namespace, 'keys', 'revoke', record.id, '--reason', 'no longer needed', '--yes'], env2);
    expect(revoked.code, revoked.stderr).toBe(0);
    const deleted = await runTill(['--namespace', namespace, 'keys', 'delete', record.id, '--reason', 'cleanup', '--yes'], env2);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain(`Deleted key ${record.id}.`);
    expect(await till.keys.get(record.id)).toBeNull();

    const lines = await till$('events', 'list', '--key', record.id, '--jsonl');
    expect(lines.code, lines.stderr).toBe(0);
    const entries = lines.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; actor: string; reason: string | null });
    expect(entries.map((e) => [e.type, e.actor, e.reason])).toEqual([
      ['key.created', 'ops-bot', null],
      ['key.revoked', 'ops-bot', 'no longer needed'],
      ['key.deleted', 'ops-bot', 'cleanup'],
    ]);
    const human = await till$('events', 'list', '--owner', 'team-audit', '--type', 'key.deleted', '--since', '1h');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^\\S+Z +key\\.deleted +${record.id} +ops-bot +cleanup$`, 'm'));
    expect(occurrences(lines.stdout + human.stdout, key)).toBe(0);
    expect(occurrences(lines.stdout + human.stdout, key.slice(-28, -6))).toBe(0);
  });
});

describe('till events tail', () => {
  it('prints entries as they are written, until interrupted', async () => {
    const target = await apiKey('watched', { ownerId: 'team-tail' });
    const tail = startTill(['--namespace', namespace, 'events', 'tail', '--key', target.record.id, '--interval', '200ms', '--jsonl'], env());
    // It has found where the trail ends and is polling: what is written now must show.
    await tail.until(({ stderr }) => stderr.includes('following the audit trail'));
    await till.keys.update(target.record.id, { name: 'watched 2' }, { actor: 'tail-test' });
    await till.keys.revoke(target.record.id, { reason: 'tail test', actor: 'tail-test' });
    await tail.until(({ stdout }) => stdout.includes('"key.revoked"'));
    tail.child.kill('SIGINT');
    const run = await tail.done;
    expect(run.code, run.stderr).toBe(0);
    const entries = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; actor: string });
    // Only what came after it started: not the creation.
    expect(entries.map((e) => [e.type, e.actor])).toEqual([
      ['key.updated', 'tail-test'],
      ['key.revoked', 'tail-test'],
    ]);
  });

  it('stops by itself after --for', async () => {
    const target = await apiKey('watched briefly', { ownerId: 'team-tail' });
    const run = await till$('events', 'tail', '--key', target.record.id, '--for', '300ms', '--interval', '100ms', '--jsonl');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('following the audit trail');
  });
});

describe('destructive commands', () => {
  it('revoke asks first: without a terminal and without --yes it refuses and changes nothing', async () => {
    const created = await apiKey('to revoke');
    const id = created.record.id;
    const before = await snapshot(client, namespace);
    const refused = await Promise.all(['revoke', 'rotate', 'disable'].map((c) => till$('keys', c, id)));
    for (const run of refused) {
      expect(run.code).toBe(1);
      // Refused at once: a prompt that waited would be killed by the harness (exit code -1).
      expect(run.stderr).toMatch(/^till: refusing to \w+ key \w+ without confirmation: stdin is not a terminal; pass --yes/);
    }
    expect(await snapshot(client, namespace)).toEqual(before);

    const run = await till$('keys', 'revoke', id, '--reason', 'leaked in a log', '--yes', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(parse<{ record: KeyInfo & { status: string } }>(run).record).toMatchObject({ id, status: 'revoked', revokedReason: 'leaked in a log' });
    expect(await outcome(created.key)).toBe('REVOKED');

    const again = await till$('keys', 'revoke', id);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('already revoked');
  });

  it.skipIf(!hasScript())('on a terminal, asks and acts only on yes', async () => {
    const created = await apiKey('asked on a terminal');
    const id = created.record.id;
    const before = await snapshot(client, namespace);
    const [declined, eof] = await Promise.all([
      runTillInTerminal(['--namespace', namespace, 'keys', 'revoke', id], 'n\r', env()),
      runTillInTerminal(['--namespace', namespace, 'keys', 'disable', id], '\u0004', env()),
    ]);
    for (const run of [declined, eof]) {
      expect(run.stdout).toContain(`key ${id} ("asked on a terminal", owner team-api)?`);
      expect(run.stdout).toMatch(/till: not confirmed: did not (revoke|disable) key/);
      expect(run.code).toBe(1);
    }
    expect(await snapshot(client, namespace)).toEqual(before);

    const accepted = await runTillInTerminal(['--namespace', namespace, 'keys', 'revoke', id, '--reason', 'asked'], 'y\r', env());
    expect(accepted.code, accepted.stdout).toBe(0);
    expect(accepted.stdout).toContain(`Revoked key ${id}.`);
    expect(await outcome(created.key)).toBe('REVOKED');
  });

  it('rotate issues a new key printed once; the old key works through the grace period, then expires', async () => {
    const old = await apiKey('to rotate', { metadata: { env: 'prod' } });
    const before = Date.now();
    const run = await till$('keys', 'rotate', old.record.id, '--grace', '1h', '--yes', '--json');
    expect(run.code, run.stderr).toBe(0);
    const rotated = parse<{ key: string; record: KeyInfo; previous: KeyInfo }>(run);
    expect(Object.keys(rotated).sort()).toEqual(['key', 'previous', 'record']);
    expect(occurrences(run.stdout, rotated.key)).toBe(1);
    expect(occurrences(run.stdout, old.key)).toBe(0);
    expect(rotated.record).toMatchObject({
      name: 'to rotate',
      scopes: ['reports:read'],
      ownerId: 'team-api',
      metadata: { env: 'prod' },
      rotatedFrom: old.record.id,
    });
    expect(rotated.previous).toMatchObject({ id: old.record.id, rotatedTo: rotated.record.id });
    expectOffsetFrom(rotated.previous.expiresAt!, HOUR, before);

    expect(await outcome(rotated.key)).toBe('VALID');
    expect(await outcome(old.key)).toBe('VALID');
    const afterGrace = tillAt(HOUR + 60_000);
    expect(await outcome(old.key, afterGrace)).toBe('EXPIRED');
    expect(await outcome(rotated.key, afterGrace)).toBe('VALID');
    await expectStoreFreeOf([rotated.key, old.key]);
  });

  it('rotate for people prints the new key once, both ids and the old expiry', async () => {
    const old = await apiKey('to rotate, human');
    const before = Date.now();
    const run = await till$('keys', 'rotate', old.record.id, '--yes');
    expect(run.code, run.stderr).toBe(0);
    const [key, ...others] = keysIn(run.stdout + run.stderr);
    expect(others).toHaveLength(0);
    expect(occurrences(run.stdout, key!)).toBe(1);
    expect(run.stdout).toMatch(/only time this key is shown/i);
    const newId = key!.slice(5, 21);
    expect(run.stdout).toContain(`Rotated key ${old.record.id} to ${newId}`);
    const oldLine = run.stdout.split('\n').find((l) => l.startsWith('old key'));
    expect(oldLine).toMatch(new RegExp(`^old key +${old.record.id} +expires (\\S+) \\(grace 24h\\)$`));
    const expires = Date.parse(/expires (\S+)/.exec(oldLine!)![1]!);
    // Printed to the second.
    expectOffsetFrom(expires, DAY, before - 1000);
    expect((await till.keys.get(newId))!.rotatedFrom).toBe(old.record.id);
  });

  it("revoke reaches the rotation chain; --key-only ends an old key's grace alone; a rotated key is changed through its successor", async () => {
    const old = await apiKey('chain, leaked');
    const next = await till.keys.rotate(old.record.id, { grace: '1h' });
    const refused = await till$('keys', 'update', old.record.id, '--expires', 'never');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`was rotated to ${next.record.id}: change that key instead`);
    const disable = await till$('keys', 'disable', old.record.id, '--yes');
    expect(disable.code).toBe(1);
    expect(disable.stderr).toContain(`till keys revoke ${old.record.id} --key-only`);

    const run = await till$('keys', 'revoke', old.record.id, '--reason', 'leaked', '--yes', '--json');
    expect(run.code, run.stderr).toBe(0);
    const revoked = parse<{ record: KeyInfo; chain: KeyInfo[] }>(run);
    expect(revoked.record).toMatchObject({ id: old.record.id, revokedReason: 'leaked' });
    expect(revoked.chain.map((k) => k.id)).toEqual([next.record.id]);
    expect(await outcome(next.key)).toBe('REVOKED');

    const a = await apiKey('chain, grace ended');
    const b = await till.keys.rotate(a.record.id, { grace: '1h' });
    const alone = await till$('keys', 'revoke', a.record.id, '--key-only', '--yes');
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stdout).not.toContain('Also revoked');
    expect(await outcome(a.key)).toBe('REVOKED');
    expect(await outcome(b.key)).toBe('VALID');
    // Learning later that the old key leaked: revoking it again reaches the rest of the chain.
    const later = await till$('keys', 'revoke', a.record.id, '--yes');
    expect(later.code, later.stderr).toBe(0);
    expect(later.stdout).toContain(`Also revoked, of its rotation chain: ${b.record.id}.`);
    expect(await outcome(b.key)).toBe('REVOKED');
  });

  it('disable (with --yes) stops a key, enable brings it back', async () => {
    const created = await apiKey('to disable');
    const id = created.record.id;
    const disabled = await till$('keys', 'disable', id, '--yes', '--json');
    expect(disabled.code, disabled.stderr).toBe(0);
    expect(parse<{ record: { status: string } }>(disabled).record.status).toBe('disabled');
    expect(await outcome(created.key)).toBe('DISABLED');

    const enabled = await till$('keys', 'enable', id);
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(enabled.stdout).toMatch(/^status +active$/m);
    expect(await outcome(created.key)).toBe('VALID');
  });
});

describe('bad input changes nothing and says why', () => {
  it('exits non-zero with a clear till: message on stderr for each mistake, and the store is unchanged', async () => {
    const target = await apiKey('untouched', { expiresIn: '30d' });
    const id = target.record.id;
    const revoked = await apiKey('revoked already');
    await till.keys.revoke(revoked.record.id);
    const unknownId = 'A'.repeat(16);
    const closedPort = await freePort();
    const before = await snapshot(client, namespace);

    const cases: [string, string[], number, RegExp, Record<string, string | undefined>?][] = [
      ['unknown id (show)', ['keys', 'show', unknownId], 1, new RegExp(`^till: no key ${unknownId}\n$`)],
      ['unknown id (revoke)', ['keys', 'revoke', unknownId, '--yes'], 1, /^till: no key /],
      ['unknown id (rotate)', ['keys', 'rotate', unknownId, '--yes'], 1, /^till: no key /],
      ['unknown id (update)', ['keys', 'update', unknownId, '--name', 'x'], 1, /^till: no key /],
      ['unknown id (disable)', ['keys', 'disable', unknownId, '--yes'], 1, /^till: no key /],
      ['unknown id (enable)', ['keys', 'enable', unknownId], 1, /^till: no key /],
      ['malformed id', ['keys', 'show', 'not-an-id'], 1, /^till: invalid key id: an id is the 16 characters/],
      ['malformed id (revoke)', ['keys', 'revoke', 'abc', '--yes'], 1, /^till: invalid key id/],
      ['a whole key as id', ['keys', 'revoke', target.key, '--yes'], 1, new RegExp(`^till: an argument holds a whole API key \\(id ${id}\\)`)],
      ['a whole key as a scope', ['keys', 'update', id, '--scope', target.key], 1, new RegExp(`^till: an argument holds a whole API key \\(id ${id}\\)`)],
      [
        'a whole key in a reason',
        ['keys', 'revoke', id, '--reason', `leaked:${target.key}`, '--yes'],
        1,
        new RegExp(`^till: an argument holds a whole API key \\(id ${id}\\)`),
      ],
      ['a cut key in a bad value', ['keys', 'update', id, '--expires', target.key.slice(0, 40)], 1, /^till: invalid --expires "till_[0-9A-Za-z]{16}…": give/],
      ['bad duration (--grace)', ['keys', 'rotate', id, '--grace', '3 days', '--yes'], 1, /^till: --grace must be like 30d/],
      [
        'bad duration (--expires)',
        ['keys', 'create', '--name', 'x', '--scope', 'a', '--expires', '10x'],
        1,
        /^till: invalid --expires "10x": give an ISO 8601 date/,
      ],
      ['bad duration unit', ['keys', 'update', id, '--expires', '30dd'], 1, /^till: --expires must be like 30d/],
      [
        'bare number (--expires)',
        ['keys', 'create', '--name', 'x', '--scope', 'a', '--expires', '5000'],
        1,
        /^till: --expires "5000": a bare number has no unit: write 5000ms or 5s\n$/,
      ],
      [
        'bare number (--grace)',
        ['keys', 'rotate', id, '--grace', '5000', '--yes'],
        1,
        /^till: --grace "5000": a bare number has no unit: write 5000ms or 5s\n$/,
      ],
      ['bare number (--since)', ['events', 'list', '--since', '90'], 1, /^till: --since "90": a bare number has no unit: write 90ms\n$/],
      [
        'a key glued in an option',
        ['keys', 'update', id, `--name=prod_${target.key}`],
        1,
        new RegExp(`^till: an argument holds a whole API key \\(id ${id}\\)`),
      ],
      ['impossible date', ['keys', 'create', '--name', 'x', '--scope', 'a', '--expires', '2031-02-30'], 1, /^till: invalid --expires "2031-02-30"/],
      [
        'date in the past',
        ['keys', 'create', '--name', 'x', '--scope', 'a', '--expires', '2020-01-01'],
        1,
        /^till: --expires "2020-01-01" is not in the future/,
      ],
      ['bad scope string', ['keys', 'create', '--name', 'x', '--scope', 'users read'], 1, /^till: invalid scope "users read": use segments/],
      ['empty scope', ['keys', 'create', '--name', 'x', '--scope', 'a,,b'], 1, /^till: empty scope in --scope/],
      ['bad scope (update)', ['keys', 'update', id, '--scope', 'a:*:b'], 1, /^till: invalid scope "a:\*:b"/],
      ['missing --name', ['keys', 'create', '--scope', 'a'], 2, /^till: required option '--name <name>' not specified/],
      ['missing --scope', ['keys', 'create', '--name', 'x'], 2, /^till: required option '--scope <scopes>' not specified/],
      ['empty name', ['keys', 'create', '--name', ' ', '--scope', 'a'], 1, /^till: name must be a non-empty string/],
      ['bad --meta', ['keys', 'create', '--name', 'x', '--scope', 'a', '--meta', 'novalue'], 1, /^till: invalid --meta "novalue": use key=value/],
      ['bad --prefix', ['keys', 'create', '--name', 'x', '--scope', 'a', '--prefix', 'Bad-Prefix'], 1, /^till: invalid --prefix "Bad-Prefix"/],
      ['bad --limit', ['keys', 'list', '--limit', '0'], 1, /^till: invalid --limit "0"/],
      ['bad --cursor', ['keys', 'list', '--cursor', 'nope'], 1, /^till: invalid cursor/],
      ['bad --reason', ['keys', 'revoke', id, '--reason', '', '--yes'], 1, /^till: invalid --reason/],
      ['nothing to update', ['keys', 'update', id], 2, /^till: nothing to update/],
      ['bad --rate', ['keys', 'create', '--name', 'x', '--scope', 'a', '--rate', '10/1s'], 1, /^till: invalid --rate "10\/1s": give name=count\/window/],
      ['bad --rate window', ['keys', 'update', id, '--rate', 'x=10/soon'], 1, /^till: rate limit "x" window must be like 30d/],
      ['two --rate of one name', ['keys', 'update', id, '--rate', 'x=1/1s', '--rate', 'x=2/1m'], 1, /^till: two rate limits are named "x"/],
      ['bad --credits', ['keys', 'create', '--name', 'x', '--scope', 'a', '--credits', 'lots'], 1, /^till: invalid --credits "lots"/],
      ['--refill alone', ['keys', 'update', id, '--refill', '10/1d'], 1, /^till: --refill needs --credits/],
      ['bad --refill', ['keys', 'update', id, '--credits', '5', '--refill', '10/1ms'], 1, /^till: credits.refill.interval must be at least 1s/],
      ['revoked key cannot change', ['keys', 'update', revoked.record.id, '--name', 'x'], 1, /^till: key \w+ is revoked; a revoked key cannot change/],
      ['revoked key cannot rotate', ['keys', 'rotate', revoked.record.id, '--yes'], 1, /is revoked/],
      ['unknown option', ['keys', 'list', '--colour'], 2, /^till: unknown option '--colour'/],
      ['unknown command', ['keys', 'destroy', id], 2, /^till: unknown command 'destroy'/],
      ['delete without --yes', ['keys', 'delete', id], 1, /^till: refusing to delete key \w+ without confirmation/],
      ['bad --type', ['events', 'list', '--type', 'key.exploded'], 1, /^till: invalid --type "key.exploded": one of key.created/],
      ['bad --since', ['events', 'list', '--since', 'yesterday'], 1, /^till: invalid --since "yesterday"/],
      ['--json and --jsonl', ['events', 'list', '--json', '--jsonl'], 1, /^till: give --json or --jsonl, not both/],
      ['bad --failures', ['audit', '--failures', '0'], 1, /^till: invalid --failures "0"/],
      ['bad --unused-for', ['audit', '--unused-for', 'ages'], 1, /^till: --unused-for must be like 30d/],
      ['--reason without --revoke', ['audit', '--reason', 'x'], 1, /^till: --reason goes with --revoke/],
      ['missing argument', ['keys', 'show'], 2, /^till: missing required argument 'id'/],
      ['extra argument', ['keys', 'show', id, id], 2, /^till: too many arguments/],
      ['bad namespace', ['--namespace', 'a{b}', 'keys', 'list'], 1, /^till: namespace must be a string without braces/],
      ['short pepper', ['keys', 'list'], 1, /^till: .*pepper/i, { ...env(), TILL_PEPPER: 'short' }],
      ['no Redis URL', ['keys', 'list'], 2, /^till: no Redis to talk to: pass --redis <url> or set REDIS_URL/, { REDIS_URL: undefined }],
      ['not a Redis URL', ['keys', 'list', '--redis', 'http://127.0.0.1:6379'], 2, /^till: the Redis URL must start with redis:\/\//],
      [
        'Redis unreachable',
        ['keys', 'create', '--name', 'x', '--scope', 'a', '--redis', `redis://127.0.0.1:${closedPort}`],
        3,
        new RegExp(`^till: cannot reach Redis at redis://127.0.0.1:${closedPort}: connect ECONNREFUSED`),
      ],
      [
        'Redis unreachable (rotate)',
        ['keys', 'rotate', id, '--yes'],
        3,
        /^till: cannot reach Redis/,
        { ...env(), REDIS_URL: `redis://127.0.0.1:${closedPort}` },
      ],
    ];
    const runs = await eachLimited(cases, 4, ([, args, , , caseEnv]) =>
      caseEnv ? runTill(args[0] === '--namespace' ? args : ['--namespace', namespace, ...args], caseEnv) : till$(...args),
    );
    cases.forEach(([name, , code, message], i) => {
      const run = runs[i]!;
      expect(run.code, `${name}: exit code (stderr: ${run.stderr.trim()})`).toBe(code);
      expect(run.stderr, name).toMatch(message);
      expect(run.stderr, `${name}: no stack trace`).not.toMatch(/^\s+at /m);
      expect(run.stdout, `${name}: nothing on stdout`).toBe('');
      // Not the key, nor any part of its secret beyond the public id.
      expect(run.stderr, `${name}: key echoed`).not.toContain(target.key.slice(0, 5 + 16 + 6));
    });
    expect(await snapshot(client, namespace)).toEqual(before);
  }, 180_000); // some 60 processes, four at a time, on a machine that may be busy: a budget, not a bound
});

describe('Redis unreachable', () => {
  it('the binary gives up after about 2 s with exit code 3 and exits', async () => {
    const closedPort = await freePort();
    // Beside a run that exits right after start-up: a busy machine slows both starts alike.
    const [run, started] = await Promise.all([
      runTill(['keys', 'list', '--redis', `redis://127.0.0.1:${closedPort}`]),
      runTill(['keys', 'list'], { REDIS_URL: undefined }),
    ]);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toMatch(new RegExp(`^till: cannot reach Redis at redis://127.0.0.1:${closedPort}: connect ECONNREFUSED[^\\n]*\\n$`));
    expect(run.stdout).toBe('');
    expect(started.code).toBe(2);
    // About 2 s of retries past start-up; a hang, or seconds held open after giving up, would not fit.
    expect(run.ms - started.ms).toBeLessThan(6000);
  });

  it('leaves no timer or socket behind once it has given up (nothing keeps the process alive)', async () => {
    const { createHook } = await import('node:async_hooks');
    const { openSession } = await import('../src/connection.js');
    const closedPort = await freePort();
    // Timers and sockets made by the connection code or ioredis during the attempt, until they end.
    const alive = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type !== 'Timeout' && !type.startsWith('TCP') && type !== 'ConnectWrap') return;
        const stack = new Error().stack ?? '';
        if (/ioredis|src[\\/]connection/.test(stack)) alive.set(id, type);
      },
      destroy(id) {
        alive.delete(id);
      },
    });
    hook.enable();
    try {
      const error = await openSession({ redis: `redis://127.0.0.1:${closedPort}`, namespace: uniqueNamespace() }, {}).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ exitCode: 3, message: expect.stringMatching(/^cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/) });
      await new Promise((r) => setImmediate(r)); // destroy hooks of what closed in this turn
      // ioredis's disconnect timer (2 s, on the dead socket) used to hold the exit back after the message.
      expect([...alive.values()]).toEqual([]);
    } finally {
      hook.disable();
    }
  });
});

describe('till scan', () => {
  it('reports exactly the real keys of a tree, by file, line, id and status, never the secret; --revoke revokes the live ones', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { generateKey } = await import('@till/core');
    const live = await apiKey('leaky');
    const dead = await apiKey('dead');
    await till.keys.revoke(dead.record.id);
    const stranger = generateKey('sk_live').key; // right format and check, in no store
    const badCheck = live.key.slice(0, -1) + (live.key.endsWith('A') ? 'B' : 'A');
    const root = mkdtempSync(join(tmpdir(), 'till-scan-'));
    try {
      mkdirSync(join(root, 'src', 'nested'), { recursive: true });
      mkdirSync(join(root, 'build'));
      writeFileSync(join(root, '.gitignore'), 'build/\n*.log\n');
      writeFileSync(join(root, 'src', 'config.ts'), `export const config = {\n  apiKey: '${live.key}',\n};\n`);
      writeFileSync(
        join(root, 'src', 'nested', '.env'),
        `OLD_KEY=${dead.key}\nTYPO=${badCheck}\nOTHER=sk_live_${'x'.repeat(44)}\nUPPER=TILL_${live.key.slice(5)}\n`,
      );
      writeFileSync(join(root, 'src', 'nested', 'notes.md'), `shared by mistake: ${stranger}\n`);
      writeFileSync(join(root, 'src', 'nested', '.gitignore'), 'secret.txt\n');
      writeFileSync(join(root, 'src', 'nested', 'secret.txt'), live.key);
      writeFileSync(join(root, 'build', 'bundle.js'), live.key);
      writeFileSync(join(root, 'debug.log'), live.key);
      writeFileSync(join(root, 'image.bin'), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(live.key)]));

      const run = await till$('scan', root, '--json');
      expect(run.code, run.stderr).toBe(1);
      const out = parse<{ scanned: number; skipped: { binary: number }; findings: Array<{ file: string; line: number; keyId: string; status: string }> }>(run);
      const rel = (f: string) => f.slice(f.indexOf('till-scan-')).split('/').slice(1).join('/');
      expect(out.findings.map((f) => [rel(f.file), f.line, f.keyId, f.status])).toEqual([
        ['src/config.ts', 2, live.record.id, 'active'],
        ['src/nested/.env', 1, dead.record.id, 'revoked'],
        ['src/nested/notes.md', 1, stranger.slice(-44, -28), 'unknown'],
      ]);
      const docs = (out.findings as Array<{ docs?: string }>).map((f) => f.docs);
      expect(docs).toEqual([`${GUIDE}#the-first-hour-after-a-leak`, `${GUIDE}#where-keys-live`, `${GUIDE}#the-first-hour-after-a-leak`]);
      for (const link of docs) expect(guideAnchors()).toContain(link!.split('#')[1]);
      expect(out.skipped.binary).toBe(1);
      const human = await till$('scan', root);
      expect(human.code).toBe(1);
      expect(human.stdout).toMatch(new RegExp(`config\\.ts +2:12 +till_${live.record.id}… +active`));
      for (const text of [run.stdout, human.stdout, human.stderr]) {
        for (const key of [live.key, dead.key, stranger]) {
          expect(occurrences(text, key)).toBe(0);
          expect(occurrences(text, key.slice(-28, -6))).toBe(0);
        }
      }
      expect((await till$('scan', join(root, 'src', 'nested', '.env'))).code).toBe(0); // only a revoked key and look-alikes
      expect((await till$('scan', join(root, 'src', 'nested', '.env'), '--offline')).code).toBe(1);

      const revoked = await till$('scan', join(root, 'src'), '--revoke', '--yes', '--json');
      // The unknown key in notes.md may be another environment's live key: still not clean.
      expect(revoked.code, revoked.stderr).toBe(1);
      const afterRevoke = parse<{ revoked: string[]; findings: Array<{ keyId: string; status: string }> }>(revoked);
      expect(afterRevoke.revoked).toEqual([live.record.id]);
      expect(afterRevoke.findings.find((f) => f.keyId === live.record.id)).toMatchObject({ status: 'revoked', docs: `${GUIDE}#the-first-hour-after-a-leak` });
      expect(await till.keys.get(live.record.id)).toMatchObject({ revokedReason: 'leaked' });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('exits 0 once this run has revoked every live key, says so with right plurals, and never suggests --revoke for unknown keys', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { generateKey } = await import('@till/core');
    const live = await apiKey('leaked once');
    const root = mkdtempSync(join(tmpdir(), 'till-scan-'));
    try {
      writeFileSync(join(root, 'config.ts'), `const key = '${live.key}';\n`);
      const found = await till$('scan', root);
      expect(found.code, found.stderr).toBe(1);
      expect(found.stderr).toMatch(
        /^Scanned 1 file: 1 key found\.\n1 live key found: revoke it \(--revoke\) and remove it from the files\. why: https:\/\/github\.com\/till-keys\/till\/blob\/main\/docs\/key-hygiene\.md#the-first-hour-after-a-leak\n$/,
      );

      const revoked = await till$('scan', root, '--revoke', '--yes');
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stdout).toMatch(new RegExp(`config\\.ts +1:14 +till_${live.record.id}… +revoked`));
      expect(revoked.stderr).toMatch(
        /^Scanned 1 file: 1 key found\.\n1 live key revoked as leaked: remove it from the files too\. why: \S+#the-first-hour-after-a-leak\n$/,
      );
      expect(await outcome(live.key)).toBe('REVOKED');
      expect((await till$('scan', root)).code).toBe(0); // revoked before: nothing left to fear

      // Keys this Redis does not know: not clean, but --revoke cannot help.
      writeFileSync(join(root, 'other.env'), `A=${generateKey('sk_live').key}\nB=${generateKey('sk_live').key}\n`);
      const unknown = await till$('scan', root, '--revoke', '--yes');
      expect(unknown.code, unknown.stderr).toBe(1);
      expect(unknown.stderr).toContain('Scanned 2 files: 3 keys found.');
      expect(unknown.stderr).toContain(
        '2 keys unknown to this Redis: they may belong to another environment (scan with its --redis); remove them from the files.',
      );
      expect(unknown.stderr).toContain(`remove them from the files. why: ${GUIDE}#the-first-hour-after-a-leak\n`);
      expect(unknown.stderr).toContain(`1 key found already revoked or expired: it no longer works; remove it from the files. why: ${GUIDE}#where-keys-live\n`);
      expect(unknown.stderr).not.toContain('--revoke');
      expect(parse<{ revoked: string[] }>(await till$('scan', root, '--json')).revoked).toEqual([]);
      const help = await runTill(['scan', '--help']);
      expect(help.stdout.replace(/\s+/g, ' ')).toContain(
        'Exit code 1 while something found may still be live: a live key not revoked by this run, a key this Redis does not know',
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('judges a key by its secret, never by its public id: a forged key is not live and gets nothing revoked', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const real = await apiKey('forged against');
    const forged = wrongSecretKey(real.key); // the real id, another secret, a recomputed check
    const root = mkdtempSync(join(tmpdir(), 'till-scan-'));
    try {
      writeFileSync(join(root, 'bait.env'), `API_KEY=${forged}\n`);
      const [asJson, human, revoke] = await Promise.all([
        till$('scan', root, '--json'),
        till$('scan', root),
        till$('scan', root, '--revoke', '--yes', '--json'),
      ]);
      for (const run of [asJson, human, revoke]) expect(run.code, run.stderr).toBe(1);
      expect(parse<{ findings: Array<{ keyId: string; status: string }> }>(asJson).findings.map((f) => [f.keyId, f.status])).toEqual([
        [real.record.id, 'mismatch'],
      ]);
      expect(parse<{ revoked: string[] }>(revoke).revoked).toEqual([]);
      expect(human.stdout).toMatch(new RegExp(`bait\\.env +1:9 +till_${real.record.id}… +secret does not match`));
      expect(human.stderr).toMatch(/1 key with a real id whose secret does not match: made up, or TILL_PEPPER differs from your services' pepper/);
      expect(human.stderr).not.toContain('--revoke');
      expect(await outcome(real.key)).toBe('VALID');
      expect((await till.keys.get(real.record.id))!.revokedAt).toBeNull();

      // The real key under another pepper, or none, is not confirmed either, and never revoked.
      writeFileSync(join(root, 'bait.env'), `API_KEY=${real.key}\n`);
      const [otherPepper, noPepper] = await Promise.all([
        runTill(['--namespace', namespace, 'scan', root, '--revoke', '--yes', '--json'], { ...env(), TILL_PEPPER: 'a-different-pepper-0123456789' }),
        runTill(['--namespace', namespace, 'scan', root, '--revoke', '--yes'], { ...env(), TILL_PEPPER: undefined }),
      ]);
      expect(otherPepper.code, otherPepper.stderr).toBe(1);
      expect(parse<{ findings: Array<{ status: string }>; revoked: string[] }>(otherPepper)).toMatchObject({ findings: [{ status: 'mismatch' }], revoked: [] });
      expect(noPepper.code, noPepper.stderr).toBe(1);
      expect(noPepper.stdout).toMatch(/cannot confirm without the pepper$/m);
      expect(noPepper.stderr).toContain('set TILL_PEPPER');
      expect(await outcome(real.key)).toBe('VALID');
      for (const run of [asJson, human, revoke, otherPepper, noPepper]) {
        for (const key of [real.key, forged]) {
          expect(occurrences(run.stdout + run.stderr, key.slice(-28, -6)), 'secret in output').toBe(0);
        }
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it.skipIf(!hasGit())('in a git work tree scans tracked files even when ignored, and untracked ones not ignored; reads regular files only', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync, symlinkSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawnSync } = await import('node:child_process');
    const tracked = await apiKey('force-added');
    const untracked = await apiKey('untracked');
    const ignored = await apiKey('ignored');
    const root = mkdtempSync(join(tmpdir(), 'till-scan-git-'));
    const git = (...args: string[]) => expect(spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' }).status).toBe(0);
    try {
      git('init', '-q');
      writeFileSync(join(root, '.gitignore'), '*.env\n');
      writeFileSync(join(root, 'prod.env'), `KEY=${tracked.key}\n`);
      writeFileSync(join(root, 'local.env'), `KEY=${ignored.key}\n`);
      mkdirSync(join(root, 'src'));
      writeFileSync(join(root, 'src', 'new.ts'), `const k = '9${untracked.key}';\n`); // glued after a digit
      git('add', '.gitignore');
      git('add', '-f', 'prod.env');
      const hasFifo = spawnSync('mkfifo', [join(root, 'pipe')]).status === 0;
      if (hasFifo) symlinkSync('pipe', join(root, 'link'));

      const run = await till$('scan', root, '--json');
      expect(run.code, run.stderr).toBe(1);
      const out = parse<{ scanned: number; findings: Array<{ file: string; keyId: string; status: string }> }>(run);
      expect(out.findings.map((f) => [f.file.split('/').pop(), f.keyId, f.status]).sort()).toEqual(
        [
          ['new.ts', untracked.record.id, 'active'],
          ['prod.env', tracked.record.id, 'active'],
        ].sort(),
      );
      expect(out.scanned).toBe(3); // .gitignore, prod.env, src/new.ts: not the FIFO, not the link
      if (hasFifo) {
        // Named explicitly, a link to a FIFO is refused at once rather than read (which would block).
        const named = await till$('scan', join(root, 'link'));
        expect(named.code).toBe(1);
        expect(named.stderr).toMatch(/^till: cannot scan ".*link": not a regular file or a directory\n$/);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('till audit --expiring-within', () => {
  it('lists keys expiring soon from the expiry index, as JSON too, never revokes them for it, and rebuilds the index with --reindex', async () => {
    const soon = await apiKey('soon', { ownerId: 'team-expiring', expiresIn: '3d' });
    const later = await apiKey('later', { ownerId: 'team-expiring', expiresIn: '30d' });
    const human = await till$('audit', '--owner', 'team-expiring', '--expiring-within', '7');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(
      new RegExp(
        `^${soon.record.id} +soon +team-expiring +expiring +expires in 2 days \\(\\S+\\) +rotate it before then \\(till keys rotate ${soon.record.id} `,
        'm',
      ),
    );
    expect(human.stdout).toMatch(/^expiring +https:\/\/\S+\/docs\/audit-and-alerts\.md#expiry-reminders$/m);
    expect(human.stdout).not.toContain('Add --revoke');
    const report = parse<{ findings: Array<{ keyId: string; kind: string }>; expiryIndexComplete: boolean }>(
      await till$('audit', '--owner', 'team-expiring', '--expiring-within', '36h', '--json'),
    );
    expect(report).toMatchObject({ findings: [], expiryIndexComplete: true });
    const wide = parse<{ findings: Array<{ keyId: string; kind: string }>; revoked: string[]; reindexed: { checked: number; indexed: number } }>(
      await till$('audit', '--owner', 'team-expiring', '--expiring-within', '60', '--revoke', '--yes', '--reindex', '--json'),
    );
    expect(wide.findings.map((f) => [f.keyId, f.kind])).toEqual([
      [soon.record.id, 'expiring'],
      [later.record.id, 'expiring'],
    ]);
    expect(wide.revoked).toEqual([]);
    expect(wide.reindexed.checked).toBeGreaterThanOrEqual(2);
    expect(wide.reindexed.indexed).toBeGreaterThanOrEqual(2);
    expect((await till.keys.get(soon.record.id))!.revokedAt).toBeNull();
    for (const [value, message] of [
      ['0', /^till: invalid --expiring-within "0"/],
      ['soon', /^till: --expiring-within must be like 30d/],
    ] as const) {
      const bad = await till$('audit', '--expiring-within', value);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(message);
    }
  });

  it('links a section of the docs that exists', () => {
    const anchors = [...repoFile('docs/audit-and-alerts.md').matchAll(/^#{2,4} (.+)$/gm)].map(([, h]) =>
      h!
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    );
    expect(anchors).toContain('expiry-reminders');
  });
});

describe('IP allowlists', () => {
  it('create --allow-ip (repeatable, commas too), show and update (none removes it); the verifier enforces what was set', async () => {
    const run = await till$(
      'keys',
      'create',
      '--name',
      'office',
      '--scope',
      'reports:read',
      '--allow-ip',
      '203.0.113.0/24,2001:DB8::/32',
      '--allow-ip',
      '198.51.100.7',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    const { key, record } = parse<{ key: string; record: KeyInfo }>(run);
    expect(record.allowedIps).toEqual(['203.0.113.0/24', '2001:db8::/32', '198.51.100.7/32']);
    expect((await till.verify(key, { ip: '203.0.113.9' })).code).toBe('VALID');
    expect((await till.verify(key, { ip: '192.0.2.1' })).code).toBe('IP_NOT_ALLOWED');
    const shown = await till$('keys', 'show', record.id);
    expect(shown.stdout).toMatch(/^allowed IPs +203\.0\.113\.0\/24, 2001:db8::\/32, 198\.51\.100\.7\/32$/m);
    const updated = await till$('keys', 'update', record.id, '--allow-ip', '192.0.2.0/24', '--json');
    expect(updated.code, updated.stderr).toBe(0);
    expect(parse<{ record: KeyInfo }>(updated).record.allowedIps).toEqual(['192.0.2.0/24']);
    expect((await till.verify(key, { ip: '192.0.2.1' })).code).toBe('VALID');
    const cleared = await till$('keys', 'update', record.id, '--allow-ip', 'none');
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stdout).toMatch(/^allowed IPs +any$/m);
    expect((await till.verify(key)).code).toBe('VALID');
  });

  it('refuses a bad range before Redis is touched, saying why, and changes nothing', async () => {
    const { record } = await apiKey('allowlist-target');
    const before = await snapshot(client, namespace);
    const cases: Array<[string[], RegExp]> = [
      [
        ['keys', 'create', '--name', 'x', '--scope', 'a', '--allow-ip', '203.0.113.5/24'],
        /^till: invalid IP range "203\.0\.113\.5\/24": host bits are set; the network of \/24 is 203\.0\.113\.0\/24/,
      ],
      [['keys', 'create', '--name', 'x', '--scope', 'a', '--allow-ip', 'office'], /^till: invalid IP range "office": not an IPv4 or IPv6 address/],
      [['keys', 'create', '--name', 'x', '--scope', 'a', '--allow-ip', 'none'], /^till: invalid IP range "none"/],
      [['keys', 'update', record.id, '--allow-ip', '10.0.0.0/8,,10.1.0.0/16'], /^till: empty range in --allow-ip/],
      [['keys', 'update', record.id, '--allow-ip', '::/129'], /^till: invalid IP range "::\/129": an IPv6 prefix length is at most 128/],
    ];
    const runs = await eachLimited(cases, 4, ([args]) => till$(...args));
    cases.forEach(([args, message], i) => {
      const run = runs[i]!;
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(1);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/^\s+at /m);
    });
    expect(await snapshot(client, namespace)).toEqual(before);
  }, 60_000);
});

describe('till roles', () => {
  it('define, list, show (with its holders), keys create/update --role, delete refused while held and forced; all with --json', async () => {
    const defined = await till$('roles', 'define', 'cli-reporting', '--scope', 'reports:read,exports:*', '--reason', 'BI', '--json');
    expect(defined.code, defined.stderr).toBe(0);
    expect(parse<{ role: { name: string; scopes: string[]; version: number } }>(defined).role).toMatchObject({
      name: 'cli-reporting',
      scopes: ['exports:*', 'reports:read'],
      version: 1,
    });
    const forPeople = await till$('roles', 'define', 'cli-billing', '--scope', 'invoices:read');
    expect(forPeople.code, forPeople.stderr).toBe(0);
    expect(forPeople.stdout).toMatch(/^Defined role cli-billing \(version 1\)\.$/m);
    expect(forPeople.stdout).toMatch(/^scopes +invoices:read$/m);
    const listed = await till$('roles', 'list');
    expect(listed.stdout).toMatch(/^cli-billing +invoices:read /m);
    expect(listed.stdout).toMatch(/^cli-reporting +exports:\* reports:read /m);
    expect(parse<{ roles: Array<{ name: string }> }>(await till$('roles', 'list', '--json')).roles.map((r) => r.name)).toEqual(
      expect.arrayContaining(['cli-billing', 'cli-reporting']),
    );

    const created = await till$('keys', 'create', '--name', 'bi', '--scope', 'users:read', '--role', 'cli-reporting', '--json');
    expect(created.code, created.stderr).toBe(0);
    const { key, record } = parse<{ key: string; record: KeyInfo }>(created);
    expect(record.roles).toEqual(['cli-reporting']);
    expect((await till.verify(key, { scopes: ['exports:csv', 'users:read'] })).code).toBe('VALID');
    expect((await till$('keys', 'show', record.id)).stdout).toMatch(/^roles +cli-reporting$/m);
    const shown = parse<{ role: unknown; keys: number }>(await till$('roles', 'show', 'cli-reporting', '--json'));
    expect(shown.keys).toBe(1);

    const refused = await till$('roles', 'delete', 'cli-reporting', '--yes');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^till: role cli-reporting is held by 1 key: take it from them first/);
    const updated = await till$('keys', 'update', record.id, '--role', 'cli-billing', '--json');
    expect(updated.code, updated.stderr).toBe(0);
    expect(parse<{ record: KeyInfo }>(updated).record.roles).toEqual(['cli-billing']);
    expect((await till.verify(key, { scopes: ['invoices:read'] })).code).toBe('VALID');
    expect((await till.verify(key, { scopes: ['exports:csv'] })).code).toBe('INSUFFICIENT_SCOPE');
    const deleted = await till$('roles', 'delete', 'cli-reporting', '--yes', '--json');
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(parse<{ keys: number }>(deleted).keys).toBe(0);
    const forced = await till$('roles', 'delete', 'cli-billing', '--force', '--yes', '--reason', 'retired');
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/^Deleted role cli-billing\. 1 key still name it and lost its scopes\.$/m);
    expect((await till.verify(key, { scopes: ['invoices:read'] })).code).toBe('INSUFFICIENT_SCOPE');
    const trail = parse<{ entries: Array<{ type: string; reason: string | null; detail?: string }> }>(
      await till$('events', 'list', '--type', 'role.deleted', '--json'),
    );
    expect(trail.entries.map((e) => [e.type, e.reason])).toEqual([
      ['role.deleted', null],
      ['role.deleted', 'retired'],
    ]);
  });

  it('refuses bad input before Redis is touched, and unknown roles, saying why', async () => {
    const { record } = await apiKey('role-target');
    const before = await snapshot(client, namespace);
    const cases: Array<[string[], number, RegExp]> = [
      [['roles', 'define', 'Bad Name', '--scope', 'a'], 1, /^till: invalid role name "Bad Name"/],
      [['roles', 'define', 'ok', '--scope', 'a b'], 1, /^till: invalid scope "a b"/],
      [['roles', 'define', 'ok'], 2, /^till: required option '--scope <scopes>' not specified/],
      [['roles', 'show', 'nope'], 1, /^till: no role nope: till roles list shows them/],
      [['roles', 'delete', 'nope', '--yes'], 1, /^till: no role nope/],
      [['keys', 'create', '--name', 'x', '--scope', 'a', '--role', 'ghost'], 1, /^till: no role named ghost: define it first/],
      [['keys', 'update', record.id, '--role', 'UPPER'], 1, /^till: invalid role name "UPPER"/],
      [['keys', 'update', record.id, '--role', 'a,,b'], 1, /^till: empty role in --role/],
    ];
    const runs = await eachLimited(cases, 4, ([args]) => till$(...args));
    cases.forEach(([args, code, message], i) => {
      const run = runs[i]!;
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(code);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/^\s+at /m);
    });
    expect(await snapshot(client, namespace)).toEqual(before);
  }, 60_000);
});
