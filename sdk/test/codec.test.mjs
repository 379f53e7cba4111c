import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeCursor, decodeCursor, backoffDelay, createLineSplitter, bytesToBase64, base64ToBytes,
} from '../switchboard.js';

test('cursor: URL-safe base64 without padding of {channel: [epoch, offset]}', () => {
  const positions = { 'chat:lobby': ['k3Jd9aQe', 7], news: ['Pq81LmZx', 120] };
  const cursor = encodeCursor(positions);
  assert.match(cursor, /^[A-Za-z0-9_-]+$/);
  const json = Buffer.from(cursor, 'base64url').toString('utf8');
  assert.deepEqual(JSON.parse(json), positions);
  // The protocol.md example starts this way.
  assert.ok(encodeCursor({ 'chat:lobby': ['k3Jd9aQe', 7] }).startsWith('eyJjaGF0OmxvYmJ5Ijpb'));
});

test('cursor: encodes {epoch, offset} objects and round-trips through decode', () => {
  const cursor = encodeCursor({ a: { epoch: 'E1', offset: 3 }, 'b/c=d@e.f': { epoch: 'é?>~', offset: 0 } });
  assert.deepEqual(decodeCursor(cursor), { a: { epoch: 'E1', offset: 3 }, 'b/c=d@e.f': { epoch: 'é?>~', offset: 0 } });
});

test('cursor: characters that need the URL-safe alphabet never show + / =', () => {
  // Chosen so that standard base64 would contain '+', '/' and padding.
  for (let i = 0; i < 64; i++) {
    const c = encodeCursor({ [`ch${'?'.repeat(i % 5)}`]: [`e>>>${i}`, i * 997] });
    assert.doesNotMatch(c, /[+/=]/);
    assert.equal(decodeCursor(c)[`ch${'?'.repeat(i % 5)}`].offset, i * 997);
  }
});

test('cursor: one that does not decode throws code 107', () => {
  for (const bad of ['%%%', 'bm90IGpzb24', encodeCursor({}).slice(0, 1), Buffer.from('[1,2]').toString('base64url'),
    Buffer.from('{"a":["e","7"]}').toString('base64url')]) {
    assert.throws(() => decodeCursor(bad), (err) => err.code === 107, bad);
  }
});

test('base64 helpers handle every byte value and padded or unpadded input', () => {
  const bytes = new Uint8Array(256).map((_, i) => i);
  const b64 = bytesToBase64(bytes);
  assert.equal(b64, Buffer.from(bytes).toString('base64'));
  assert.deepEqual(base64ToBytes(b64), bytes);
  assert.deepEqual(base64ToBytes(Buffer.from([1, 2]).toString('base64url')), new Uint8Array([1, 2]));
});

test('backoff: full jitter within [0, min(max, min*2^n))', () => {
  const opts = { minMs: 200, maxMs: 10000 };
  assert.equal(backoffDelay(0, opts, () => 0), 0);
  assert.equal(backoffDelay(0, opts, () => 0.999999), 199);
  assert.equal(backoffDelay(1, opts, () => 0.5), 200);
  assert.equal(backoffDelay(3, opts, () => 0.5), 800);
  assert.equal(backoffDelay(5, opts, () => 0.999999), 6399);
  for (const n of [6, 7, 20, 1000]) assert.equal(backoffDelay(n, opts, () => 0.999999), 9999, `cap at ${n}`);
  // Jitter: many draws spread over the whole range, never above the cap.
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < 2000; i++) {
    const d = backoffDelay(4, opts);
    lo = Math.min(lo, d);
    hi = Math.max(hi, d);
    assert.ok(d >= 0 && d < 3200);
  }
  assert.ok(lo < 400 && hi > 2800, `spread ${lo}..${hi}`);
});

test('NDJSON splitter: lines split anywhere across chunks, including inside UTF-8 characters', () => {
  const lines = [];
  const s = createLineSplitter((l) => lines.push(JSON.parse(l)));
  const text = '{"connected":{"client":"c1"}}\n{"pub":{"channel":"a","offset":1,"epoch":"E","data":"héllo €"}}\r\n\n{"ping":{}}\n{"tail":1}';
  const bytes = new TextEncoder().encode(text);
  // Every single-byte chunking, then the rest split at each possible point.
  for (let i = 0; i < bytes.length; i++) s.push(bytes.subarray(i, i + 1));
  s.end();
  assert.deepEqual(lines, [
    { connected: { client: 'c1' } },
    { pub: { channel: 'a', offset: 1, epoch: 'E', data: 'héllo €' } },
    { ping: {} },
    { tail: 1 },
  ]);
  for (let cut = 1; cut < bytes.length; cut++) {
    const got = [];
    const s2 = createLineSplitter((l) => got.push(l));
    s2.push(bytes.subarray(0, cut));
    s2.push(bytes.subarray(cut));
    s2.end();
    assert.equal(got.length, 4, `cut at ${cut}`);
    assert.equal(JSON.parse(got[1]).pub.data, 'héllo €');
  }
});
