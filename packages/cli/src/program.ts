// The `till` program: global options, help text with exit codes, and how commander reports usage errors.
import { Command } from 'commander';
import { registerAudit } from './commands/audit.js';
import { registerConsole } from './commands/console.js';
import { registerScan } from './commands/scan.js';
import { registerEvents } from './commands/events.js';
import { registerKeys } from './commands/keys.js';
import { registerRoles } from './commands/roles.js';
import { registerIdentities } from './commands/identities.js';
import type { Context } from './context.js';

declare const __TILL_CLI_VERSION__: string;

export const EXIT_CODES_HELP = `
Exit codes:
  0  done (or nothing to do)
  1  refused or failed: bad input, unknown key, not confirmed, a Redis error, a change
     not confirmed by --replicas (NOT_REPLICATED: made on the primary, not yet safe)
  2  usage error: unknown command or option, missing argument, no Redis URL
  3  Redis unreachable`;

const ENVIRONMENT_HELP = `
Environment:
  REDIS_URL    Redis to use when --redis is not given
  TILL_PEPPER  the pepper your services give createTill(): new keys are hashed with it
  TILL_PREFIX  prefix of new keys when --prefix is not given (default: till)
  TILL_ACTOR   who makes changes, as the audit trail records it (default: cli:<user name>)
  TILL_REPLICAS, TILL_REPLICA_TIMEOUT
               --replicas and --replica-timeout when not given: a change that fewer replicas
               confirm in time exits 1 with NOT_REPLICATED (made on the primary, not yet safe)
  TILL_DEBUG   set to 1 to print the stack of an unexpected error

Output is a table or a list of fields for people; --json prints one JSON document on stdout
for scripts. Prompts and notes go to stderr. Revoke, rotate and disable ask first; with no
terminal on stdin they refuse unless --yes is given.`;

export function createProgram(ctx: Context): Command {
  const program = new Command('till');
  program
    .description('Till: create, inspect, audit and retire API keys kept in Redis.')
    .version(typeof __TILL_CLI_VERSION__ === 'string' ? __TILL_CLI_VERSION__ : '0.0.0', '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .option('--redis <url>', 'Redis URL, like redis://127.0.0.1:6379 (default: $REDIS_URL)')
    .option('--namespace <ns>', "prefix of Till's Redis keys, as given to RedisStore", 'till:')
    .option('--replicas <n>', 'replicas that must confirm every change before it counts as done (default: $TILL_REPLICAS, else 0)')
    .option('--replica-timeout <duration>', 'how long to wait for them, like 2s (default: $TILL_REPLICA_TIMEOUT, else 2s)')
    // Settings below are inherited by every subcommand made with .command().
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.print(text),
      writeErr: (text) => ctx.note(text),
      outputError: (text, write) => write(text.replace(/^error: /, 'till: ')),
    })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    .addHelpText('after', ENVIRONMENT_HELP)
    .addHelpText('afterAll', EXIT_CODES_HELP);
  registerKeys(program, ctx);
  registerEvents(program, ctx);
  registerAudit(program, ctx);
  registerScan(program, ctx);
  registerRoles(program, ctx);
  registerIdentities(program, ctx);
  registerConsole(program, ctx);
  return program;
}
