// The examples, driven through the demo's flow: each app with supertest, then the Express and Fastify demos as real processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { RequestListener } from 'node:http';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTill, generateKey, type Till } from '@till/core';
import { createApp as createExpressApp } from '../examples/express/app.mjs';
import { createApp as createKoaApp } from '../examples/koa/app.mjs';
import { createApp as createFastifyApp } from '../examples/fastify/app.mjs';
import { freePort } from '@till/testkit/redis-server';

const root = fileURLToPath(new URL('..', import.meta.url));
const DAY = 24 * 60 * 60 * 1000;

/** A Fastify app as a request listener: its own server's handler, `app.routing`, once the app is ready. */
function fastifyListener(till: Till): RequestListener {
  const app = createFastifyApp({ till });
  const ready = app.ready();
  return (req, res) => void ready.then(() => app.routing(req, res));
}

// What supertest drives: Express apps are request listeners; Koa gives one through callback().
const frameworks = [
  { name: 'express', serve: (till: Till) => createExpressApp({ till }) },
  { name: 'koa', serve: (till: Till) => createKoaApp({ till }).callback() },
  { name: 'fastify', serve: fastifyListener },
] as const;

const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

for (const framework of frameworks) {
  describe(`examples/${framework.name}: the demo's flow`, () => {
    let till: Till;
    let server: Parameters<typeof request>[0];
    let read: { key: string; id: string };
    let admin: { key: string; id: string };

    beforeEach(async () => {
      // The same keys as the demo makes: a read-only key and an admin key, 30 days to live.
      till = createTill();
      const expiresAt = Date.now() + 30 * DAY;
      const r = await till.keys.create({ name: 'demo reader', scopes: ['reports:read'], expiresAt });
      const a = await till.keys.create({ name: 'demo admin', scopes: ['reports:*', 'keys:admin'], expiresAt });
      read = { key: r.key, id: r.record.id };
      admin = { key: a.key, id: a.record.id };
      server = framework.serve(till);
    });

    afterEach(async () => {
      await till.close();
    });

    it('answers /health without a key', async () => {
      const res = await request(server).get('/health');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'ok' });
    });

    it('GET /v1/me returns the key by id, name and scopes, never the key itself', async () => {
      const res = await request(server).get('/v1/me').set(bearer(admin.key));
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ id: admin.id, name: 'demo admin', scopes: ['keys:admin', 'reports:*'] });
      expect(res.text.includes(admin.key)).toBe(false);
    });

    it('allowed: the read key lists reports (200)', async () => {
      const res = await request(server).get('/v1/reports').set(bearer(read.key));
      expect(res.status).toBe(200);
      expect(Array.isArray(res.body.reports)).toBe(true);
    });

    it('wrong scope: the read key cannot create a report (403), the admin key can (201)', async () => {
      const refused = await request(server).post('/v1/reports').set(bearer(read.key)).send({ title: 'Q2' });
      expect(refused.status).toBe(403);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.headers['www-authenticate']).toContain('error="insufficient_scope"');
      expect(JSON.parse(refused.text)).toMatchObject({ code: 'INSUFFICIENT_SCOPE', required_scopes: ['reports:write'] });

      const created = await request(server).post('/v1/reports').set(bearer(admin.key)).send({ title: 'Q2' });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ title: 'Q2', createdBy: admin.id });
    });

    it('bad key: a key never issued, a typo and no key at all get 401', async () => {
      const unknown = await request(server)
        .get('/v1/reports')
        .set(bearer(generateKey('till').key));
      expect(unknown.status).toBe(401);
      expect(unknown.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(JSON.parse(unknown.text).code).toBe('NOT_FOUND');

      const last = read.key.at(-1) === 'a' ? 'b' : 'a';
      const typo = await request(server)
        .get('/v1/reports')
        .set(bearer(read.key.slice(0, -1) + last));
      expect(typo.status).toBe(401);
      expect(JSON.parse(typo.text).code).toBe('MALFORMED');

      const missing = await request(server).get('/v1/reports');
      expect(missing.status).toBe(401);
      expect(JSON.parse(missing.text).code).toBe('MISSING');
    });

    it('revoke: the admin key revokes the read key (204), which then gets 401 REVOKED', async () => {
      expect((await request(server).get('/v1/reports').set(bearer(read.key))).status).toBe(200); // now cached

      const revoked = await request(server).delete(`/v1/keys/${read.id}`).set(bearer(admin.key)).send({ reason: 'demo' });
      expect(revoked.status).toBe(204);
      expect((await till.keys.get(read.id))?.revokedReason).toBe('demo');
      // The audit entry names the admin key as the actor, not only the reason the caller wrote.
      const entries = (await till.keys.audit({ keyId: read.id, types: ['key.revoked'] })).entries;
      expect(entries.map((e) => [e.actor, e.reason])).toEqual([[`key:${admin.id}`, 'demo']]);

      const after = await request(server).get('/v1/reports').set(bearer(read.key));
      expect(after.status).toBe(401);
      expect(JSON.parse(after.text).code).toBe('REVOKED');
      // The admin key is untouched.
      expect((await request(server).get('/v1/reports').set(bearer(admin.key))).status).toBe(200);
    });

    it('revoke: unknown or impossible ids get 404, and only keys:admin may revoke', async () => {
      const unknownId = generateKey('till').id;
      const unknown = await request(server).delete(`/v1/keys/${unknownId}`).set(bearer(admin.key));
      expect(unknown.status).toBe(404);
      expect(JSON.parse(unknown.text).code).toBe('KEY_NOT_FOUND');
      expect((await request(server).delete('/v1/keys/not-an-id').set(bearer(admin.key))).status).toBe(404);

      const byReader = await request(server).delete(`/v1/keys/${admin.id}`).set(bearer(read.key));
      expect(byReader.status).toBe(403);
      expect((await till.keys.get(admin.id))?.revokedAt).toBeNull();
    });
  });
}

for (const demo of ['express', 'fastify'] as const) {
  describe(`examples/${demo}/demo.mjs as a process`, () => {
    let child: ChildProcess | undefined;
    let blocker: Server | undefined;

    beforeEach(() => {
      if (!existsSync(`${root}packages/${demo}/dist/index.js`)) {
        throw new Error('the demo imports the built packages: run `pnpm build` first (`pnpm test` does)');
      }
    });

    afterEach(async () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child = undefined;
      await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
      blocker = undefined;
    });

    /** Starts the demo; its output is kept, never printed: it holds the keys. */
    function startDemo(port: number) {
      const proc = spawn(process.execPath, [`examples/${demo}/demo.mjs`], {
        cwd: root,
        env: { ...process.env, PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      const output = { stdout: '', stderr: '' };
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
      proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        proc.once('exit', (code, signal) => resolve({ code, signal })),
      );
      return { proc, output, exited };
    }

    async function waitFor(test: () => boolean, exited: Promise<unknown>, what: string, stderr: () => string): Promise<void> {
      let done = false;
      void exited.then(() => (done = true));
      const deadline = Date.now() + 10_000;
      while (!test()) {
        // Only stderr goes into the message: stdout carries the keys.
        if (done) throw new Error(`the demo exited before ${what}; stderr: ${stderr()}`);
        if (Date.now() > deadline) throw new Error(`the demo did not print ${what} within 10 s; stderr: ${stderr()}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }

    it('prints curl lines, the printed allowed request works, and it exits cleanly on SIGINT', async () => {
      const port = await freePort();
      const { proc, output, exited } = startDemo(port);
      await waitFor(
        () => /^# after that/m.test(output.stdout) && /Ctrl\+C/.test(output.stdout),
        exited,
        'its curl lines',
        () => output.stderr,
      );

      const lines = output.stdout.split('\n');
      const allowed = lines[lines.findIndex((l) => l.startsWith('# allowed')) + 1] ?? '';
      expect(allowed.startsWith('curl ')).toBe(true);
      expect(lines.filter((l) => l.startsWith('curl ')).length).toBe(6);

      // Run the printed request as curl would: its -H headers against its URL.
      const headers = Object.fromEntries([...allowed.matchAll(/-H "([^":]+): ([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      const url = /(http:\/\/\S+)\s*$/.exec(allowed)?.[1];
      expect(url).toBe(`http://localhost:${port}/v1/reports`);
      expect(Object.keys(headers)).toEqual(['Authorization']);
      const firstSent = Date.now();
      const res = await fetch(url!, { headers });
      const firstAnswered = Date.now();
      expect(res.status).toBe(200);
      expect(((await res.json()) as { reports: unknown[] }).reports.length).toBeGreaterThan(0);
      // The read key is limited as the printed burst line says: 5 a minute, then 429 with Retry-After.
      expect(res.headers.get('ratelimit')).toBe('"per-minute";r=4;t=12');
      expect(lines.some((l) => l.startsWith('for i in 1 2 3 4 5 6; do curl '))).toBe(true);
      const burst = [];
      let lastSent = 0;
      for (let i = 0; i < 5; i++) {
        lastSent = Date.now();
        burst.push(await fetch(url!, { headers }));
      }
      const lastAnswered = Date.now();
      expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 200, 429]);
      // The office key, from this machine (outside its allowlist): 403 IP_NOT_ALLOWED, as printed.
      const fromHere = lines[lines.findIndex((l) => l.startsWith('# IP allowlist')) + 1] ?? '';
      const officeHeaders = Object.fromEntries([...fromHere.matchAll(/-H "([^":]+): ([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      const office = await fetch(/(http:\/\/\S+)\s*$/.exec(fromHere)![1]!, { headers: officeHeaders });
      expect(office.status).toBe(403);
      expect(((await office.json()) as { code: string }).code).toBe('IP_NOT_ALLOWED');
      // 5 a minute is one every 12 s, with a burst of 5: the sixth request is admitted 12 s after the
      // first, so Retry-After is 12 s less the time between them (rounded up, at least 1). That time is
      // what this machine took; the range below is what the measured bounds on it allow.
      const retryAfter = (between: number) => Math.max(1, Math.ceil((12_000 - between) / 1000));
      const got = Number(burst[4]!.headers.get('retry-after'));
      expect(got).toBeGreaterThanOrEqual(retryAfter(lastAnswered - firstSent));
      expect(got).toBeLessThanOrEqual(retryAfter(lastSent - firstAnswered));

      if (demo === 'express') {
        // The console at /console, and the admin key printed for it.
        const at = /The Till console .* is at (http:\/\/\S+)\n[^\n]*\n\n\s+(\S+)/.exec(output.stdout);
        expect(at?.[1]).toBe(`http://localhost:${port}/console/`);
        const session = await fetch(`${at![1]}api/session`, { headers: { authorization: `Bearer ${at![2]}` } });
        expect(session.status).toBe(200);
        expect(await session.json()).toMatchObject({ name: 'console admin', canChange: true });
      }

      proc.kill('SIGINT');
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(output.stderr).toBe('');
    });

    it('says clearly that the port is in use, without a stack trace, and exits 1', async () => {
      const port = await freePort();
      const taken = createServer();
      blocker = taken;
      await new Promise<void>((resolve) => taken.listen(port, resolve));
      const { output, exited } = startDemo(port);
      expect(await exited).toEqual({ code: 1, signal: null });
      expect(output.stderr).toContain(`port ${port} is already in use`);
      expect(output.stderr).not.toMatch(/\n\s+at /);
      expect(output.stdout).not.toMatch(/till_[0-9A-Za-z]{44}/);
    });
  });
}
