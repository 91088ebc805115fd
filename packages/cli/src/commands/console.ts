// `till console`: the console's API and dashboard on a port of their own, over the Redis the keys are in.
import { createServer } from 'node:http';
import type { Command } from 'commander';
import { createTill } from '@till/core';
import { replicationOf, type ConnectionOptions } from '../connection.js';
import type { Context } from '../context.js';
import { failed, plainMessage } from '../errors.js';

interface ConsoleCommandOptions {
  port: string;
  host: string;
}

const EXAMPLES = `
Examples:
  $ till console --redis redis://127.0.0.1:6379 --port 4000
  $ till keys create --name "console admin" --scope till:admin --expires 30d

Sign in with a key holding till:admin (changes) or till:read (looks only), made with
\`till keys create\`. It listens on 127.0.0.1 unless --host says otherwise: put it behind
TLS before exposing it, since the admin key travels in every request.`;

export function registerConsole(program: Command, ctx: Context): void {
  program
    .command('console')
    .description('serve the admin API and web dashboard for the keys in Redis, until Ctrl+C')
    .option('--port <port>', 'port to listen on', '4000')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .addHelpText('after', EXAMPLES)
    .action(async (options: ConsoleCommandOptions, command: Command) => {
      if (!/^\d{1,5}$/.test(options.port) || Number(options.port) > 65535) throw failed(`--port must be a port number from 0 to 65535`);
      if (!/^[\w.:-]{1,255}$/.test(options.host)) throw failed('--host must be a host name or an IP address');
      // The session checks the URL and that Redis answers, failing fast with exit 3 when it does not.
      await ctx.keys(command);
      const globals = command.optsWithGlobals<ConnectionOptions>();
      // Loaded only for this command: the other commands never pay for the console.
      const [{ createConsole }, { Redis }, { RedisStore }] = await Promise.all([import('@till/console'), import('ioredis'), import('@till/core/redis')]);
      const warn = (message: string) => void process.stderr.write(`till: warning: ${plainMessage(message)}\n`);
      // A connection of its own, with ioredis's usual reconnecting: the session's gives up after two
      // seconds, right for one command and wrong for a server that runs for days.
      const client = new Redis((globals.redis ?? ctx.env.REDIS_URL) as string, { maxRetriesPerRequest: 1 });
      client.on('error', (error: Error) => warn(`Redis: ${error.message}`));
      // A Till of its own: it verifies the keys that sign in, so their refusals go to the audit trail
      // and their use is counted, which the CLI's Till (auditEvents: false) does not do.
      const till = createTill({
        store: new RedisStore({ client, namespace: globals.namespace, closeClient: true, ...replicationOf(globals, ctx.env), logger: { warn, error: warn } }),
        closeStore: true,
        ...(ctx.env.TILL_PEPPER ? { pepper: ctx.env.TILL_PEPPER } : {}),
        logger: { warn, error: warn },
      });
      const console = createConsole({ till });
      const server = createServer((req, res) => void console.handle(req, res, req.url ?? '/'));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(Number(options.port), options.host, () => resolve());
        });
      } catch (error) {
        await till.close();
        throw failed(`cannot listen on ${options.host}:${options.port}: ${error instanceof Error ? error.message : String(error)}`);
      }
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : Number(options.port);
      const host = options.host.includes(':') ? `[${options.host}]` : options.host;
      ctx.print(`till console: http://${host}:${port}/ (sign in with a key holding till:admin or till:read; Ctrl+C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await till.close();
    });
}
