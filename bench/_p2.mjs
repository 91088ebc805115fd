import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { createTill, silentLogger } from '@till/core';
import { apiKeyAuth } from '@till/express';
const till = createTill({ logger: silentLogger });
const made = await till.keys.create({ name: 'p', scopes: ['a:b'] });
await till.verify(made.key);
const fn = apiKeyAuth({ till });
const key = Buffer.from(made.key).toString('latin1');
function reqs(n) {
  const o = [];
  for (let i = 0; i < n; i++) {
    const q = new IncomingMessage(new Socket());
    const raw = ['Host', 'x', 'User-Agent', 'c/1', 'Accept', '*/*', 'Authorization', Buffer.from('Bearer ' + key).toString('latin1')];
    q._addHeaderLines(raw, raw.length);
    void q.headers;
    o.push([q, new ServerResponse(q)]);
  }
  return o;
}
let passed = 0;
const next = (e) => {
  if (e === undefined) passed++;
};
let tot = 0n;
for (let r = 0; r < 100; r++) {
  const b = reqs(2000);
  await new Promise((r) => setImmediate(r));
  const t = process.hrtime.bigint();
  for (const [q, s] of b) fn(q, s, next);
  tot += process.hrtime.bigint() - t;
}
console.log(Number(tot) / 200000, passed);
await till.close();
