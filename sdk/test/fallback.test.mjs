import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeClient, record } from '../testing/fakes.mjs';

test('fallback: a WebSocket that never opens counts as failed after openTimeoutMs; SSE is next', async () => {
  const { sb, ws, es, clock, events } = makeClient({ openTimeoutMs: 3000 });
  sb.subscribe('news');
  sb.connect();
  assert.equal(ws.length, 1);
  assert.equal(es.length, 0);
  await clock.advance(2999);
  assert.equal(es.length, 0);
  await clock.advance(1);
  assert.equal(ws[0].closedWith, 1000, 'the hanging socket is abandoned');
  assert.equal(es.length, 1, 'SSE tried at once, without a backoff delay');
  es[0].emit('connected', { client: 'c1' });
  assert.equal(sb.state, 'connected');
  assert.equal(sb.transport, 'sse');
  assert.deepEqual(events, ['state:connecting', 'error:0:false', 'transport:sse', 'state:connected']);
});

test('fallback: the whole order, each failing transport handing over to the next', async () => {
  const { sb, ws, es, http, clock } = makeClient();
  sb.subscribe('news');
  sb.connect();
  ws[0].serverClose(1006); // refused before it opened
  await clock.advance(0);
  es[0].fail();
  await clock.advance(0);
  assert.equal(http.length, 1);
  assert.match(http[0].url, /^http:\/\/sb\.test\/stream\?/);
  http[0].fail();
  await clock.advance(0);
  assert.match(http[1].url, /^http:\/\/sb\.test\/poll\?/);
  assert.ok(!http[1].query().has('wait'), 'first long poll does not wait');
  http[1].respond(502, { error: { code: 100, message: 'bad gateway' } });
  await clock.advance(0);
  assert.match(http[2].url, /\/poll\?/);
  http[2].respond(204, null, { 'Switchboard-Cursor': 'e30' });
  await clock.advance(0);
  assert.equal(sb.transport, 'poll');
  assert.equal(sb.state, 'connected');
});

test('fallback: once a transport worked, reconnects start with it', async () => {
  const { sb, ws, es, clock } = makeClient();
  sb.subscribe('news');
  sb.connect();
  ws[0].serverClose(1006);
  await clock.advance(0);
  es[0].emit('connected', { client: 'c1' });
  assert.equal(sb.transport, 'sse');
  es[0].fail();
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  assert.equal(ws.length, 1, 'WebSocket not tried again first');
  assert.equal(es.length, 2);
  es[1].emit('connected', { client: 'c2' });
  assert.equal(sb.state, 'connected');
  // If the working one fails before opening, the rest of the order is tried after it.
  es[1].fail();
  await clock.advance(100);
  es[2].fail();
  await clock.advance(0);
  assert.equal(ws.length, 2);
});

test('backoff: rounds that all fail wait longer each time, with jitter, up to maxMs', async () => {
  const draws = [0.5, 0.99, 0.25, 0.99, 0.99, 0.99, 0.99, 0.1];
  let i = 0;
  const { sb, ws, clock } = makeClient({
    transports: 'websocket', backoff: { minMs: 100, maxMs: 1000 }, random: () => draws[i++ % draws.length],
  });
  sb.connect();
  const delays = [];
  for (let n = 0; n < 8; n++) {
    const before = clock.now;
    ws.at(-1).serverClose(1006);
    const count = ws.length;
    while (ws.length === count) await clock.advance(1);
    delays.push(clock.now - before);
  }
  // Caps: 100, 200, 400, 800, 1000, 1000, 1000, 1000 (ms).
  assert.deepEqual(delays, [50, 198, 100, 792, 990, 990, 990, 100]);
  // A connection that opens resets the schedule.
  ws.at(-1).handshake();
  ws.at(-1).serverClose(3000);
  const before = clock.now;
  const count = ws.length;
  while (ws.length === count) await clock.advance(1);
  assert.equal(clock.now - before, 50);
});

test('fallback: a transport the platform lacks is skipped', async () => {
  const { sb, es, clock, events } = makeClient({ WebSocket: null });
  sb.subscribe('x');
  sb.connect();
  await clock.advance(0);
  assert.equal(es.length, 1);
  assert.deepEqual(events, ['state:connecting', 'error:0:false']);
});

test('setTransports: reconnects with the chosen transport and resumes from the positions', async () => {
  const { sb, ws, es, clock } = makeClient();
  const sub = sb.subscribe('demo:ticker');
  const log = record(sub);
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'demo:ticker', epoch: 'E', offset: 3, recovered: false, replayed: 0 });
  ws[0].receive({ pub: { channel: 'demo:ticker', offset: 4, epoch: 'E', data: 1 } });
  sb.setTransports('sse');
  assert.equal(ws[0].closedWith, 1000);
  assert.equal(es.length, 1);
  const since = es[0].query().get('since');
  assert.deepEqual(JSON.parse(Buffer.from(since, 'base64url').toString()), { 'demo:ticker': ['E', 4] });
  es[0].emit('connected', { client: 'c' });
  assert.equal(sb.transport, 'sse');
  assert.deepEqual(sb.transports, ['sse']);
  assert.equal(log.pubs.length, 1);
  void clock;
});
