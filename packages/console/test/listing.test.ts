// Listing past the store's page of 500: a search that pages with the console's cursor sees every
// matching key once, in the store's order, across store pages, searched and filtered by owner.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
  const batch: Array<Promise<unknown>> = [];
  for (let i = 0; i < 1200; i++) {
    batch.push(h.till.keys.create({ name: `bulk-${i}${i % 7 === 0 ? '-seven' : ''}`, scopes: ['bulk:read'], ownerId: i % 2 === 0 ? 'even' : 'odd' }));
    if (batch.length === 100) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}, 60_000);
afterAll(async () => {
  await h?.close();
});

async function pages(query: string): Promise<{ names: string[]; calls: number }> {
  const names: string[] = [];
  let cursor: string | undefined;
  let calls = 0;
  do {
    const answer = await h.call('GET', `/console/api/keys?${query}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(answer.status).toBe(200);
    names.push(...answer.json.keys.map((k: { name: string }) => k.name));
    cursor = answer.json.cursor;
    calls++;
  } while (cursor !== undefined);
  return { names, calls };
}

async function storeOrder(): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await h.till.keys.list({ limit: 1000, ...(cursor !== undefined && { cursor }) });
    out.push(...page.keys.map((k) => k.name));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

describe('listing many keys', () => {
  it('pages every key once, in the store order, with and without a search', async () => {
    const order = await storeOrder();
    const all = await pages('limit=200');
    expect(all.names).toEqual(order);
    expect(all.calls).toBe(Math.ceil(order.length / 200));
    const seven = await pages('q=-seven&limit=30');
    expect(seven.names).toEqual(order.filter((n) => n.endsWith('-seven')));
    expect(new Set(seven.names).size).toBe(172);
    const odd = await pages('ownerId=odd&q=bulk&limit=150');
    expect(odd.names).toEqual(order.filter((n) => /^bulk-\d*[13579](?:-seven)?$/.test(n)));
  });
});
