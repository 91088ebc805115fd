// The dashboard's files as the console serves them: built with the package, from this origin only,
// under a strict Content-Security-Policy, with no inline script or style for it to have to allow;
// and the built package (ESM and CommonJS) finds them.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY } from '@till/console';
import { type Harness, startHarness } from './harness.js';

const dist = new URL('../dist/', import.meta.url);
let h: Harness;
beforeAll(async () => {
  if (!existsSync(new URL('dashboard/index.html', dist))) throw new Error('the dashboard is built with the package: run `pnpm build` first (pnpm test does)');
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('dashboard files', () => {
  it('are served without a key, under a strict CSP, and hold no inline script or style', async () => {
    const page = await fetch(`${h.base}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toBe(CONTENT_SECURITY_POLICY);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const html = await page.text();
    // Every script has a src on this origin; no inline handlers, style elements or attributes.
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) expect(tag).toMatch(/src="app\.js"/);
    expect(html).not.toMatch(/<script\b[^>]*>[^<]+<\/script>/);
    expect(html).not.toMatch(/\son\w+=|<style|\sstyle=|https?:\/\//);
    for (const [file, type] of [
      ['app.js', 'text/javascript; charset=utf-8'],
      ['app.css', 'text/css; charset=utf-8'],
    ]) {
      const answer = await fetch(`${h.base}/console/${file}`);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe(type);
      const text = await answer.text();
      // Nothing fetched from elsewhere at run time.
      expect(text).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
    expect((await fetch(`${h.base}/console/../package.json`)).status).toBe(404);
    expect((await fetch(`${h.base}/console/%2e%2e%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${h.base}/console/app.js`, { method: 'POST' })).status).toBe(404);
  });

  it('the script keeps the key in sessionStorage only, and sends it in a header', () => {
    const js = readFileSync(new URL('dashboard/app.js', dist), 'utf8');
    expect(js).toContain('sessionStorage');
    expect(js).not.toMatch(/localStorage|document\.cookie|indexedDB/);
  });

  it('the built package loads as ESM and CommonJS, and both find the dashboard', () => {
    const probe = (mod: string) =>
      `const { createServer } = require('node:http');
       ${mod}
       const till = core.createTill({ logger: core.silentLogger });
       const server = createServer((req, res) => c.createConsole({ till }).handle(req, res, req.url));
       server.listen(0, '127.0.0.1', async () => {
         const r = await fetch('http://127.0.0.1:' + server.address().port + '/');
         console.log(JSON.stringify({ status: r.status, html: (await r.text()).includes('app.js'), express: typeof ex.tillConsole, koa: typeof koa.tillConsole, fastify: typeof fy.tillConsole }));
         server.close(); await till.close();
       });`;
    const cwd = new URL('..', import.meta.url);
    const cjs = execFileSync(
      process.execPath,
      [
        '-e',
        probe(
          `const core = require('@till/core'); const c = require('@till/console'); const ex = require('@till/console/express'); const koa = require('@till/console/koa'); const fy = require('@till/console/fastify');`,
        ),
      ],
      { cwd, encoding: 'utf8' },
    );
    const esm = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url); const core = await import('@till/core'); const c = await import('@till/console'); const ex = await import('@till/console/express'); const koa = await import('@till/console/koa'); const fy = await import('@till/console/fastify'); ${probe('')}`,
      ],
      { cwd, encoding: 'utf8' },
    );
    for (const out of [cjs, esm]) expect(JSON.parse(out)).toEqual({ status: 200, html: true, express: 'function', koa: 'function', fastify: 'function' });
  });
});
