// The layout's rules, read from the sources: no import cycles in core, long files say why they are one
// file, and the framework adapters reach core only through its public entries.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CORE_SRC = join(ROOT, 'packages/core/src');

/** Lines a file may have before its top comment must say why it is one file. */
const MAX_LINES = 300;
/** What that comment says, in its own words: "One file because ...", "... is a single file: ...", "kept together because ...". */
const ONE_FILE = /\b(?:one|single) file\b|\bkept together\b/i;
/** How many first lines the comment must start in. */
const HEAD_LINES = 10;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(?:ts|mts|cts)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out.sort();
}

/** Every module a file names: imports and re-exports (type-only ones included) and dynamic imports. */
function specifiers(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The source file a relative specifier names (`./x.js` is `./x.ts`), or null when it is not one. */
function resolveRelative(from: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(?:[mc]?js)$/, '');
  for (const candidate of [`${stem}.ts`, `${stem}.mts`, `${stem}.cts`, join(base, 'index.ts')]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** Strongly connected components of more than one file, or of one file importing itself (Tarjan). */
function cyclesOf(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node) as number, low.get(to) as number));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node) as number, index.get(to) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) out.push(component);
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return out;
}

/** One import path around a cycle, from its first file back to it, for the message. */
function loopThrough(component: string[], graph: Map<string, string[]>): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0] as string;
  // Breadth-first from start's successors back to start, inside the component.
  const previous = new Map<string, string>();
  const queue = (graph.get(start) ?? []).filter((n) => members.has(n));
  for (const n of queue) previous.set(n, start);
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i] as string;
    if (node === start) break;
    for (const to of graph.get(node) ?? []) {
      if (members.has(to) && !previous.has(to)) {
        previous.set(to, node);
        queue.push(to);
      }
    }
  }
  const path = [start];
  for (let node = previous.get(start); node !== undefined && node !== start; node = previous.get(node)) path.unshift(node);
  path.unshift(start);
  return path;
}

const rel = (file: string): string => relative(ROOT, file);

describe('architecture', () => {
  it('core has no import cycles, type-only imports included', () => {
    const graph = new Map<string, string[]>();
    for (const file of sourceFiles(CORE_SRC)) {
      graph.set(
        file,
        specifiers(file)
          .map((s) => resolveRelative(file, s))
          .filter((f): f is string => f !== null),
      );
    }
    const problems = cyclesOf(graph).map((component) => {
      const loop = loopThrough(component, graph).map(rel).join('\n    -> ');
      return `import cycle among ${component.length} file(s):\n    ${loop}`;
    });
    expect(problems, `core must have no import cycles; move what both sides need into a file of its own:\n${problems.join('\n')}`).toEqual([]);
  });

  it(`every source file over ${MAX_LINES} lines says at its top why it is one file`, () => {
    const packages = readdirSync(join(ROOT, 'packages')).map((p) => join(ROOT, 'packages', p, 'src'));
    const problems: string[] = [];
    for (const file of packages.filter(existsSync).flatMap(sourceFiles)) {
      const lines = readFileSync(file, 'utf8').replace(/\n$/, '').split('\n');
      if (lines.length <= MAX_LINES) continue;
      const head = lines.slice(0, HEAD_LINES).filter((l) => /^\s*(?:\/\/|\/\*|\*)/.test(l));
      if (!head.some((l) => ONE_FILE.test(l))) {
        problems.push(
          `${rel(file)}: ${lines.length} lines, and no comment in its first ${HEAD_LINES} lines saying why it is one file ("One file because ...")`,
        );
      }
    }
    expect(problems, `split these files by concern, or say at their top why they are one file:\n${problems.join('\n')}`).toEqual([]);
  });

  it('the framework adapters import only core’s public entries and their framework', () => {
    const adapters: Record<string, readonly string[]> = {
      express: ['express'],
      koa: ['koa'],
      fastify: ['fastify', 'fastify-plugin'],
    };
    const problems: string[] = [];
    for (const [name, framework] of Object.entries(adapters)) {
      const src = join(ROOT, 'packages', name, 'src');
      if (!existsSync(src)) continue;
      const allowed = new Set(['@till/core', '@till/core/http', ...framework]);
      for (const file of sourceFiles(src)) {
        for (const specifier of specifiers(file)) {
          if (specifier.startsWith('.')) {
            const target = resolve(dirname(file), specifier);
            if (relative(src, target).startsWith('..'))
              problems.push(`${rel(file)} imports '${specifier}', outside its package: import '@till/core' or '@till/core/http' instead`);
          } else if (!allowed.has(specifier) && !specifier.startsWith('node:')) {
            problems.push(`${rel(file)} imports '${specifier}': an adapter imports only ${[...allowed].map((a) => `'${a}'`).join(', ')} and node: built-ins`);
          }
        }
      }
    }
    expect(problems, `adapters must reach core through its public entries only:\n${problems.join('\n')}`).toEqual([]);
  });
});
