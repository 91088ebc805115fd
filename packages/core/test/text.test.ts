// Hostile text: what may be stored as a name, owner, actor or reason, and how text is escaped where it is shown, logged or sent.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { consoleLogger, createTill, escapeText, loggerSink, safeJson, webhookSink, type Alert } from '@till/core';
import { isSafeText, safeText } from '../src/util/text.js';

/** Characters that make text read as other text or drive a terminal: bidi, zero-width, separators, C0, C1. */
const HOSTILE = [
  '\u202e',
  '\u202a',
  '\u202b',
  '\u202c',
  '\u202d',
  '\u2066',
  '\u2067',
  '\u2068',
  '\u2069',
  '\u200e',
  '\u200f',
  '\u061c',
  '\u200b',
  '\u200c',
  '\u200d',
  '\ufeff',
  '\u00ad',
  '\u2028',
  '\u2029',
  '\u001b',
  '\n',
  '\r',
  '\u0000',
  '\u007f',
  ...Array.from({ length: 32 }, (_, i) => String.fromCharCode(0x80 + i)),
  '\ud800',
  '\udfff',
];
/** Characters RAW in a document: nothing above may be. */
const RAW = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

describe('isSafeText, safeText, escapeText, safeJson', () => {
  it('refuse every control, C1, format (bidi, zero-width) and separator character; keep letters of every script', () => {
    for (const c of HOSTILE) {
      expect(isSafeText(`ad${c}min`), `U+${c.charCodeAt(0).toString(16)}`).toBe(false);
      expect(() => safeText(`ad${c}min`, 'name')).toThrow(/name must be/);
      expect(RAW.test(escapeText(`ad${c}min`))).toBe(false);
      expect(escapeText(`ad${c}min`)).toBe(`ad\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}min`);
    }
    for (const ok of ['admin', 'Zoë Ørsted', '日本語', 'مرحبا', 'שלום', '🔑 key', 'a-b_c.d e']) {
      expect(isSafeText(ok)).toBe(true);
      expect(escapeText(ok)).toBe(ok);
    }
  });

  it('safeJson writes them as \\u escapes and parses back to the same value', () => {
    const value = { name: `admin${HOSTILE.join('')}`, nested: ['\u202eevil', { k: '\u0085' }] };
    const text = safeJson(value, 2);
    // Newlines of the layout only.
    expect(RAW.test(text.replace(/\n/g, ''))).toBe(false);
    expect(RAW.test(safeJson(value))).toBe(false);
    // Lone surrogates come back as themselves: JSON.parse reads the escapes.
    expect(JSON.parse(text)).toEqual(value);
    // JSON.stringify alone leaves C1 and bidi raw: the reason safeJson exists.
    expect(RAW.test(JSON.stringify(value))).toBe(true);
  });
});

describe('keys: names, owners, actors and reasons with hostile characters are refused', () => {
  it('create, update, revoke and the actor', async () => {
    const till = createTill();
    try {
      for (const c of ['\u202e', '\u2066', '\u200e', '\u061c', '\u2028', '\u0085', '\u200b']) {
        await expect(till.keys.create({ name: `ad${c}min`, scopes: [] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(till.keys.create({ name: 'ok', ownerId: `team${c}`, scopes: [] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        const { record } = await till.keys.create({ name: 'ok', scopes: [] });
        await expect(till.keys.update(record.id, { name: `x${c}` })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(till.keys.revoke(record.id, { reason: `leak${c}` })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        await expect(till.keys.revoke(record.id, { actor: `ops${c}` })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect((await till.keys.get(record.id))?.revokedAt).toBeNull();
      }
      // Names in any script are still fine.
      expect((await till.keys.create({ name: 'rapport trimestriel – Zoë', ownerId: 'équipe-7', scopes: [] })).record.name).toBe('rapport trimestriel – Zoë');
    } finally {
      await till.close();
    }
  });
});

describe('logged and sent text is escaped', () => {
  const servers: ReturnType<typeof createServer>[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  const alert = (message: string): Alert =>
    Object.freeze({ id: 'a1', rule: 'ip-failures', at: 0, subject: '10.0.0.1\u0085', ip: '10.0.0.1\u0085\u202e', count: 1, message }) as Alert;

  it('loggerSink and the console logger write one line with no raw control, C1 or bidi character', () => {
    const lines: string[] = [];
    loggerSink({ warn: (m) => void lines.push(m), error: (m) => void lines.push(m) })(alert('from 10.0.0.1\u0085\u001b[2J\n\u202eforged line'));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    consoleLogger.warn('store said: \u001b[31mred\u001b[0m\nsecond line \u202e');
    consoleLogger.error('\u0085\u2028');
    lines.push(...warn.mock.calls.map((c) => String(c[0])), ...error.mock.calls.map((c) => String(c[0])));
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(RAW.test(line), JSON.stringify(line)).toBe(false);
    expect(lines[0]).toContain('\\u0085\\u001b[2J\\u000a\\u202eforged line');
  });

  it('a webhook body has no raw C1 or bidi character, and parses back to the alert', async () => {
    const bodies: string[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        bodies.push(body);
        res.statusCode = 204;
        res.end();
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sink = webhookSink({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, secret: 'whsec-0123456789abcdef', retries: 0 });
    const sent = alert('tried from 10.0.0.1\u0085\u202e');
    await sink(sent);
    expect(bodies).toHaveLength(1);
    expect(RAW.test(bodies[0]!)).toBe(false);
    expect(JSON.parse(bodies[0]!).alert).toEqual(sent);
  });
});
