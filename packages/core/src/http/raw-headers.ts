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
  // Which name lengths a key header can have, indexed by length: one array read rules out most headers.
  const lengths = new Uint8Array(Math.max(...[...names].map((n) => n.length)) + 1);
  for (const n of names) lengths[n.length] = 1;
  const lowerNames = [...names];
  // How clients usually spell them (`authorization`, `Authorization`, `AUTHORIZATION`): one `===` each,
  // where the comparison below reads and folds every character.
  const spellings = lowerNames.flatMap((n) => [n, n.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase()), n.toUpperCase()]);
  // Compared in place, ignoring ASCII case: no lowercase copy of every header name per request.
  const isKeyHeader = (name: unknown): name is string => {
    if (typeof name !== 'string' || lengths[name.length] !== 1) return false;
    for (let s = 0; s < spellings.length; s++) if (name === spellings[s]) return true;
    for (let n = 0; n < lowerNames.length; n++) {
      const target = lowerNames[n]!;
      if (target.length !== name.length) continue;
      let i = 0;
      for (; i < target.length; i++) {
        let c = name.charCodeAt(i);
        if (c >= 65 && c <= 90) c += 32;
        if (c !== target.charCodeAt(i)) break;
      }
      if (i === target.length) return true;
    }
    return false;
  };

  // The slow path, for the rare request with a key header more than once.
  const collect = (headers: HeaderBag, raw: readonly unknown[]): HeaderBag => {
    const seen = new Map<string, string[]>();
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i];
      const value = raw[i + 1];
      if (!isKeyHeader(name) || typeof value !== 'string') continue;
      const lower = name.toLowerCase();
      const values = seen.get(lower);
      if (values) values.push(value);
      else seen.set(lower, [value]);
    }
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

  // The hot path allocates nothing: it only counts key headers, and most requests carry one.
  return (req) => {
    const headers = req.headers;
    const raw = req.rawHeaders;
    if (!Array.isArray(raw)) return headers;
    let count = 0;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (isKeyHeader(raw[i]) && ++count > 1) return collect(headers, raw);
    }
    return headers;
  };
}
