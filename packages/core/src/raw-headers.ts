// Key headers as the client sent them: a repeated key header stays a list, so two keys are caught.
import { DEFAULT_SOURCES, type HeaderBag, type KeySource } from './extract.js';

/**
 * Node keeps only the first `Authorization` header and joins repeated `X-API-Key` headers with
 * ", ", so `req.headers` hides a request that carries two keys (or turns one key sent twice into
 * junk). The returned function gives the extractor every repeated key header as the list of its
 * values, read from `rawHeaders`; the extractor refuses a list whose values differ. A value the
 * application replaced in `req.headers` is left as it is.
 */
/** What the readers need of a Node `IncomingMessage`. */
export interface RequestHeaders {
  readonly headers: HeaderBag;
  readonly rawHeaders?: unknown;
}

export function keyHeaderReader(sources: readonly KeySource[] | undefined): (req: RequestHeaders) => HeaderBag {
  const names = new Set((sources ?? DEFAULT_SOURCES).map((s) => s.header.toLowerCase()));
  const lengths = new Set([...names].map((n) => n.length));
  return (req) => {
    const headers = req.headers;
    const raw = req.rawHeaders;
    if (!Array.isArray(raw)) return headers;
    let seen: Map<string, string[]> | undefined;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name: unknown = raw[i];
      const value: unknown = raw[i + 1];
      if (typeof name !== 'string' || typeof value !== 'string' || !lengths.has(name.length)) continue;
      const lower = name.toLowerCase();
      if (!names.has(lower)) continue;
      seen ??= new Map();
      const values = seen.get(lower);
      if (values) values.push(value);
      else seen.set(lower, [value]);
    }
    if (seen === undefined) return headers;
    let bag: Record<string, string | readonly string[] | undefined> | undefined;
    for (const [name, values] of seen) {
      if (values.length < 2) continue;
      const folded = headers[name];
      // Only what Node folded: first value kept, or all joined. Anything else the application set.
      if (folded !== values[0] && folded !== values.join(', ') && folded !== values.join('; ')) continue;
      bag ??= { ...headers };
      bag[name] = values;
    }
    return bag ?? headers;
  };
}
