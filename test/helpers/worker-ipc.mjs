// The IPC side of the test's worker processes (drill apps, revocation workers): send to the parent
// while connected, and answer its requests by type with a reply carrying the request's id.
import { isTillError } from '@till/core';

/** Sends to the parent; dropped once the parent is gone. */
export function send(message) {
  if (process.connected) process.send(message);
}

/**
 * Answers `{ type, req, ... }` messages with `handlers[type](message)`: `{ type: 'reply', req, ok: true,
 * ...result }`, or `ok: false` with the error's message (and its code when it is a TillError).
 */
export function answerRequests(handlers) {
  process.on('message', async (message) => {
    const handler = handlers[message?.type];
    try {
      if (!handler) throw new Error(`unknown message type ${message?.type}`);
      send({ type: 'reply', req: message.req, ok: true, ...(await handler(message)) });
    } catch (error) {
      send({ type: 'reply', req: message.req, ok: false, error: error instanceof Error ? error.message : String(error), code: isTillError(error) ? error.code : null });
    }
  });
}
