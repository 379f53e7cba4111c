import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeClient, record, pub, settle } from '../testing/fakes.mjs';

const WS_ONLY = { transports: 'websocket' };

test('websocket: subprotocol, connect command first with token and name, then subscriptions', async () => {
  const { sb, ws, events } = makeClient({ ...WS_ONLY, token: 'T0K', name: 'alice', url: 'https://sb.test/' });
  const sub = sb.subscribe('chat:lobby');
  sb.connect();
  assert.equal(sb.state, 'connecting');
  assert.equal(ws.length, 1);
  assert.equal(ws[0].url, 'wss://sb.test/ws');
  assert.equal(ws[0].protocol, 'switchboard.v1.json');
  ws[0].accept();
  const frames = ws[0].frames();
  assert.equal(frames.length, 1, 'nothing before the connect reply');
  assert.deepEqual(frames[0], { id: frames[0].id, connect: { token: 'T0K', name: 'alice' } });
  assert.ok(frames[0].id > 0);
  ws[0].reply('connect', { client: 'cid-1', version: '1', ping: 25 });
  assert.equal(sb.state, 'connected');
  assert.equal(sb.transport, 'websocket');
  assert.equal(sb.clientId, 'cid-1');
  assert.deepEqual(events, ['state:connecting', 'transport:websocket', 'state:connected']);
  const [s] = ws[0].commands('subscribe');
  assert.deepEqual(s.subscribe, { channel: 'chat:lobby' });
  assert.notEqual(s.id, frames[0].id);
  const log = record(sub);
  ws[0].reply('subscribe', { channel: 'chat:lobby', epoch: 'E1', offset: 4, recovered: false, replayed: 0 });
  assert.deepEqual(log.subscribed, [{ channel: 'chat:lobby', epoch: 'E1', offset: 4, recovered: false, replayed: 0 }]);
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 4 });
});

test('websocket: a reconnect presents the last session token; disconnect() forgets it', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  sb.connect();
  ws[0].handshake({ client: 'cid-1', session: 'cid-1.tag' });
  assert.deepEqual(ws[0].commands('connect')[0].connect, {}, 'nothing to present the first time');
  ws[0].serverClose(3000, 'shutdown');
  await clock.advance(1000);
  assert.equal(ws.length, 2);
  ws[1].handshake({ client: 'cid-1', session: 'cid-1.tag2' });
  assert.deepEqual(ws[1].commands('connect')[0].connect, { session: 'cid-1.tag' });
  assert.equal(sb.clientId, 'cid-1');
  ws[1].serverClose(3000, 'shutdown');
  await clock.advance(1000);
  ws[2].accept();
  assert.deepEqual(ws[2].commands('connect')[0].connect, { session: 'cid-1.tag2' }, 'the newest token');
  sb.disconnect();
  sb.connect();
  ws[3].accept();
  assert.deepEqual(ws[3].commands('connect')[0].connect, {}, 'a deliberate disconnect ends the identity');
});

test('websocket: replies are matched to commands by id, in any order; errors reject with the code', async () => {
  const { sb, ws } = makeClient(WS_ONLY);
  sb.connect();
  ws[0].handshake();
  const p1 = sb.publish('a', { x: 1 }, { idempotencyKey: 'k1' });
  const p2 = sb.presence('a');
  const p3 = sb.history('a', { limit: 2, since: { epoch: 'E1', offset: 3 }, reverse: true });
  const p4 = sb.publish('forbidden', 1);
  const [pubCmd, pubCmd2] = ws[0].commands('publish');
  assert.deepEqual(pubCmd.publish, { channel: 'a', data: { x: 1 }, idempotency_key: 'k1' });
  assert.deepEqual(ws[0].commands('history')[0].history, { channel: 'a', since: { epoch: 'E1', offset: 3 }, limit: 2, reverse: true });
  // Answer in reverse order.
  ws[0].receive({ id: pubCmd2.id, error: { code: 103, message: 'permission denied' } });
  ws[0].reply('history', { epoch: 'E1', offset: 9, publications: [{ channel: 'a', offset: 5, epoch: 'E1', b64: 'AQID' }] });
  ws[0].reply('presence', { clients: { c1: { user: 'u1', name: 'Al' } } });
  ws[0].receive({ id: pubCmd.id, publish: { epoch: 'E1', offset: 10 } });
  await assert.rejects(p4, (err) => err.code === 103 && err.message === 'permission denied');
  assert.deepEqual(await p1, { epoch: 'E1', offset: 10 });
  assert.deepEqual(await p2, { clients: { c1: { user: 'u1', name: 'Al' } } });
  const h = await p3;
  assert.equal(h.offset, 9);
  assert.equal(h.publications[0].binary, true);
  assert.deepEqual(h.publications[0].data, new Uint8Array([1, 2, 3]));
  // A reply to an unknown id is ignored.
  ws[0].receive({ id: 999, publish: {} });
  assert.equal(sb.state, 'connected');
});

test('websocket: rpc sends method and data, resolves the result, rejects with the backend code', async () => {
  const { sb, ws } = makeClient(WS_ONLY);
  await assert.rejects(sb.rpc('orders.create', {}), (err) => err.code === 0, 'not connected: no command transport');
  sb.connect();
  ws[0].handshake();
  const ok = sb.rpc('orders.create', { sku: 7 });
  const none = sb.rpc('ping');
  const refused = sb.rpc('orders.cancel', 42);
  const [c1, c2, c3] = ws[0].commands('rpc');
  assert.deepEqual(c1.rpc, { method: 'orders.create', data: { sku: 7 } });
  assert.deepEqual(c2.rpc, { method: 'ping', data: null }, 'data defaults to null');
  ws[0].receive({ id: c3.id, error: { code: 4001, message: 'too late to cancel' } });
  ws[0].receive({ id: c1.id, rpc: { data: { order: 42 } } });
  ws[0].receive({ id: c2.id, rpc: { data: null } });
  assert.deepEqual(await ok, { order: 42 });
  assert.equal(await none, null);
  await assert.rejects(refused, (err) => err.code === 4001 && err.message === 'too late to cancel');
  await assert.rejects(sb.rpc(''), TypeError);
});

test('websocket: a command without a reply times out; the connection stays', async () => {
  const { sb, ws, clock } = makeClient({ ...WS_ONLY, timeoutMs: 3000 });
  sb.connect();
  ws[0].handshake();
  const p = sb.publish('a', 1);
  let settled = false;
  p.catch(() => {}).finally(() => { settled = true; });
  await clock.advance(2999);
  assert.equal(settled, false);
  await clock.advance(1);
  await assert.rejects(p, (err) => err.timeout === true && err.code === 0);
  // A late reply does not break anything.
  ws[0].reply('publish', { epoch: 'E', offset: 1 });
  assert.equal(sb.state, 'connected');
});

test('websocket: pending commands reject when the connection closes', async () => {
  const { sb, ws } = makeClient(WS_ONLY);
  sb.connect();
  ws[0].handshake();
  const p = sb.presence('a');
  ws[0].serverClose(1006);
  await assert.rejects(p, /connection closed/);
});

test('websocket: answers server pings with pongs; silence for ping+10 s is a dead connection', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  sb.connect();
  ws[0].handshake({ ping: 5 });
  ws[0].receive({ ping: {} });
  assert.deepEqual(ws[0].frames().at(-1), { pong: {} });
  // Pings keep the connection alive.
  for (let i = 0; i < 4; i++) {
    await clock.advance(14000);
    ws[0].receive({ ping: {} });
  }
  assert.equal(sb.state, 'connected');
  assert.equal(ws[0].frames().filter((f) => 'pong' in f).length, 5);
  await clock.advance(14999);
  assert.equal(sb.state, 'connected');
  await clock.advance(1);
  assert.equal(sb.state, 'connecting');
  assert.equal(ws[0].closedWith, 1000, 'the dead socket is closed');
  // And a new connection comes after the backoff delay (random 0.5 of 200 ms).
  await clock.advance(99);
  assert.equal(ws.length, 1);
  await clock.advance(1);
  assert.equal(ws.length, 2);
});

test('websocket: after a drop every subscription resumes from its own position', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  const a = sb.subscribe('a');
  const b = sb.subscribe('b');
  const c = sb.subscribe('c');
  const la = record(a);
  const lb = record(b);
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'a', epoch: 'EA', offset: 10, recovered: false, replayed: 0 }, 0);
  ws[0].reply('subscribe', { channel: 'b', epoch: 'EB', offset: 0, recovered: false, replayed: 0 }, 1);
  ws[0].reply('subscribe', { channel: 'c', epoch: 'EC', offset: 3, recovered: false, replayed: 0 }, 2);
  ws[0].receive({ pub: pub('a', 11, 'x', 'EA') });
  ws[0].receive({ pub: pub('a', 12, 'y', 'EA') });
  ws[0].receive({ pub: pub('b', 1, 'z', 'EB') });
  sb.dropConnection();
  assert.equal(sb.state, 'connecting');
  await clock.advance(100);
  assert.equal(ws.length, 2);
  ws[1].handshake({ client: 'c2' });
  const subs = ws[1].commands('subscribe').map((f) => f.subscribe);
  assert.deepEqual(subs, [
    { channel: 'a', since: { epoch: 'EA', offset: 12 } },
    { channel: 'b', since: { epoch: 'EB', offset: 1 } },
    { channel: 'c', since: { epoch: 'EC', offset: 3 } },
  ]);
  ws[1].reply('subscribe', { channel: 'a', epoch: 'EA', offset: 12, recovered: true, replayed: 1 }, 0);
  ws[1].receive({ pub: pub('a', 13, 'w', 'EA') });
  assert.deepEqual(la.pubs.map((p) => p.offset), [11, 12, 13]);
  assert.deepEqual(la.subscribed.map((e) => e.recovered), [false, true]);
  assert.equal(lb.pubs.length, 1);
});

test('websocket: publications already delivered are never delivered again', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  const a = sb.subscribe('a');
  const log = record(a);
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'a', epoch: 'E1', offset: 0, recovered: false, replayed: 0 });
  for (const o of [1, 2, 3, 2, 3, 1, 4]) ws[0].receive({ pub: pub('a', o) });
  assert.deepEqual(log.pubs.map((p) => p.offset), [1, 2, 3, 4]);
  sb.dropConnection();
  await clock.advance(100);
  ws[1].handshake();
  assert.deepEqual(ws[1].commands('subscribe')[0].subscribe.since, { epoch: 'E1', offset: 4 });
  // A server that replays too much still delivers each publication once.
  ws[1].reply('subscribe', { channel: 'a', epoch: 'E1', offset: 4, recovered: true, replayed: 2 });
  for (const o of [3, 4, 5, 6, 5]) ws[1].receive({ pub: pub('a', o) });
  assert.deepEqual(log.pubs.map((p) => p.offset), [1, 2, 3, 4, 5, 6]);
});

test('websocket: recovered:false is passed on, and the subscription continues from the new position', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  const a = sb.subscribe('a', { since: { epoch: 'OLD', offset: 50 } });
  const log = record(a);
  sb.connect();
  ws[0].handshake();
  assert.deepEqual(ws[0].commands('subscribe')[0].subscribe.since, { epoch: 'OLD', offset: 50 });
  ws[0].reply('subscribe', { channel: 'a', epoch: 'NEW', offset: 2, recovered: false, replayed: 0 });
  assert.deepEqual(log.subscribed, [{ channel: 'a', epoch: 'NEW', offset: 2, recovered: false, replayed: 0 }]);
  ws[0].receive({ pub: pub('a', 3, 'x', 'NEW') });
  assert.deepEqual(log.pubs.map((p) => [p.epoch, p.offset]), [['NEW', 3]]);
  // An epoch change nobody announced is announced by the SDK before the publication.
  ws[0].receive({ pub: pub('a', 1, 'y', 'NEWER') });
  assert.deepEqual(log.subscribed.at(-1), { channel: 'a', epoch: 'NEWER', offset: 0, recovered: false, replayed: 0 });
  assert.deepEqual(log.pubs.map((p) => [p.epoch, p.offset]), [['NEW', 3], ['NEWER', 1]]);
  void clock;
});

test('websocket: close codes 3000-3499, 1000-2999 and 4000-4499 reconnect; 3500-3999 and 4500-4999 stop with an error', async () => {
  for (const code of [3000, 3002, 3499, 1000, 1006, 1011, 4000, 4499]) {
    const { sb, ws, clock, events } = makeClient(WS_ONLY);
    sb.connect();
    ws[0].handshake();
    ws[0].serverClose(code, 'x');
    assert.equal(sb.state, 'connecting', `code ${code}`);
    assert.ok(!events.some((e) => e.startsWith('error')), `code ${code}`);
    await clock.advance(100);
    assert.equal(ws.length, 2, `code ${code} reconnects`);
  }
  for (const code of [3500, 3501, 3503, 3999, 4500, 4999]) {
    const { sb, ws, clock, events } = makeClient(WS_ONLY);
    const errors = [];
    sb.on('error', (e) => errors.push(e));
    sb.connect();
    ws[0].handshake();
    ws[0].serverClose(code, 'unauthorized');
    assert.equal(sb.state, 'closed', `code ${code}`);
    assert.deepEqual(errors, [{ code, message: 'unauthorized', fatal: true, transport: 'websocket' }]);
    await clock.advance(60000);
    assert.equal(ws.length, 1, `code ${code} does not reconnect`);
    assert.deepEqual(clock.pending(), []);
    assert.ok(events.includes('state:closed'));
  }
});

test('websocket: 3005 asks getToken for a fresh token before reconnecting', async () => {
  let n = 0;
  const { sb, ws, clock } = makeClient({ ...WS_ONLY, getToken: async () => `tok${++n}` });
  sb.connect();
  await settle();
  ws[0].accept();
  assert.equal(ws[0].commands('connect')[0].connect.token, 'tok1');
  ws[0].reply('connect', { client: 'c', ping: 25 });
  ws[0].serverClose(3001);
  await clock.advance(100);
  ws[1].accept();
  assert.equal(ws[1].commands('connect')[0].connect.token, 'tok1', 'no new token without 3005');
  ws[1].reply('connect', { client: 'c', ping: 25 });
  ws[1].serverClose(3005, 'token expired');
  await clock.advance(100);
  ws[2].accept();
  assert.equal(ws[2].commands('connect')[0].connect.token, 'tok2');
  assert.equal(n, 2);
});

test('websocket: binary publications arrive as Uint8Array; binary publish sends a header frame', async () => {
  const { sb, ws } = makeClient(WS_ONLY);
  const a = sb.subscribe('bin');
  const log = record(a);
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'bin', epoch: 'E', offset: 0, recovered: false, replayed: 0 });
  ws[0].receiveBinary({ pub: { channel: 'bin', offset: 1, epoch: 'E' } }, new Uint8Array([0, 10, 255]));
  assert.equal(log.pubs.length, 1);
  assert.equal(log.pubs[0].binary, true);
  assert.deepEqual(log.pubs[0].data, new Uint8Array([0, 10, 255]));
  ws[0].receive({ pub: { channel: 'bin', offset: 2, epoch: 'E', data: { j: 1 } } });
  assert.equal(log.pubs[1].binary, false);
  const p = sb.publish('bin', new Uint8Array([7, 10, 8]));
  const frame = ws[0].sent.at(-1);
  assert.ok(frame instanceof Uint8Array);
  const nl = frame.indexOf(10);
  const header = JSON.parse(new TextDecoder().decode(frame.subarray(0, nl)));
  assert.deepEqual(header.publish, { channel: 'bin' });
  assert.deepEqual([...frame.subarray(nl + 1)], [7, 10, 8]);
  ws[0].receive({ id: header.id, publish: { epoch: 'E', offset: 3 } });
  assert.deepEqual(await p, { epoch: 'E', offset: 3 });
});

test('websocket: join/leave reach the subscription; unsubscribe tells the server', async () => {
  const { sb, ws } = makeClient(WS_ONLY);
  const a = sb.subscribe('chat:x');
  const log = record(a);
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'chat:x', epoch: 'E', offset: 0, recovered: false, replayed: 0 });
  ws[0].receive({ join: { channel: 'chat:x', client: 'c9', user: 'bob', name: 'Bob' } });
  ws[0].receive({ leave: { channel: 'chat:x', client: 'c9', user: 'bob' } });
  assert.deepEqual(log.joins, [{ channel: 'chat:x', client: 'c9', user: 'bob', name: 'Bob' }]);
  assert.equal(log.leaves.length, 1);
  a.unsubscribe();
  assert.deepEqual(ws[0].commands('unsubscribe').map((f) => f.unsubscribe), [{ channel: 'chat:x' }]);
  ws[0].receive({ pub: pub('chat:x', 1) });
  assert.equal(log.pubs.length, 0);
  assert.equal(a.state, 'unsubscribed');
  // Subscribing again works and is a new subscription.
  const again = sb.subscribe('chat:x');
  assert.equal(ws[0].commands('subscribe').length, 2);
  assert.notEqual(again, a);
});

test('websocket: a refused subscription ends with an error; a server unsubscribe with 3xxx resubscribes', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  const bad = sb.subscribe('secret');
  const good = sb.subscribe('ok');
  const lbad = record(bad);
  const lgood = record(good);
  sb.connect();
  ws[0].handshake();
  const [s1] = ws[0].commands('subscribe');
  ws[0].receive({ id: s1.id, error: { code: 103, message: 'permission denied' } });
  assert.equal(lbad.errors[0].code, 103);
  assert.equal(bad.state, 'failed');
  assert.equal(sb.getSubscription('secret'), null);
  ws[0].reply('subscribe', { channel: 'ok', epoch: 'E', offset: 5, recovered: true, replayed: 0 }, 1);
  ws[0].receive({ unsubscribed: { channel: 'ok', code: 3002, reason: 'slow consumer' } });
  await clock.advance(10000);
  const again = ws[0].commands('subscribe').at(-1).subscribe;
  assert.deepEqual(again, { channel: 'ok', since: { epoch: 'E', offset: 5 } });
  ws[0].receive({ unsubscribed: { channel: 'ok', code: 3502, reason: 'forbidden' } });
  assert.deepEqual(lgood.unsubscribed, [{ channel: 'ok', code: 3502, reason: 'forbidden' }]);
  assert.equal(sb.getSubscription('ok'), null);
});

test('websocket: disconnect() stops; connect() resumes from the kept positions', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  sb.subscribe('a');
  sb.connect();
  ws[0].handshake();
  ws[0].reply('subscribe', { channel: 'a', epoch: 'E', offset: 7, recovered: true, replayed: 0 });
  sb.disconnect();
  assert.equal(sb.state, 'disconnected');
  assert.equal(ws[0].closedWith, 1000);
  await clock.advance(60000);
  assert.equal(ws.length, 1);
  sb.connect();
  ws[1].handshake();
  assert.deepEqual(ws[1].commands('subscribe')[0].subscribe, { channel: 'a', since: { epoch: 'E', offset: 7 } });
});

test('websocket: with getToken, an expiring token is replaced by a refresh command before it expires, without reconnecting', async () => {
  let n = 0;
  const { sb, ws, clock } = makeClient({ ...WS_ONLY, getToken: () => `T${++n}` });
  // Time passes with the server's pings keeping the connection alive.
  const pass = async (ms) => {
    for (let t = 0; t < ms; t += 20_000) {
      ws[0].receive({ ping: {} });
      await clock.advance(Math.min(20_000, ms - t));
      await settle();
    }
  };
  sb.connect();
  await settle();
  const nowS = () => Math.floor(Date.now() / 1000);
  ws[0].handshake({ expires: nowS() + 120 });
  assert.deepEqual(ws[0].commands('connect')[0].connect, { token: 'T1' });
  await pass(100_000);
  assert.equal(ws[0].commands('refresh').length, 0, 'not yet: 20 s before would be too early');
  await pass(10_000);
  const [r] = ws[0].commands('refresh');
  assert.deepEqual(r?.refresh, { token: 'T2' }, 'about 12 s before expiry, with a fresh token');
  ws[0].reply('refresh', { expires: nowS() + 240 });
  await settle();
  await pass(240_000);
  assert.deepEqual(ws[0].commands('refresh').map((c) => c.refresh.token), ['T2', 'T3'], 'and again for the next');
  assert.equal(ws.length, 1, 'never reconnected');
  assert.equal(sb.state, 'connected');
  sb.disconnect();
  await clock.advance(600_000);
  await settle();
  assert.equal(ws[0].commands('refresh').length, 2, 'nothing after a disconnect');
});

test('websocket: a private channel subscribes with its subscription token; when it expires, getToken gives a new one and the subscription resumes', async () => {
  const { sb, ws, clock } = makeClient(WS_ONLY);
  const asked = [];
  let n = 0;
  const sub = sb.subscribe('vip:a', { getToken: async (channel) => { asked.push(channel); n += 1; return `SUB${n}`; } });
  const fixed = sb.subscribe('vip:b', { token: 'FIXED' });
  const log = record(fixed);
  sb.connect();
  ws[0].handshake();
  await clock.advance(0);
  const first = ws[0].commands('subscribe');
  assert.deepEqual(first.map((c) => c.subscribe).sort((x, y) => x.channel.localeCompare(y.channel)), [
    { channel: 'vip:a', token: 'SUB1' },
    { channel: 'vip:b', token: 'FIXED' },
  ]);
  assert.deepEqual(asked, ['vip:a']);
  const a = first.find((c) => c.subscribe.channel === 'vip:a');
  ws[0].receive({ id: a.id, subscribe: { channel: 'vip:a', epoch: 'E', offset: 7, recovered: true, replayed: 0 } });
  ws[0].receive({ unsubscribed: { channel: 'vip:a', code: 3005, reason: 'subscription token expired' } });
  await clock.advance(10000);
  const again = ws[0].commands('subscribe').at(-1).subscribe;
  assert.deepEqual(again, { channel: 'vip:a', token: 'SUB2', since: { epoch: 'E', offset: 7 } });
  assert.equal(sb.getSubscription('vip:a'), sub);
  // Without getToken the subscription ends.
  ws[0].receive({ unsubscribed: { channel: 'vip:b', code: 3005, reason: 'subscription token expired' } });
  assert.deepEqual(log.unsubscribed, [{ channel: 'vip:b', code: 3005, reason: 'subscription token expired' }]);
  assert.equal(sb.getSubscription('vip:b'), null);
});
