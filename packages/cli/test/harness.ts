// Runs the built `till` binary as a process, and looks at what it left in Redis.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

export const BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`pnpm build\` first (pnpm test does)`);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

/**
 * `till ...args`, with stdin a closed pipe (no terminal: prompts must refuse, never wait) and the
 * environment given (REDIS_URL and TILL_* from the caller only, so the machine's own cannot leak in).
 */
export function runTill(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const started = Date.now();
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [name, value] of Object.entries(env)) if (value !== undefined) clean[name] = value;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { env: clean, timeout: 15_000, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin?.end();
  });
}

/** Everything stored under a namespace, as comparable data: strings by value, sorted sets with scores. */
export async function snapshot(client: Redis, namespace: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}*`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      // Rate-limit state and usage counts are written by verifications (other tests' charges and
      // checks, in batches), not by commands.
      if (key.includes('}:rl:') || key.includes('}:u:') || key.endsWith('usage:last')) continue;
      const type = await client.type(key);
      out[key] = type === 'string' ? await client.get(key) : type === 'zset' ? await client.zrange(key, 0, -1, 'WITHSCORES') : `<${type}>`;
    }
  } while (cursor !== '0');
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** How often `needle` occurs in `text`. Assert on counts, so a failing test never prints a key. */
export function occurrences(text: string, needle: string): number {
  return needle === '' ? 0 : text.split(needle).length - 1;
}

/** Full keys in some output (prefix, underscore, 44 base62 characters). */
export function keysIn(text: string): string[] {
  return text.match(/\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9A-Za-z]{44}\b/g) ?? [];
}

/** Whether git is installed (`till scan` lists a work tree's files with it). */
export function hasGit(): boolean {
  return spawnSync('git', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Whether util-linux `script` is there to give the CLI a terminal (a pseudo-TTY) on stdin. */
export function hasScript(): boolean {
  return spawnSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).status === 0;
}

const shellQuote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;

/**
 * `till ...args` on a pseudo-terminal (through `script`), typing `answer` once the prompt shows.
 * The terminal merges stdout and stderr into `stdout`.
 */
export function runTillInTerminal(args: readonly string[], answer: string, env: Record<string, string | undefined>): Promise<Run> {
  const started = Date.now();
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'dumb' };
  for (const [name, value] of Object.entries(env)) if (value !== undefined) clean[name] = value;
  const command = [process.execPath, BIN, ...args].map(shellQuote).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: clean, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let answered = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (!answered && stdout.includes('[y/N]')) {
        answered = true;
        child.stdin.write(answer);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
    });
  });
}
