// Express middleware called as a plain function: thousands of requests in milliseconds, without sockets.
import type { RequestHandler } from 'express';

/**
 * A caller of `middleware` that resolves with the status it answered (200 when it passed the request
 * on, 500 when it passed an error on). `headers` go in lowercase; the raw headers follow them, as Node would give them.
 */
export function middlewareCaller(middleware: RequestHandler) {
  return (ip: string, headers: Record<string, string>) =>
    new Promise<number>((resolve) => {
      const req = { headers, rawHeaders: Object.entries(headers).flat(), ip } as never;
      let status = 200;
      const res = {
        status(code: number) {
          status = code;
          return res;
        },
        setHeader() {},
        getHeader() {
          return undefined;
        },
        end() {
          resolve(status);
        },
      };
      // Passed on: 200; passed an error (as Express would take it to its error handler): 500.
      middleware(req, res as never, (error?: unknown) => resolve(error === undefined ? 200 : 500));
    });
}
