// What every command gets: the environment, the clock, the two output streams and the Redis session.
import type { Command } from 'commander';
import { isTillError, type IdentityManager, type KeyManager, type RoleManager } from '@till/core';
import { openSession, type ConnectionOptions, type Session } from './connection.js';
import { notReplicated } from './errors.js';

export interface Context {
  readonly env: NodeJS.ProcessEnv;
  now(): number;
  /** stdout: results (a table, a record, one JSON document). */
  print(text: string): void;
  /** stderr: notes and prompts that a script piping stdout should not receive. */
  note(text: string): void;
  /** Connects on first use with the global options (`--redis`, `--namespace`) and returns the key manager. */
  keys(command: Command): Promise<KeyManager>;
  /** Connects on first use, as `keys` does, and returns the identity manager. */
  identities(command: Command): Promise<IdentityManager>;
  /**
   * For a change the key manager does not confirm with replicas itself (a creation, an enabling):
   * waits for `--replicas` of them, or throws a CliError saying the change is made but not yet safe.
   */
  confirmChanges(what: string): Promise<void>;
  /** Closes the Redis session, if one was opened, so that the process can exit. */
  close(): Promise<void>;
  /** A command that succeeded but must say "found something" to a script (`till scan`) sets this. */
  exitCode?: 1;
  /** Connects on first use, as `keys` does, and returns the role manager. */
  roles(command: Command): Promise<RoleManager>;
}

export function createContext(env: NodeJS.ProcessEnv = process.env): Context {
  let session: Promise<Session> | undefined;
  return {
    env,
    now: () => Date.now(),
    print: (text) => void process.stdout.write(text),
    note: (text) => void process.stderr.write(text),
    async keys(command) {
      session ??= openSession(command.optsWithGlobals<ConnectionOptions>(), env);
      return (await session).keys;
    },
    async identities(command) {
      session ??= openSession(command.optsWithGlobals<ConnectionOptions>(), env);
      return (await session).till.identities;
    },
    async confirmChanges(what) {
      const open = await session;
      if (open === undefined) return;
      try {
        await open.confirmChanges();
      } catch (error) {
        if (isTillError(error, 'NOT_REPLICATED')) throw notReplicated(what, error);
        throw error;
      }
    },
    async close() {
      const open = await session?.catch(() => undefined);
      await open?.close();
    },
    async roles(command) {
      session ??= openSession(command.optsWithGlobals<ConnectionOptions>(), env);
      return (await session).till.roles;
    },
  };
}
