// How to install a missing optional dependency, said in the user's own package manager.

const COMMANDS: Readonly<Record<string, string>> = { npm: 'npm install', pnpm: 'pnpm add', yarn: 'yarn add', bun: 'bun add' };

/**
 * The command that installs `pkg`: the package manager that started this process when it says so
 * (`npm_config_user_agent`, like `pnpm/9.1.0 npm/? node/v20.12.0 linux x64`), otherwise `npm install`.
 */
export function installHint(pkg: string, env: NodeJS.ProcessEnv = process.env): string {
  const agent = env.npm_config_user_agent;
  const name = typeof agent === 'string' ? /^([a-z]+)\//.exec(agent.trim())?.[1] : undefined;
  const command = (name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined) ?? COMMANDS.npm!;
  return `${command} ${pkg}`;
}
