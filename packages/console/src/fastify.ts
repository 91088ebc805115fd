// @till/console/fastify: the console as a Fastify plugin, `app.register(tillConsole, { till, prefix: '/console' })`.
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { createConsole, type ConsoleOptions } from './console.js';
import { MAX_BODY } from './input.js';
import { redirectToSlash } from './respond.js';

/**
 * Registers the console under the plugin's prefix, in a scope of its own: its bodies are read as text
 * and parsed by the console (so bad JSON gets the console's problem+json 400), and it answers on Node's
 * response itself (`reply.hijack()`).
 */
export const tillConsole: FastifyPluginAsync<ConsoleOptions> = async (fastify: FastifyInstance, options: ConsoleOptions) => {
  const { till, dashboard, eventsPollInterval, realm } = options;
  const console = createConsole({
    till,
    ...(dashboard !== undefined && { dashboard }),
    ...(eventsPollInterval !== undefined && { eventsPollInterval }),
    ...(realm !== undefined && { realm }),
  });
  const prefix = fastify.prefix;
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_BODY }, (_req, body, done) => done(null, body));
  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    reply.hijack();
    const raw = request.raw.url ?? '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const search = q < 0 ? '' : raw.slice(q);
    // The path as sent, below the prefix: Fastify's params are decoded already, the console decodes itself.
    if (path === prefix && prefix !== '' && request.method === 'GET') return redirectToSlash(reply.raw, path, search);
    const url = (path.startsWith(prefix) ? path.slice(prefix.length) : path) + search;
    await console.handle(request.raw, reply.raw, url, typeof request.body === 'string' ? { raw: request.body } : undefined, request.ip);
  };
  fastify.all('/', handler);
  fastify.all('/*', handler);
};

export type { ConsoleOptions } from './console.js';
