// SSE, HTTP streaming and polling: cursors, resume, NDJSON framing, 204 + header cursor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeClient, record, pub, encodeCursor } from '../testing/fakes.mjs';

const cursorOf = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

// ---------------------------------------------------------------------------------------------
// SSE

test('sse: one EventSource for all subscriptions, with since cursor, name and token', async () => {
  const { sb, es } = makeClient({ transports: 'sse', name: 'Zoë', token: 'T' });
  sb.subscribe('a', { since: { epoch: 'EA', offset: 5 } });
  sb.subscribe('b');
  sb.connect();
  assert.equal(es.length, 1);
  const q = es[0].query();
  assert.equal(new URL(es[0].url).pathname, '/sse');
  assert.deepEqual(q.getAll('channel'), ['a', 'b']);
  assert.deepEqual(cursorOf(q.get('since')), { a: ['EA', 5] });
  assert.equal(q.get('name'), 'Zoë');
  assert.equal(q.get('token'), 'T');
});

test('sse: events reach subscriptions; on error the SDK reopens itself with its own cursor', async () => {
  const { sb, es, clock } = makeClient({ transports: 'sse' });
  const a = sb.subscribe('a');
  const b = sb.subscribe('b');
  const la = record(a);
  const lb = record(b);
  sb.connect();
  es[0].emit('connected', { client: 'c1' });
  assert.equal(sb.clientId, 'c1');
  es[0].emit('subscribed', { channel: 'a', epoch: 'EA', offset: 2, recovered: false, replayed: 0 }, 'cur1');
  es[0].emit('subscribed', { channel: 'b', epoch: 'EB', offset: 0, recovered: false, replayed: 0 }, 'cur2');
  es[0].emit('message', pub('a', 3, { t: 1 }, 'EA'), 'cur3');
  es[0].emit('message', { channel: 'b', offset: 1, epoch: 'EB', b64: 'AAE' }, 'cur4');
  es[0].emit('join', { channel: 'a', client: 'c2', user: 'u2', name: 'Bo' });
  es[0].emit('leave', { channel: 'a', client: 'c2', user: 'u2' });
  assert.deepEqual(la.pubs.map((p) => p.data), [{ t: 1 }]);
  assert.deepEqual(lb.pubs[0].data, new Uint8Array([0, 1]));
  assert.equal(lb.pubs[0].binary, true);
  assert.equal(la.joins[0].name, 'Bo');
  assert.equal(la.leaves.length, 1);
  es[0].fail();
  assert.equal(es[0].closed, true, 'the browser is not left to reconnect on its own');
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  assert.equal(es.length, 2);
  assert.deepEqual(cursorOf(es[1].query().get('since')), { a: ['EA', 3], b: ['EB', 1] });
  es[1].emit('connected', { client: 'c3' });
  es[1].emit('subscribed', { channel: 'a', epoch: 'EA', offset: 3, recovered: true, replayed: 1 });
  es[1].emit('message', pub('a', 3, { t: 1 }, 'EA')); // replayed twice by a confused server
  es[1].emit('message', pub('a', 4, { t: 2 }, 'EA'));
  assert.deepEqual(la.pubs.map((p) => p.offset), [3, 4]);
  assert.deepEqual(la.subscribed.map((e) => e.recovered), [false, true]);
});

test('sse: a change of subscriptions reopens the stream with the current cursor, batched', async () => {
  const { sb, es } = makeClient({ transports: 'sse' });
  const a = sb.subscribe('a');
  sb.connect();
  es[0].emit('connected', { client: 'c1' });
  es[0].emit('subscribed', { channel: 'a', epoch: 'EA', offset: 9, recovered: true, replayed: 0 });
  sb.subscribe('b');
  sb.subscribe('c');
  await Promise.resolve();
  assert.equal(es.length, 2, 'two subscribe() calls, one reopen');
  assert.equal(es[0].closed, true);
  assert.deepEqual(es[1].query().getAll('channel'), ['a', 'b', 'c']);
  assert.deepEqual(cursorOf(es[1].query().get('since')), { a: ['EA', 9] });
  assert.equal(sb.state, 'connected', 'a planned reopen is not a disconnection');
  es[1].emit('connected', { client: 'c2' });
  a.unsubscribe();
  await Promise.resolve();
  assert.deepEqual(es[2].query().getAll('channel'), ['b', 'c']);
});

test('sse: disconnect event codes: 3xxx reconnect, 35xx stop', async () => {
  const { sb, es, clock } = makeClient({ transports: 'sse' });
  sb.subscribe('a');
  sb.connect();
  es[0].emit('connected', { client: 'c1' });
  es[0].emit('disconnect', { code: 3002, reason: 'slow consumer' });
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  es[1].emit('connected', { client: 'c1' });
  es[1].emit('disconnect', { code: 3501, reason: 'unauthorized' });
  assert.equal(sb.state, 'closed');
  await clock.advance(60000);
  assert.equal(es.length, 2);
});

// ---------------------------------------------------------------------------------------------
// HTTP streaming

test('stream: NDJSON lines split across chunks; the cursor of the next request comes from the positions', async () => {
  const { sb, http, clock } = makeClient({ transports: 'stream', token: 'TK', name: 'n' });
  const a = sb.subscribe('a');
  const la = record(a);
  sb.connect();
  assert.equal(http.length, 1);
  assert.equal(new URL(http[0].url).pathname, '/stream');
  assert.equal(http[0].headers.Authorization, 'Bearer TK');
  assert.equal(http[0].query().get('token'), null, 'no token in the URL');
  assert.equal(http[0].query().get('name'), 'n');
  const body = http[0].stream();
  const text = [
    '{"connected":{"client":"c1"}}',
    '{"subscribed":{"channel":"a","epoch":"E","offset":0,"recovered":false,"replayed":0}}',
    '{"pub":{"channel":"a","offset":1,"epoch":"E","data":{"msg":"größe"}}}',
    '{"ping":{}}',
    '{"pub":{"channel":"a","offset":2,"epoch":"E","b64":"/w"}}',
    '{"join":{"channel":"a","client":"c2","user":"u"}}',
  ].join('\n') + '\n';
  const bytes = new TextEncoder().encode(text);
  // Awkward chunking: 7 bytes at a time (splits lines and the UTF-8 'ö' and 'ß').
  for (let i = 0; i < bytes.length; i += 7) body.write(bytes.slice(i, i + 7));
  await clock.advance(0);
  assert.equal(sb.state, 'connected');
  assert.equal(sb.clientId, 'c1');
  assert.deepEqual(la.pubs.map((p) => p.offset), [1, 2]);
  assert.equal(la.pubs[0].data.msg, 'größe');
  assert.deepEqual(la.pubs[1].data, new Uint8Array([255]));
  assert.equal(la.joins.length, 1);
  // A line cut by the end of the stream still counts; then the stream is reopened from offset 3.
  body.write('{"pub":{"channel":"a","offset":3,"epoch":"E","data":3}}');
  body.end();
  await clock.advance(0);
  assert.deepEqual(la.pubs.map((p) => p.offset), [1, 2, 3]);
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  assert.equal(http.length, 2);
  assert.deepEqual(cursorOf(http[1].query().get('since')), { a: ['E', 3] });
});

test('stream: an HTTP error with a refusal code stops; a 5xx retries', async () => {
  const { sb, http, clock } = makeClient({ transports: 'stream' });
  sb.subscribe('a');
  sb.connect();
  http[0].respond(503, { error: { code: 109, message: 'broker unavailable' } });
  await clock.advance(0);
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  http[1].respond(403, { error: { code: 103, message: 'permission denied' } });
  await clock.advance(0);
  assert.equal(sb.state, 'closed');
});

// ---------------------------------------------------------------------------------------------
// polling

test('long-poll: 204 gives the cursor in the header; the next request waits and sends it back', async () => {
  const { sb, http, clock } = makeClient({ transports: 'long-poll', longPollWait: 20 });
  const a = sb.subscribe('a');
  const la = record(a);
  sb.connect();
  assert.equal(new URL(http[0].url).pathname, '/poll');
  assert.equal(http[0].query().get('since'), null);
  const cursor = encodeCursor({ a: ['E1', 41] });
  http[0].respond(204, null, { 'Switchboard-Cursor': cursor });
  await clock.advance(0);
  assert.equal(sb.state, 'connected');
  assert.equal(sb.transport, 'long-poll');
  assert.deepEqual(la.subscribed, [{ channel: 'a', epoch: 'E1', offset: 41, recovered: false, replayed: 0 }]);
  assert.deepEqual(a.position, { epoch: 'E1', offset: 41 });
  assert.equal(http.length, 2);
  assert.equal(http[1].query().get('wait'), '20');
  assert.deepEqual(cursorOf(http[1].query().get('since')), { a: ['E1', 41] });
  // 200 delivers; "more": true asks again at once.
  http[1].respond(200, {
    publications: [pub('a', 42, 1, 'E1'), pub('a', 43, 2, 'E1')],
    cursor: encodeCursor({ a: ['E1', 43] }),
    more: true,
  });
  await clock.advance(0);
  assert.deepEqual(la.pubs.map((p) => p.offset), [42, 43]);
  assert.deepEqual(cursorOf(http[2].query().get('since')), { a: ['E1', 43] });
  // A 204 after a long wait: nothing new, same cursor, ask again.
  http[2].respond(204, null, { 'Switchboard-Cursor': encodeCursor({ a: ['E1', 43] }) });
  await clock.advance(0);
  assert.equal(http.length, 4);
  assert.equal(la.subscribed.length, 1, 'no news, no event');
});

test('long-poll: "recovered": false announces the loss before the new publications', async () => {
  const { sb, http, clock } = makeClient({ transports: 'long-poll' });
  const a = sb.subscribe('a', { since: { epoch: 'OLD', offset: 7 } });
  const la = record(a);
  const order = [];
  a.on('subscribed', (e) => order.push(`subscribed:${e.recovered}`));
  a.on('publication', (p) => order.push(`pub:${p.offset}`));
  sb.connect();
  assert.deepEqual(cursorOf(http[0].query().get('since')), { a: ['OLD', 7] });
  http[0].respond(200, {
    publications: [pub('a', 3, 'x', 'NEW')],
    cursor: encodeCursor({ a: ['NEW', 3] }),
    recovered: false,
    unrecovered: ['a'],
  });
  await clock.advance(0);
  assert.deepEqual(order, ['subscribed:false', 'pub:3']);
  assert.deepEqual(la.subscribed[0], { channel: 'a', epoch: 'NEW', offset: 2, recovered: false, replayed: 0 });
  assert.deepEqual(a.position, { epoch: 'NEW', offset: 3 });
});

test('long-poll: a resumed subscription that was honoured says recovered: true; a dropped poll resumes', async () => {
  const { sb, http, clock } = makeClient({ transports: 'long-poll' });
  const a = sb.subscribe('a', { since: { epoch: 'E', offset: 7 } });
  const la = record(a);
  sb.connect();
  http[0].respond(200, { publications: [pub('a', 8, 'x', 'E')], cursor: encodeCursor({ a: ['E', 8] }) });
  await clock.advance(0);
  assert.deepEqual(la.subscribed, [{ channel: 'a', epoch: 'E', offset: 7, recovered: true, replayed: 1 }]);
  http[1].fail();
  await clock.advance(0);
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  assert.deepEqual(cursorOf(http[2].query().get('since')), { a: ['E', 8] });
  // The server says the history moved on while we were away (204, cursor ahead of us).
  http[2].respond(204, null, { 'Switchboard-Cursor': encodeCursor({ a: ['E', 20] }) });
  await clock.advance(0);
  assert.deepEqual(la.subscribed.at(-1), { channel: 'a', epoch: 'E', offset: 20, recovered: false, replayed: 0 });
});

test('long-poll: a request that hangs past wait + timeout is abandoned and retried', async () => {
  const { sb, http, clock } = makeClient({ transports: 'long-poll', longPollWait: 25, timeoutMs: 5000 });
  sb.subscribe('a');
  sb.connect();
  http[0].respond(204, null, { 'Switchboard-Cursor': encodeCursor({ a: ['E', 1] }) });
  await clock.advance(0);
  await clock.advance(29999);
  assert.equal(http[1].aborted, false);
  await clock.advance(1);
  assert.equal(http[1].aborted, true);
  assert.equal(sb.state, 'connecting');
});

test('poll: short polling asks every pollIntervalMs, without wait', async () => {
  const { sb, http, clock } = makeClient({ transports: 'poll', pollIntervalMs: 1500 });
  sb.subscribe('a');
  sb.connect();
  http[0].respond(204, null, { 'Switchboard-Cursor': encodeCursor({ a: ['E', 1] }) });
  await clock.advance(0);
  assert.equal(http.length, 1);
  await clock.advance(1499);
  assert.equal(http.length, 1);
  await clock.advance(1);
  assert.equal(http.length, 2);
  assert.equal(http[1].query().get('wait'), null);
  http[1].respond(200, { publications: [pub('a', 2, 'x', 'E')], cursor: encodeCursor({ a: ['E', 2] }) });
  await clock.advance(1500);
  assert.deepEqual(cursorOf(http[2].query().get('since')), { a: ['E', 2] });
});

test('http API: off the WebSocket, publish/presence/history use /api with the Bearer token', async () => {
  const { sb, http, clock } = makeClient({ transports: 'poll', token: 'JWT' });
  const p = sb.publish('chat:lobby', { name: 'a', text: 'hi' }, { idempotencyKey: 'k' });
  await clock.advance(0);
  assert.equal(http[0].method, 'POST');
  assert.equal(http[0].url, 'http://sb.test/api/publish');
  assert.equal(http[0].headers.Authorization, 'Bearer JWT');
  assert.deepEqual(http[0].json(), { channel: 'chat:lobby', idempotency_key: 'k', data: { name: 'a', text: 'hi' } });
  http[0].respond(200, { offset: 5, epoch: 'E' });
  assert.deepEqual(await p, { offset: 5, epoch: 'E' });

  const b = sb.publish('bin', new Uint8Array([1, 2, 3]));
  await clock.advance(0);
  assert.deepEqual(http[1].json(), { channel: 'bin', b64: 'AQID' });
  http[1].respond(403, { error: { code: 103, message: 'permission denied' } });
  await assert.rejects(b, (err) => err.code === 103 && err.status === 403);

  const h = sb.history('a', { since: { epoch: 'E', offset: 3 }, limit: 10, reverse: false });
  await clock.advance(0);
  const q = http[2].query();
  assert.equal(new URL(http[2].url).pathname, '/api/history');
  assert.equal(q.get('since'), 'E:3');
  assert.equal(q.get('limit'), '10');
  assert.equal(q.get('reverse'), 'false');
  http[2].respond(200, { epoch: 'E', offset: 4, publications: [pub('a', 4, 'x', 'E')] });
  assert.equal((await h).publications[0].offset, 4);

  const pr = sb.presence('chat:lobby');
  await clock.advance(0);
  assert.equal(http[3].url, 'http://sb.test/api/presence?channel=chat%3Alobby');
  http[3].respond(200, { clients: {} });
  assert.deepEqual(await pr, { clients: {} });
});

test('one-way: with no subscriptions nothing is opened; the first subscribe opens the stream', async () => {
  const { sb, es } = makeClient({ transports: 'sse' });
  sb.connect();
  assert.equal(sb.state, 'connected');
  assert.equal(es.length, 0);
  sb.subscribe('a');
  await Promise.resolve();
  assert.equal(es.length, 1);
  assert.deepEqual(es[0].query().getAll('channel'), ['a']);
  assert.equal(es[0].query().get('since'), null);
});

test('long-poll: a change of subscriptions abandons the waiting request and asks at once with the new set', async () => {
  const { sb, http, clock } = makeClient({ transports: 'long-poll' });
  const a = sb.subscribe('a');
  sb.connect();
  http[0].respond(204, null, { 'Switchboard-Cursor': encodeCursor({ a: ['E', 4] }) });
  await clock.advance(0);
  assert.equal(http[1].query().get('wait'), '25');
  sb.subscribe('b');
  a.unsubscribe();
  await clock.advance(0);
  assert.equal(http[1].aborted, true);
  assert.equal(http.length, 3);
  assert.deepEqual(http[2].query().getAll('channel'), ['b']);
  assert.equal(sb.state, 'connected');
});

test('stream: 401 with getToken fetches a new token and retries; a 3501 stop is undone by connect() with a fresh token', async () => {
  let n = 0;
  const { sb, http, clock } = makeClient({ transports: 'stream', getToken: () => `t${++n}` });
  sb.subscribe('a');
  sb.connect();
  await clock.advance(0);
  assert.equal(http[0].headers.Authorization, 'Bearer t1');
  http[0].respond(401, { error: { code: 101, message: 'token expired' } });
  await clock.advance(100);
  assert.equal(http[1].headers.Authorization, 'Bearer t2');
  const body = http[1].stream();
  body.write('{"connected":{"client":"c"}}\n{"disconnect":{"code":3501,"reason":"unauthorized"}}\n');
  await clock.advance(0);
  assert.equal(sb.state, 'closed');
  sb.connect();
  await clock.advance(0);
  assert.equal(http[2].headers.Authorization, 'Bearer t3');
});

test('sse: subscription tokens ride as sub_token; an expiring token reopens the stream with a new one from the cursor', async () => {
  let n = 0;
  const { sb, es, clock } = makeClient({ transports: 'sse', getToken: async () => { n += 1; return `T${n}`; } });
  sb.subscribe('vip:a', { getToken: async () => 'SUBA' });
  sb.subscribe('open');
  sb.connect();
  await clock.advance(0);
  assert.equal(es.length, 1);
  const q = es[0].query();
  assert.deepEqual(q.getAll('sub_token'), ['SUBA']);
  assert.equal(q.get('token'), 'T1');
  es[0].emit('connected', { client: 'c1', expires: Math.floor(Date.now() / 1000) + 3600 });
  es[0].emit('message', pub('open', 3));
  es[0].emit('expiring', { expires: 123 });
  await clock.advance(0);
  assert.equal(es.length, 2, 'reopened before the 3005 close');
  const q2 = es[1].query();
  assert.equal(q2.get('token'), 'T2');
  assert.deepEqual(cursorOf(q2.get('since')), { open: ['E1', 3] });
  assert.deepEqual(q2.getAll('sub_token'), ['SUBA']);
});
