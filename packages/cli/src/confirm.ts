// Asking before a destructive change. Without a terminal to ask on, refuse rather than wait for input.
import { createInterface } from 'node:readline';
import { failed } from './errors.js';

export interface ConfirmOptions {
  /** `--yes`: confirmed in advance. */
  yes: boolean;
  /** What is about to happen, for the refusal message: "revoke key abc". */
  action: string;
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
}

/** Resolves when confirmed; otherwise throws a CliError (exit code 1) and nothing is changed. */
export async function confirm(question: string, options: ConfirmOptions): Promise<void> {
  if (options.yes) return;
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stderr;
  if (!input.isTTY) {
    throw failed(`refusing to ${options.action} without confirmation: stdin is not a terminal; pass --yes to confirm`);
  }
  // The prompt goes to stderr so that stdout stays one clean document under --json.
  const rl = createInterface({ input, output, terminal: true });
  const answer = await new Promise<string>((resolve) => {
    rl.on('SIGINT', () => {
      output.write('\n');
      resolve('');
    });
    rl.on('close', () => resolve(''));
    rl.question(`${question} [y/N] `, resolve);
  });
  rl.close();
  if (!/^y(es)?$/i.test(answer.trim())) throw failed(`not confirmed: did not ${options.action}`);
}
