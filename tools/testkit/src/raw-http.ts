// A minimal HTTP/1.1 client over raw sockets, for requests no HTTP client would send (bytes that are not
// UTF-8, control characters, repeated or oversized headers, pipelining, smuggling attempts). Keeps each
// connection alive for as long as the server does, one exchange at a time per connection, with a bounded
// number of connections; every exchange has a deadline, so a server that hangs is an answer too.
import { connect, type Socket } from 'node:net';

export interface RawRequest {
  /** A label the results are counted under. */
  readonly kind: string;
  readonly bytes: Buffer;
  /** Responses expected to this write (more than one: pipelined requests). Default 1. */
  readonly responses?: number;
}

export interface RawResponse {
  /** HTTP status, or 0 when the connection ended (or the deadline passed) before a full response. */
  readonly status: number;
  /** The problem+json `code` of a 4xx/5xx answer, when there is one. */
  readonly code: string | null;
  /** Why there is no status: `reset`, `closed`, `timeout`, or the socket error code. */
  readonly error: string | null;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CODE = /"code":"([A-Z_]+)"/;

interface Parsed {
  response: RawResponse;
  /** The server said it would close the connection after this response. */
  close: boolean;
  /** Bytes the response took. */
  length: number;
}

/**
 * One response from the front of `buffer`, or null if it is not all there yet. `ended`: the server has
 * closed the connection, so a response without a length (HTTP/1.0, Node's own error answers) is complete.
 */
function parseResponse(buffer: Buffer, ended: boolean): Parsed | null {
  const end = buffer.indexOf(HEAD_END);
  if (end < 0) return null;
  const head = buffer.toString('latin1', 0, end);
  const status = Number(head.slice(9, 12));
  let contentLength = -1;
  let chunked = false;
  let close = head.startsWith('HTTP/1.0');
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === 'content-length') contentLength = Number(value);
    else if (name === 'transfer-encoding') chunked = value.includes('chunked');
    else if (name === 'connection') close = value.includes('close') ? true : value.includes('keep-alive') ? false : close;
  }
  const bodyStart = end + 4;
  let body: Buffer;
  let length: number;
  if (chunked) {
    const parts: Buffer[] = [];
    let at = bodyStart;
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const size = parseInt(buffer.toString('latin1', at, lineEnd), 16);
      if (buffer.length < lineEnd + 2 + size + 2) return null;
      parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
      if (size === 0) break;
    }
    body = Buffer.concat(parts);
    length = at;
  } else if (contentLength >= 0) {
    if (buffer.length < bodyStart + contentLength) return null;
    body = buffer.subarray(bodyStart, bodyStart + contentLength);
    length = bodyStart + contentLength;
  } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    body = Buffer.alloc(0);
    length = bodyStart;
  } else {
    // No length: the body runs to the end of the connection (HTTP/1.0 answers, Node's own 400 and 431).
    if (!ended) return null;
    body = buffer.subarray(bodyStart);
    length = buffer.length;
    close = true;
  }
  const match = status >= 400 && body.length < 4096 ? CODE.exec(body.toString('latin1')) : null;
  return { response: { status, code: match ? match[1]! : null, error: null }, close, length };
}

class Connection {
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: { want: number; got: RawResponse[]; resolve: (r: RawResponse[]) => void; timer: NodeJS.Timeout } | null = null;
  closed = false;
  /** The server announced it closes after the last response. */
  closing = false;
  private lastError: string | null = null;

  constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.lastError = e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : (e.code ?? e.message);
    });
    socket.on('close', () => {
      this.closed = true;
      this.finish(this.lastError ?? 'closed');
    });
  }

  private drain(ended = false): void {
    const w = this.waiting;
    if (w === null) return;
    while (w.got.length < w.want) {
      const parsed = parseResponse(this.buffer, ended);
      if (parsed === null) return;
      this.buffer = this.buffer.subarray(parsed.length);
      w.got.push(parsed.response);
      if (parsed.close) this.closing = true;
    }
    clearTimeout(w.timer);
    this.waiting = null;
    w.resolve(w.got);
  }

  /** Completes the exchange under way with status 0 for every response missing. */
  private finish(error: string): void {
    const w = this.waiting;
    if (w === null) return;
    // A response the server wrote before closing still counts.
    this.drain(this.closed);
    if (this.waiting === null) return;
    clearTimeout(w.timer);
    this.waiting = null;
    while (w.got.length < w.want) w.got.push({ status: 0, code: null, error });
    w.resolve(w.got);
  }

  exchange(bytes: Buffer, want: number, timeoutMs: number): Promise<RawResponse[]> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.finish('timeout');
        this.destroy();
      }, timeoutMs);
      this.waiting = { want, got: [], resolve, timer };
      if (this.closed) return this.finish('closed');
      this.socket.write(bytes);
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function open(port: number, localAddress: string | undefined): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', ...(localAddress !== undefined && { localAddress }) });
    socket.once('connect', () => resolve(new Connection(socket)));
    socket.once('error', reject);
  });
}

export interface RawRunOptions {
  port: number;
  /** Source address of every connection (any 127.x.y.z on Linux). */
  localAddress?: string;
  /** Connections used at once. */
  concurrency: number;
  /** Deadline of one exchange (ms). Default 10,000. */
  timeoutMs?: number;
}

/**
 * Sends every request `next()` hands out until it returns null, over at most `concurrency` connections,
 * and calls `record` with each request and its responses. A connection the server closes is replaced.
 */
export async function runRaw(
  options: RawRunOptions,
  next: () => RawRequest | null,
  record: (request: RawRequest, responses: RawResponse[]) => void,
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const lane = async () => {
    let conn: Connection | null = null;
    try {
      for (let request = next(); request !== null; request = next()) {
        if (conn === null || conn.closed || conn.closing) {
          conn?.destroy();
          try {
            conn = await open(options.port, options.localAddress);
          } catch (error) {
            conn = null;
            record(request, [{ status: 0, code: null, error: `connect: ${(error as NodeJS.ErrnoException).code ?? String(error)}` }]);
            continue;
          }
        }
        record(request, await conn.exchange(request.bytes, request.responses ?? 1, timeoutMs));
      }
    } finally {
      conn?.destroy();
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
}
