// Security events in the audit trail: what was tried and refused, by whom, folded under floods, never a secret.
import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { CHANGE_TYPES, createTill, MemoryStore, silentLogger, toJsonLines, type AuditEntry } from '@till/core';
import { apiKeyAuth, rateLimit, requireScopes } from '@till/express';
import { withWrongSecret } from '@till/testkit/adapter-support';
import { middlewareCaller } from '@till/testkit/call-middleware';

async function trail(till: ReturnType<typeof createTill>): Promise<AuditEntry[]> {
  await till.auditWriter!.flush();
  const out: AuditEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await till.keys.audit({ limit: 1000, ...(cursor !== undefined && { cursor }) });
    out.push(...page.entries);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out.filter((e) => !(CHANGE_TYPES as readonly string[]).includes(e.type));
}

describe('security events in the audit trail', () => {
  it('records failures with outcome, key id, client and user agent; refusals of limits; keys still tried after revocation', async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger, auditEvents: { interval: 60_000 } });
    const good = await till.keys.create({ name: 'good', scopes: [], limits: [{ name: 'per-minute', limit: 1, window: '1m' }] });
    const gone = await till.keys.create({ name: 'gone', scopes: [] });
    const reader = await till.keys.create({ name: 'reader', scopes: ['reports:read'] });
    await till.keys.revoke(gone.record.id, { reason: 'leaked' });
    const app = express();
    app.set('trust proxy', true);
    app.get('/', apiKeyAuth({ till, bruteForce: false }), (_req, res) => {
      res.send('ok');
    });
    app.get('/admin', apiKeyAuth({ till, bruteForce: false }), requireScopes('admin'), (_req, res) => {
      res.send('ok');
    });
    app.get('/login', rateLimit({ till, name: 'login', by: 'ip', limit: 1, window: '1h' }), (_req, res) => {
      res.send('ok');
    });
    const as = (ip: string) => ({ 'x-forwarded-for': ip, 'user-agent': 'probe/1.0' });
    const wrong = withWrongSecret(good.key);
    await request(app).get('/').set(as('198.51.100.1')).set('authorization', `Bearer ${wrong}`).expect(401);
    await request(app).get('/').set(as('198.51.100.1')).set('authorization', 'Bearer till_not-a-key').expect(401);
    await request(app).get('/').set(as('198.51.100.1')).expect(401); // no key at all: not an attempt
    await request(app).get('/').set(as('198.51.100.2')).set('authorization', `Bearer ${gone.key}`).expect(401);
    await request(app).get('/').set(as('198.51.100.3')).set('authorization', `Bearer ${good.key}`).expect(200);
    await request(app).get('/').set(as('198.51.100.3')).set('authorization', `Bearer ${good.key}`).expect(429);
    await request(app).get('/admin').set(as('198.51.100.5')).set('authorization', `Bearer ${reader.key}`).expect(403);
    await request(app).get('/login').set(as('198.51.100.4')).expect(200);
    await request(app).get('/login').set(as('198.51.100.4')).expect(429);

    const entries = await trail(till);
    const seen = entries.map((e) => [e.type, e.code, e.keyId, e.ip]);
    expect(seen).toEqual([
      // A wrong secret with a real id: probing of that id, never a failure of the key.
      ['key.probed', 'NOT_FOUND', good.record.id, '198.51.100.1'],
      ['auth.failed', 'MALFORMED', null, '198.51.100.1'],
      ['key.misused', 'REVOKED', gone.record.id, '198.51.100.2'],
      ['limit.refused', 'RATE_LIMITED', good.record.id, '198.51.100.3'],
      ['auth.failed', 'INSUFFICIENT_SCOPE', reader.record.id, '198.51.100.5'],
      ['limit.refused', 'RATE_LIMITED', null, '198.51.100.4'],
    ]);
    expect(entries.every((e) => e.userAgent === 'probe/1.0')).toBe(true);
    expect(entries[5]!.detail).toBe('rate limit login');
    const text = toJsonLines(entries);
    for (const secret of [good.key, gone.key, reader.key, wrong, good.key.slice(-28, -6), wrong.slice(-28, -6)]) {
      expect(text.includes(secret)).toBe(false);
    }
    await till.close();
  });

  it('folds a flood of 10,000 failures into a few entries, and blocked clients into one per interval', async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger, auditEvents: { interval: 60_000 } });
    const { key } = await till.keys.create({ name: 'k', scopes: [] });
    const auth = apiKeyAuth({ till, bruteForce: { threshold: 5, window: '1m', block: '10m' } });
    // The middleware as a function, without HTTP: 10,000 requests in a few hundred milliseconds.
    const wrong = withWrongSecret(key);
    const call = middlewareCaller(auth);
    const run = (ip: string, value: string) => call(ip, { authorization: `Bearer ${value}`, 'user-agent': 'flood' });
    const statuses = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      const status = await run('192.0.2.66', wrong);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    expect(statuses.get(429)).toBeGreaterThan(9_900);
    const entries = await trail(till);
    expect(entries.length).toBeLessThanOrEqual(3);
    const failed = entries.find((e) => e.type === 'key.probed')!;
    const blocked = entries.find((e) => e.type === 'client.blocked')!;
    expect((failed.count ?? 1) + (blocked.count ?? 1)).toBe(10_000);
    expect(blocked).toMatchObject({ code: 'BLOCKED', ip: '192.0.2.66', userAgent: 'flood' });
    await till.close();
  });

  it("files security events under the key's owner, so a query by owner finds what was tried with its keys", async () => {
    const till = createTill({ store: new MemoryStore(), logger: silentLogger, auditEvents: { interval: 60_000 } });
    const gone = await till.keys.create({ name: 'gone', scopes: [], ownerId: 'team-x' });
    const reader = await till.keys.create({ name: 'reader', scopes: ['a'], ownerId: 'team-x' });
    await till.keys.revoke(gone.record.id);
    const app = express();
    app.get('/', apiKeyAuth({ till, bruteForce: false }), requireScopes('admin'), (_req, res) => {
      res.send('ok');
    });
    await request(app).get('/').set('authorization', `Bearer ${gone.key}`).expect(401);
    await request(app)
      .get('/')
      .set('authorization', `Bearer ${withWrongSecret(reader.key)}`)
      .expect(401);
    await request(app).get('/').set('authorization', `Bearer ${reader.key}`).expect(403);
    await till.auditWriter!.flush();
    const mine = (await till.keys.audit({ ownerId: 'team-x', types: ['key.misused', 'key.probed', 'auth.failed'] })).entries;
    expect(mine.map((e) => [e.type, e.code, e.keyId])).toEqual([
      ['key.misused', 'REVOKED', gone.record.id],
      ['key.probed', 'NOT_FOUND', reader.record.id],
      ['auth.failed', 'INSUFFICIENT_SCOPE', reader.record.id],
    ]);
    await till.close();
  });
});
