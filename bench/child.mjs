// The one entry of every child process: `node child.mjs <benchmark> <task> <json args>` runs that task
// of that benchmark's module (`main` for a whole benchmark, `serve` for a server, or its own) and sends
// back what it returns.
import { BENCHMARKS } from './run.mjs';

const [name, task, args] = process.argv.slice(2);
if (!Object.hasOwn(BENCHMARKS, name) || !process.send) {
  console.error(`[bench] start me with fork() from bench/harness.mjs: <${Object.keys(BENCHMARKS).join('|')}> <task> <json>`);
  process.exit(2);
}
const module = await import(`./${name}.mjs`);
if (typeof module[task] !== 'function') {
  console.error(`[bench] ${name} has no task ${task}`);
  process.exit(2);
}
const result = await module[task](JSON.parse(args ?? '{}'));
// A server keeps running until its parent goes away; everything else ends here.
if (task !== 'serve') {
  if (result === undefined) process.exit(process.exitCode ?? 0);
  else process.send(result, () => process.exit(process.exitCode ?? 0));
}
