// Runs the built `till` binary as a process, and looks at what it left in Redis.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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
  /** Milliseconds from spawn to the first output on stderr, or null when there was none. */
  stderrMs: number | null;
}

function cleanEnv(env: Record<string, string | undefined>, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...extra };
  for (const [name, value] of Object.entries(env)) if (value !== undefined) clean[name] = value;
  return clean;
}

/** A `till` process being run: its output so far, a way to wait for some of it, and its end. */
export interface RunningTill {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once `probe` holds for the output so far; rejects if the process ends first. */
  until(probe: (out: { stdout: string; stderr: string }) => boolean): Promise<void>;
  /** Resolves when the process has exited. */
  readonly done: Promise<Run>;
}

/**
 * Starts `till ...args` with stdin a closed pipe (no terminal: prompts must refuse, never wait) and the
 * environment given (REDIS_URL and TILL_* from the caller only, so the machine's own cannot leak in).
 * A process still running after 15 s is killed (exit code -1).
 */
export function startTill(args: readonly string[], env: Record<string, string | undefined> = {}): RunningTill {
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  let stdout = '';
  let stderr = '';
  let stderrMs: number | null = null;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    wake();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderrMs ??= Date.now() - started;
    stderr += chunk;
    wake();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  let ended = false;
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      ended = true;
      wake();
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started, stderrMs });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    done,
    until: (probe) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (probe({ stdout, stderr })) {
            waiters.delete(check);
            resolve();
          } else if (ended) {
            waiters.delete(check);
            reject(new Error(`till ended before the awaited output (stderr: ${stderr.slice(0, 200)})`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

/** `till ...args` to its end (see startTill). */
export function runTill(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return startTill(args, env).done;
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
  const clean = cleanEnv(env, { TERM: 'dumb' });
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
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started, stderrMs: null });
    });
  });
}
