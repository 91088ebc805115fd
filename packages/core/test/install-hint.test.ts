// Install hints name the user's package manager, and npm when it cannot be told.
import { describe, expect, it } from 'vitest';
import { installHint } from '../src/util/install-hint.js';

describe('installHint', () => {
  it('names the package manager from npm_config_user_agent', () => {
    const hint = (agent: string) => installHint('prom-client', { npm_config_user_agent: agent });
    expect(hint('npm/10.8.2 node/v20.19.0 linux x64 workspaces/false')).toBe('npm install prom-client');
    expect(hint('pnpm/9.15.0 npm/? node/v20.19.0 linux x64')).toBe('pnpm add prom-client');
    expect(hint('yarn/1.22.22 npm/? node/v20.19.0 darwin arm64')).toBe('yarn add prom-client');
    expect(hint('yarn/4.5.0 npm/? node/v20.19.0 linux x64')).toBe('yarn add prom-client');
    expect(hint('bun/1.1.38 npm/? node/v22.6.0 linux x64')).toBe('bun add prom-client');
  });

  it('falls back to npm install when the agent is missing or unknown', () => {
    expect(installHint('ioredis', {})).toBe('npm install ioredis');
    for (const agent of ['', 'deno/2.0.0', 'something else', 'constructor/1.0', '__proto__/1', 'PNPM/9', 'npm']) {
      expect(installHint('ioredis', { npm_config_user_agent: agent }), agent).toBe('npm install ioredis');
    }
  });

  it('reads process.env by default', () => {
    const saved = process.env.npm_config_user_agent;
    try {
      process.env.npm_config_user_agent = 'yarn/1.22.22 npm/? node/v20.19.0 linux x64';
      expect(installHint('ioredis')).toBe('yarn add ioredis');
      delete process.env.npm_config_user_agent;
      expect(installHint('ioredis')).toBe('npm install ioredis');
    } finally {
      if (saved === undefined) delete process.env.npm_config_user_agent;
      else process.env.npm_config_user_agent = saved;
    }
  });
});
