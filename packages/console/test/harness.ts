// A console mounted in a real app on a real Redis (a namespace of its own), with keys to sign in with,
// and HTTP helpers that keep every answer for the secrets check.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import express from 'express';
import { createTill, type Till } from '@till/core';
import { RedisStore } from '@till/core/redis';
import { apiKeyAuth } from '@till/express';
import { tillConsole } from '@till/console/express';
import { deleteNamespace, newClient, uniqueNamespace } from '@till/testkit/redis';
import type { Redis } from 'ioredis';

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: answers are read field by field in the tests
  json: any;
}

export interface Harness {
  till: Till;
  client: Redis;
  base: string;
  /** Keys holding till:admin, till:read, and neither. */
  admin: string;
  reader: string;
  outsider: string;
  /** Every answer so far, with whether it may hold a full key (create and rotate). */
  answers: Array<{ text: string; mayHoldKey: boolean }>;
  call(
    method: string,
    path: string,
    options?: { key?: string | null; body?: unknown; raw?: string; type?: string; headers?: Record<string, string>; base?: string },
  ): Promise<Answer>;
  close(): Promise<void>;
}

export async function listening(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An Express app with the console at /console and a sample route guarded by Till at /orders. */
export async function startHarness(options: { express?: (app: express.Express) => void } = {}): Promise<Harness> {
  const client = newClient();
  const namespace = uniqueNamespace();
  const store = new RedisStore({ client, namespace });
  const till = createTill({
    store,
    logger: { warn() {}, error() {} },
    auditEvents: { interval: 50 },
    usage: { interval: 50 },
  });
  const app = express();
  options.express?.(app);
  app.use('/console', tillConsole({ till, eventsPollInterval: 50 }));
  app.get('/orders', apiKeyAuth({ till }), (_req, res) => void res.json({ ok: true }));
  const server = createServer(app);
  const base = await listening(server);
  const admin = (await till.keys.create({ name: 'admin', scopes: ['till:admin'] })).key;
  const reader = (await till.keys.create({ name: 'reader', scopes: ['till:read'] })).key;
  const outsider = (await till.keys.create({ name: 'outsider', scopes: ['orders:read'] })).key;
  const answers: Harness['answers'] = [];
  return {
    till,
    client,
    base,
    admin,
    reader,
    outsider,
    answers,
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      const key = o.key === undefined ? admin : o.key;
      if (key !== null) headers.authorization = `Bearer ${key}`;
      let body: string | undefined;
      if (o.raw !== undefined) body = o.raw;
      else if (o.body !== undefined) body = JSON.stringify(o.body);
      if (body !== undefined) headers['content-type'] = o.type ?? 'application/json';
      const res = await fetch(`${o.base ?? base}${path}`, { method, headers, ...(body !== undefined && { body }) });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const mayHoldKey = res.status === 201 && method === 'POST' && /\/api\/keys(?:\/[^/]+\/rotate)?$/.test(path.split('?')[0]!);
      answers.push({ text, mayHoldKey });
      return { status: res.status, headers: res.headers, text, json };
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await till.close();
      // The store's own subscriber connection; the client is the test's, closed below.
      await store.close();
      await deleteNamespace(client, namespace);
      client.disconnect();
    },
  };
}

/** Every stored digest of the namespace's keys: none may ever appear in an answer. */
export async function storedDigests(till: Till): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await till.store.list({ limit: 1000, ...(cursor !== undefined && { cursor }) });
    out.push(...page.keys.map((k) => k.hash));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}
