// @till/console/express: the console as Express middleware, `app.use('/console', tillConsole({ till }))`.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createConsole, type ConsoleOptions } from './console.js';
import { redirectToSlash } from './respond.js';

/**
 * The console under the path it is mounted at. Express strips the mount path from `req.url`, which is
 * what the console routes on. A body that an app-wide `express.json()` already read is taken as read.
 */
export function tillConsole(options: ConsoleOptions): RequestHandler {
  const console = createConsole(options);
  return (req: Request, res: Response, next: NextFunction): void => {
    const [path = '', search = ''] = req.originalUrl.split(/(?=\?)/, 2);
    if (path === req.baseUrl && path !== '' && req.method === 'GET') return redirectToSlash(res, path, search);
    const body = req.readableEnded && req.body !== undefined ? { parsed: req.body as unknown } : undefined;
    console.handle(req, res, req.url, body, req.ip).catch(next);
  };
}

export type { ConsoleOptions } from './console.js';
