// Writing answers on a Node response: JSON, RFC 9457 problems, and the headers every answer carries.
import type { ServerResponse } from 'node:http';
import { PROBLEM_CONTENT_TYPE, type ProblemResponse } from '@till/core/http';

/** Headers on every answer of the API: nothing cached, nothing sniffed, nothing framed. */
const API_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** A refusal of the console's own (bad input, unknown key, a state that forbids the change). */
export class ConsoleProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(detail);
  }
}

export const badRequest = (detail: string): ConsoleProblem => new ConsoleProblem(400, 'INVALID_REQUEST', 'Bad request', detail);
export const notFound = (detail: string): ConsoleProblem => new ConsoleProblem(404, 'NOT_FOUND', 'Not found', detail);

function writeHead(res: ServerResponse, status: number, headers: Readonly<Record<string, string>>): void {
  res.statusCode = status;
  for (const [name, value] of Object.entries(API_HEADERS)) res.setHeader(name, value);
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  writeHead(res, status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

export function sendProblem(res: ServerResponse, problem: ConsoleProblem): void {
  if (res.headersSent) return void res.end();
  writeHead(res, problem.status, { 'content-type': PROBLEM_CONTENT_TYPE, ...problem.headers });
  res.end(
    JSON.stringify({
      type: `urn:till:problem:${problem.code.toLowerCase().replace(/_/g, '-')}`,
      title: problem.title,
      status: problem.status,
      detail: problem.detail,
      code: problem.code,
    }),
  );
}

/** A refusal of Till's own middleware steps (no key, a bad key, a missing scope), as the adapters send it. */
export function sendRefusal(res: ServerResponse, response: ProblemResponse): void {
  if (res.headersSent) return void res.end();
  writeHead(res, response.status, response.headers);
  res.end(JSON.stringify(response.body));
}

/** Headers of the whole app's answers that are not the API's: the static dashboard files. */
export { API_HEADERS };

/** The dashboard asked for at the mount point without its slash: its files are named relative to `<mount>/`. */
export function redirectToSlash(res: ServerResponse, path: string, search: string): void {
  res.statusCode = 308;
  // Only the last segment: a relative location keeps whatever prefix a proxy in front added.
  res.setHeader('location', `${path.slice(path.lastIndexOf('/') + 1)}/${search}`);
  res.setHeader('cache-control', 'no-store');
  res.end();
}
