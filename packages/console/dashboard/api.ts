// Talking to the console's API: the admin key from sessionStorage in the Authorization header of every
// call (never a cookie, never the URL), problem answers as errors, and the events stream read with
// fetch (EventSource cannot send a header).
const STORAGE = 'till-console-key';

export const session = {
  key: (): string | null => sessionStorage.getItem(STORAGE),
  set: (key: string): void => sessionStorage.setItem(STORAGE, key),
  clear: (): void => sessionStorage.removeItem(STORAGE),
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the key stops working (revoked, expired): back to the sign-in. */
let onSignedOut: () => void = () => {};
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler;
}

export async function api<T>(method: string, path: string, body?: unknown, key = session.key()): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`api/${path}`, {
    method,
    headers,
    ...(body !== undefined && { body: JSON.stringify(body) }),
    cache: 'no-store',
    credentials: 'omit',
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    json = null;
  }
  if (!res.ok) {
    const problem = (json ?? {}) as { code?: string; detail?: string; title?: string };
    if (res.status === 401 && key === session.key()) onSignedOut();
    throw new ApiError(res.status, problem.code ?? String(res.status), problem.detail ?? problem.title ?? `HTTP ${res.status}`);
  }
  return json as T;
}

export interface AuditEntry {
  id: string;
  at: number;
  type: string;
  keyId: string | null;
  ownerId: string | null;
  actor: string | null;
  reason: string | null;
  code?: string;
  ip?: string;
  userAgent?: string;
  detail?: string;
  count?: number;
}

/**
 * Follows the events stream until `signal` aborts, reconnecting after a drop with the last id seen
 * (Last-Event-ID), as EventSource would.
 */
export async function follow(
  query: string,
  onEntry: (entry: AuditEntry) => void,
  onState: (state: 'live' | 'reconnecting') => void,
  signal: AbortSignal,
): Promise<void> {
  let last: string | null = null;
  while (!signal.aborted) {
    try {
      const key = session.key();
      if (key === null) return;
      const headers: Record<string, string> = { authorization: `Bearer ${key}`, accept: 'text/event-stream' };
      if (last !== null) headers['last-event-id'] = last;
      const res = await fetch(`api/events${query}`, { headers, signal, cache: 'no-store', credentials: 'omit' });
      // 401: the key stopped working; 403: it lost its scope (the stream ends with signed-out for both).
      if (res.status === 401 || res.status === 403) return onSignedOut();
      if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}`);
      onState('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data = '';
          let id: string | null = null;
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
            else if (line.startsWith('id: ')) id = line.slice(4);
          }
          if (id !== null) last = id;
          if (event === 'audit') onEntry(JSON.parse(data) as AuditEntry);
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    onState('reconnecting');
    await new Promise((r) => setTimeout(r, 2000));
  }
}
