// The dashboard's files, built with the package (`dist/dashboard`) and served by the console itself:
// nothing is fetched from elsewhere at run time, and the Content-Security-Policy allows only them.
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Scripts, styles and API calls from this origin only; no inline script or style, no frames, no forms elsewhere. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
};

/** The files, read once: the dashboard is a handful of small files. */
let files: Map<string, Buffer> | null = null;

function here(): string {
  // ESM and CommonJS builds alike (tsup shims import.meta.url in the CommonJS build).
  return dirname(fileURLToPath(import.meta.url));
}

function load(): Map<string, Buffer> {
  if (files !== null) return files;
  const out = new Map<string, Buffer>();
  // Next to the built entry (dist/dashboard), or the package's build when running from its sources (tests).
  for (const dir of [join(here(), 'dashboard'), join(here(), '..', 'dist', 'dashboard')]) {
    try {
      for (const name of ['index.html', 'app.js', 'app.css']) out.set(name, readFileSync(join(dir, name)));
      break;
    } catch {
      out.clear();
    }
  }
  files = out;
  return out;
}

/** Serves a dashboard file for GET and HEAD; false when the path names none. */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, segments: readonly string[]): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const name = segments.length === 0 ? 'index.html' : segments.length === 1 ? segments[0]! : '';
  const body = load().get(name);
  if (body === undefined) return false;
  res.statusCode = 200;
  res.setHeader('content-type', TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream');
  res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('cache-control', name === 'index.html' ? 'no-cache' : 'public, max-age=300');
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
