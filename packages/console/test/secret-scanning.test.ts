// GitHub's secret-scanning alerts, signed with a local P-256 key pair standing in for GitHub's: the
// live Till keys among the tokens are revoked as leaked (their secret confirmed), the answer is in
// GitHub's format, a repeated alert changes nothing, and an unsigned or forged request revokes nothing.
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Alert, type Alerts, createAlerts, createTill, type Till } from '@till/core';
import { apiKeyAuth } from '@till/express';
import { RedisStore } from '@till/core/redis';
import { tillConsole } from '@till/console/express';
import { madeUpKey, wrongSecretKey } from '@till/testkit/key-forgery';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import { waitFor } from '@till/testkit/wait';
import { listening } from './harness.js';

const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const IDENTIFIER = 'f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d';
const client = newClient();
const namespace = uniqueNamespace();
let store: RedisStore;
let till: Till;
let server: Server;
let url: string;
let fetches = 0;
let alerts: Alerts;
const raised: Alert[] = [];

beforeAll(async () => {
  store = new RedisStore({ client, namespace });
  till = createTill({ store, logger: { warn() {}, error() {} } });
  alerts = createAlerts(till, { rules: [{ type: 'leaked-key-used' }], sinks: [(a) => void raised.push(a)], dedupWindow: 0 });
  const app = express();
  app.get('/orders', apiKeyAuth({ till, bruteForce: false }), (_req, res) => void res.json({ ok: true }));
  app.use(
    '/console',
    tillConsole({
      till,
      secretScanning: {
        publicKeys: async () => {
          fetches++;
          return [{ key_identifier: IDENTIFIER, key: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string, is_current: true }];
        },
      },
    }),
  );
  server = createServer(app);
  url = `${await listening(server)}/console/github/secret-scanning`;
});
afterAll(async () => {
  server.closeAllConnections();
  server.close();
  alerts.stop();
  await till.close();
  await store.close();
  await deleteNamespace(client, namespace);
  client.disconnect();
});

function post(body: string, o: { key?: typeof pair.privateKey; identifier?: string; signature?: string } = {}) {
  const signature = o.signature ?? sign('sha256', Buffer.from(body), o.key ?? pair.privateKey).toString('base64');
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'github-public-key-identifier': o.identifier ?? IDENTIFIER, 'github-public-key-signature': signature },
    body,
  });
}
const sha = (token: string) => createHash('sha256').update(token).digest('hex');

describe('GitHub secret scanning', () => {
  it('revokes the live keys found as leaked, answers in GitHub’s format, and again the same without changing anything', async () => {
    const live = await till.keys.create({ name: 'leaked one', scopes: ['a'] });
    const kept = await till.keys.create({ name: 'not leaked', scopes: ['a'] });
    // A real id with a made-up secret and a valid check (ids are public), and a key this store never issued.
    const forged = wrongSecretKey(live.key);
    const stranger = madeUpKey();
    const body = JSON.stringify([
      { token: live.key, type: 'till_api_key', url: 'https://github.com/o/r/blob/x/f.txt', source: 'content' },
      { token: forged, type: 'till_api_key', url: 'https://github.com/o/r/blob/x/g.txt', source: 'content' },
      { token: stranger, type: 'till_api_key', url: 'https://github.com/o/r/blob/x/h.txt', source: 'content' },
      { token: 'not a key at all', type: 'till_api_key', url: 'https://github.com/o/r/blob/x/i.txt', source: 'content' },
    ]);
    const first = await post(body);
    expect(first.status).toBe(200);
    const expected = [
      { token_hash: sha(live.key), token_type: 'till_api_key', label: 'true_positive' },
      { token_hash: sha(forged), token_type: 'till_api_key', label: 'false_positive' },
      { token_hash: sha(stranger), token_type: 'till_api_key', label: 'false_positive' },
      { token_hash: sha('not a key at all'), token_type: 'till_api_key', label: 'false_positive' },
    ];
    const text = await first.text();
    expect(JSON.parse(text)).toEqual(expected);
    expect(text).not.toContain(live.key);
    const revoked = await till.keys.get(live.record.id);
    expect(revoked).toMatchObject({ revokedReason: 'leaked' });
    const [entry] = (await till.keys.audit({ keyId: live.record.id, types: ['key.revoked'] })).entries;
    expect(entry).toMatchObject({ actor: 'github-secret-scanning', reason: 'leaked' });
    expect((await till.keys.get(kept.record.id))?.revokedAt).toBeNull();

    const again = await post(body);
    expect(await again.json()).toEqual(expected);
    expect((await till.keys.get(live.record.id))?.revokedAt).toBe(revoked?.revokedAt);
    expect((await till.keys.audit({ keyId: live.record.id, types: ['key.revoked'] })).entries).toHaveLength(1);
    // The key list was read once for both requests.
    expect(fetches).toBe(1);
    // Revoked as leaked: its next use raises the leaked-key alert.
    const origin = url.slice(0, url.indexOf('/console'));
    expect((await fetch(`${origin}/orders`, { headers: { authorization: `Bearer ${live.key}` } })).status).toBe(401);
    expect(await waitFor(() => raised.some((a) => a.rule === 'leaked-key-used' && a.keyId === live.record.id), 5000)).toBe(true);
    expect(JSON.stringify(raised)).not.toContain(live.key);
  });

  it('revokes nothing without a valid signature by a published key', async () => {
    const live = await till.keys.create({ name: 'targeted', scopes: ['a'] });
    const body = JSON.stringify([{ token: live.key, type: 'till_api_key', url: 'u', source: 'content' }]);
    const refusals = [
      await post(body, { key: other.privateKey }),
      await post(body, { signature: sign('sha256', Buffer.from(`${body} `), pair.privateKey).toString('base64') }),
      await post(body, { identifier: 'unknown-identifier' }),
      await post(body, { signature: 'not base64 at all!' }),
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
    ];
    for (const r of refusals) {
      expect(r.status).toBe(401);
      expect(r.headers.get('content-type')).toBe('application/problem+json');
    }
    expect((await till.keys.get(live.record.id))?.revokedAt).toBeNull();
    expect((await fetch(url)).status).toBe(405);
  });

  it('answers a signed body that is not a list of matches with 400', async () => {
    for (const body of ['{}', '[{"token": 1}]', 'nope', JSON.stringify(Array.from({ length: 1001 }, () => ({ token: 't', type: 't' })))]) {
      expect((await post(body)).status).toBe(400);
    }
  });
});
