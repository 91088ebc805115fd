// Entry point of the `till` binary: run the program, print failures as `till: <message>`, exit with a documented code.
import { CommanderError } from 'commander';
import { createContext } from './context.js';
import { describeError, EXIT, failed, keyInArguments, redactKeys, type ExitCode } from './errors.js';
import { createProgram } from './program.js';

/** Runs `till` with `argv` (as in process.argv) and resolves to the exit code. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ExitCode> {
  const ctx = createContext(env);
  const program = createProgram(ctx);
  try {
    const id = keyInArguments(argv.slice(2));
    if (id !== null) {
      throw failed(
        `an argument holds a whole API key (id ${id}): commands take key ids, and a key on a command line ends up in shell history and process lists; rotate or revoke it if it was exposed`,
      );
    }
    await program.parseAsync(argv);
    return ctx.exitCode ?? EXIT.OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander has already printed any usage error.
      return error.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    const { message, exitCode } = describeError(error);
    ctx.note(`till: ${redactKeys(message)}\n`);
    if (env.TILL_DEBUG === '1' && error instanceof Error && error.stack) ctx.note(`${error.stack}\n`);
    return exitCode;
  } finally {
    await ctx.close();
  }
}

// `till keys list | head -1`: a reader that stops early is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(process.exitCode ?? EXIT.OK);
});

process.exitCode = await run(process.argv);
