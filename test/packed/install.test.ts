// The packages as a user gets them: every publishable package packed, the tarballs installed with npm
// into a fresh project outside the workspace, and the README's own quick starts run against them.
// A workspace hides what this catches: a file left out of `files`, a dependency that is only
// hoisted here, a package that cannot be installed without another that is not published.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
/** The frameworks as a newcomer installs them today: the oldest major each adapter supports. */
const FRAMEWORKS = { express: 'express@^4', koa: 'koa@^2', fastify: 'fastify@^5' } as const;
type Framework = keyof typeof FRAMEWORKS;

let project = '';
const tarballs = new Map<string, string>();
const children: ChildProcess[] = [];

async function publishable(): Promise<{ dir: string; name: string }[]> {
  const out = [];
  for (const entry of await readdir(join(root, 'packages'))) {
    const dir = join(root, 'packages', entry);
    const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name: string; private?: boolean };
    if (!manifest.private) out.push({ dir, name: manifest.name });
  }
  return out;
}

/** The code block that follows `<!-- quick start: <framework> -->` in the README. */
async function quickStart(framework: Framework): Promise<string> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const match = new RegExp(`<!-- quick start: ${framework} -->\\s*\`\`\`(?:js|javascript)\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!match) throw new Error(`README.md has no quick start for ${framework} (a js code block after <!-- quick start: ${framework} -->)`);
  return match[1]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}

/** Starts a script of the project and waits for the line that carries the key to try. */
function start(file: string, port: number): Promise<{ key: string; url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    // No REDIS_URL: the quick start runs on the embedded memory store, as on a newcomer's machine.
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) };
    delete env.REDIS_URL;
    const child = spawn(process.execPath, [file], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${file} printed no key within 20 s:\n${output}`)), 20_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      // The quick start prints the curl line to try: `curl -H "Authorization: Bearer <key>" <url>`.
      const line = /Bearer ([A-Za-z0-9_]+)" (http:\/\/\S+)/.exec(output);
      if (line) {
        clearTimeout(timer);
        resolve({ key: line[1]!, url: line[2]!.replace('//localhost:', '//127.0.0.1:'), child });
      }
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited with ${code} before printing a key:\n${output}`));
    });
  });
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'till-packed-'));
  const packs = join(project, 'tarballs');
  await run('pnpm', ['run', 'build'], { cwd: root });
  for (const { dir, name } of await publishable()) {
    const { stdout } = await run('pnpm', ['pack', '--pack-destination', packs], { cwd: dir });
    const file = stdout.trim().split('\n').pop()!.trim();
    tarballs.set(name, file.startsWith('/') ? file : join(packs, file));
  }
  const dependencies: Record<string, string> = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]));
  for (const spec of Object.values(FRAMEWORKS)) {
    const at = spec.lastIndexOf('@');
    dependencies[spec.slice(0, at)] = spec.slice(at + 1);
  }
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'till-newcomer', private: true, type: 'module', dependencies }, null, 2));
  await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project, timeout: 240_000 });
}, 300_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (project) await rm(project, { recursive: true, force: true });
});

describe('the packed packages', () => {
  it('hold what a user needs and no sources', async () => {
    expect([...tarballs.keys()].sort()).toEqual(
      expect.arrayContaining(['@till/cli', '@till/console', '@till/core', '@till/express', '@till/fastify', '@till/koa']),
    );
    for (const [name, file] of tarballs) {
      const { stdout } = await run('tar', ['-tzf', file]);
      const files = stdout.split('\n').filter(Boolean);
      expect(files, name).toContain('package/README.md');
      expect(files, name).toContain('package/LICENSE');
      expect(files, name).toContain('package/CHANGELOG.md');
      expect(
        files.filter((f) => f.startsWith('package/src/')),
        name,
      ).toEqual([]);
      expect(
        files.some((f) => f.startsWith('package/dist/')),
        name,
      ).toBe(true);
      const manifest = JSON.parse(await readFile(join(project, 'node_modules', name, 'package.json'), 'utf8')) as Record<string, unknown>;
      expect(JSON.stringify(manifest), name).not.toContain('workspace:');
      for (const field of ['repository', 'homepage', 'keywords', 'license']) expect(manifest[field], `${name} ${field}`).toBeTruthy();
    }
  });

  it('load from CommonJS and ES modules alike, without ioredis for the root entry', async () => {
    const script = [
      "const core = require('@till/core');",
      "if (typeof core.createTill !== 'function') throw new Error('no createTill');",
      "for (const name of ['@till/express', '@till/koa', '@till/fastify']) if (typeof require(name).apiKeyAuth !== 'function') throw new Error(name);",
      "if (typeof require('@till/console').createConsole !== 'function') throw new Error('@till/console');",
      "for (const name of ['@till/console/express', '@till/console/koa', '@till/console/fastify']) if (typeof require(name).tillConsole !== 'function') throw new Error(name);",
      "if (!require('node:fs').existsSync(require('node:path').join(require.resolve('@till/console'), '..', 'dashboard', 'app.js'))) throw new Error('the console has no dashboard');",
      "if (Object.keys(require.cache).some((f) => f.includes('/ioredis/'))) throw new Error('the root entry loaded ioredis');",
    ].join('\n');
    await run(process.execPath, ['-e', script], { cwd: project });
  });

  it('run the till command', async () => {
    const { stdout } = await run(join(project, 'node_modules', '.bin', 'till'), ['--help'], { cwd: project });
    expect(stdout).toMatch(/keys/);
  });

  for (const framework of Object.keys(FRAMEWORKS) as Framework[]) {
    it(`run the README's ${framework} quick start`, async () => {
      const file = join(project, `quick-start-${framework}.mjs`);
      await writeFile(file, await quickStart(framework));
      const port = await freePort();
      const { key, url, child } = await start(file, port);
      expect(url).toContain(`:${port}/`);
      const refused = await fetch(url);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(((await refused.json()) as { code: string }).code).toBe('MISSING');
      const admitted = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
      expect(admitted.status).toBe(200);
      const body = JSON.stringify(await admitted.json());
      expect(body).not.toContain(key);
      const wrong = await fetch(url, { headers: { authorization: `Bearer ${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}` } });
      expect(wrong.status).toBe(401);
      child.kill('SIGTERM');
    }, 60_000);
  }
});
