// The IPC side of the test's worker processes (drill apps, revocation workers): send to the parent
// while connected, and answer its requests by type with a reply carrying the request's id.
import { isTillError } from '@till/core';

/** A request from the parent: `{ type, req, ...payload }`; each handler types the payload it takes. */
type Handler = (message: never) => object | Promise<object>;

/** Sends to the parent; dropped once the parent is gone. */
export function send(message: object): void {
  if (process.connected) process.send?.(message);
}

/**
 * Answers `{ type, req, ... }` messages with `handlers[type](message)`: `{ type: 'reply', req, ok: true,
 * ...result }`, or `ok: false` with the error's message (and its code when it is a TillError).
 */
export function answerRequests(handlers: Record<string, Handler>): void {
  process.on('message', async (message: { type?: string; req?: number } | null | undefined) => {
    const handler = handlers[String(message?.type)];
    try {
      if (!handler) throw new Error(`unknown message type ${message?.type}`);
      send({ type: 'reply', req: message?.req, ok: true, ...(await handler(message as never)) });
    } catch (error) {
      send({
        type: 'reply',
        req: message?.req,
        ok: false,
        error: error instanceof Error ? error.message : String(error),
        code: isTillError(error) ? error.code : null,
      });
    }
  });
}
