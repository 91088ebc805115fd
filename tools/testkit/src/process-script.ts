// Where the scripts of the tests' child processes are. Node runs JavaScript only, so a child process runs
// the testkit's build (dist/processes, made by `pnpm build`), never these TypeScript sources.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type ProcessName = 'drill-app' | 'limits-worker' | 'revocation-worker' | 'rotation-race-worker' | 'identity-worker';

/** The path of the built script of `name`; throws if the testkit has not been built. */
export function processScript(name: ProcessName): string {
  // One level up is the package's root from src/ (the tests) and from dist/ (plain node) alike.
  const path = fileURLToPath(new URL(`../dist/processes/${name}.js`, import.meta.url));
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`pnpm build\` first (the tests' child processes run the built testkit)`);
  return path;
}
