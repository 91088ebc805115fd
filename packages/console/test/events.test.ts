// The events stream: Server-Sent Events of the trail's security entries, filtered, resumable, for
// read-only keys too, never for others, and never with a key or a digest in it.
import { request, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@till/testkit/wait';
import { type Harness, startHarness, storedDigests } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

interface Stream {
  status: number;
  headers: IncomingMessage['headers'];
  events: Array<{ id?: string; event?: string; data: string }>;
  raw: string;
  close(): void;
  onEnd(listener: () => void): void;
}

/** Opens the stream and parses its events as they come. */
function open(query: string, key: string | null, headers: Record<string, string> = {}): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(`${h.base}/console/api/events${query}`, { headers: { ...headers, ...(key !== null && { 'x-api-key': key }) } }, (res) => {
      const stream: Stream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        raw: '',
        close: () => req.destroy(),
        onEnd: (l) => res.once('end', l),
      };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        stream.raw += chunk;
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: Stream['events'][number] = { data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) event.id = line.slice(4);
            else if (line.startsWith('event: ')) event.event = line.slice(7);
            else if (line.startsWith('data: ')) event.data += line.slice(6);
          }
          if (event.event !== undefined) stream.events.push(event);
        }
      });
      res.on('error', () => {});
      resolve(stream);
    });
    req.on('error', (e) => (e.message.includes('aborted') || e.message.includes('socket hang up') ? undefined : reject(e)));
    req.end();
  });
}

const audits = (s: Stream) => s.events.filter((e) => e.event === 'audit').map((e) => JSON.parse(e.data));

describe('events stream', () => {
  it('refuses without a key (401) and with a key that holds neither scope (403)', async () => {
    const none = await open('', null);
    expect(none.status).toBe(401);
    none.close();
    const outsider = await open('', h.outsider);
    expect(outsider.status).toBe(403);
    outsider.close();
  });

  it('streams a refusal of a revoked key to a read-only key, filtered by key, and never a key or digest', async () => {
    const { key, record } = await h.till.keys.create({ name: 'watched', scopes: ['orders:read'] });
    const other = await h.till.keys.create({ name: 'other', scopes: ['orders:read'] });
    const stream = await open(`?keyId=${record.id}`, h.reader);
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers['cache-control']).toBe('no-store');
    const all = await open('', h.reader);
    await h.till.keys.revoke(other.record.id);
    await h.till.keys.revoke(record.id);
    expect((await h.call('GET', '/orders', { key: other.key })).status).toBe(401);
    expect((await h.call('GET', '/orders', { key })).status).toBe(401);
    expect(await waitFor(() => audits(stream).some((e) => e.keyId === record.id && e.code === 'REVOKED' && e.type === 'key.misused'), 10_000)).toBe(true);
    expect(await waitFor(() => audits(all).some((e) => e.keyId === other.record.id), 10_000)).toBe(true);
    // The filtered stream had the other key's refusal in the same trail, and left it out.
    expect(audits(stream).every((e) => e.keyId === record.id)).toBe(true);
    // Changes are not security events: the revocations are not on a stream that did not ask for them.
    expect(audits(all).some((e) => e.type === 'key.revoked')).toBe(false);
    for (const s of [stream, all]) {
      s.close();
      expect(s.raw).not.toContain(key);
      expect(s.raw).not.toContain(other.key);
      for (const digest of await storedDigests(h.till)) expect(s.raw).not.toContain(digest);
    }
  });

  it('streams changes when asked, and resumes after Last-Event-ID', async () => {
    const stream = await open('?types=key.created,key.disabled', h.reader);
    const { record } = await h.till.keys.create({ name: 'streamed', scopes: ['a'] });
    await h.till.keys.disable(record.id);
    expect(await waitFor(() => audits(stream).filter((e) => e.keyId === record.id).length === 2, 10_000)).toBe(true);
    const first = stream.events.find((e) => e.event === 'audit' && JSON.parse(e.data).type === 'key.created' && JSON.parse(e.data).keyId === record.id)!;
    stream.close();
    const resumed = await open('?types=key.created,key.disabled', h.reader, { 'last-event-id': first.id! });
    expect(await waitFor(() => audits(resumed).some((e) => e.keyId === record.id && e.type === 'key.disabled'), 10_000)).toBe(true);
    expect(audits(resumed).some((e) => e.keyId === record.id && e.type === 'key.created')).toBe(false);
    resumed.close();
  });

  it('ends when the key that opened it is revoked or loses its scope', async () => {
    for (const change of ['revoke', 'narrow'] as const) {
      const { key, record } = await h.till.keys.create({ name: `watcher ${change}`, scopes: ['till:read'] });
      const stream = await open('', key);
      expect(stream.status).toBe(200);
      const ended = new Promise<void>((resolve) => stream.onEnd(resolve));
      if (change === 'revoke') await h.till.keys.revoke(record.id);
      else await h.till.keys.update(record.id, { scopes: ['orders:read'] });
      await ended;
      expect(stream.events.some((e) => e.event === 'signed-out')).toBe(true);
    }
  });

  it('replays from `since`, and filters by outcome code', async () => {
    const { key, record } = await h.till.keys.create({ name: 'past', scopes: ['orders:read'] });
    const since = Date.now() - 1;
    await h.till.keys.disable(record.id);
    expect((await h.call('GET', '/orders', { key })).status).toBe(401);
    // Written to the trail before the stream opens: only `since` brings it.
    expect(await waitFor(async () => (await h.till.keys.audit({ keyId: record.id, types: ['key.misused'] })).entries.length === 1, 10_000)).toBe(true);
    const stream = await open(`?since=${since}&code=DISABLED`, h.reader);
    expect(await waitFor(() => audits(stream).some((e) => e.keyId === record.id), 10_000)).toBe(true);
    expect(audits(stream).every((e) => e.code === 'DISABLED')).toBe(true);
    stream.close();
  });
});
