// STOMP over WebSocket with a real client: @stomp/stompjs 7 in Node (its `webSocketFactory` on the
// `ws` package), against `/stomp` and `/ws` (subprotocol). The same channels as the JSON protocol.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { startServer, publish, waitUntil, withTimeout } from './helpers.mjs';

let server;
before(async () => {
  server = await startServer({ args: ['--no-demo'] });
});
after(async () => {
  await server?.stop();
});

/** A connected stompjs client on `path`; resolves with the client and its CONNECTED frame. */
function connect(path, opts = {}) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const client = new Client({
        webSocketFactory: () => new WebSocket(`${server.wsUrl}${path}`, opts.protocols ?? ['v12.stomp', 'v11.stomp', 'v10.stomp']),
        heartbeatIncoming: 10000,
        heartbeatOutgoing: 10000,
        reconnectDelay: 0,
        connectHeaders: opts.headers ?? {},
        debug: () => {},
      });
      client.onConnect = (frame) => resolve({ client, connected: frame });
      client.onStompError = (frame) => reject(new Error(`STOMP ERROR: ${frame.headers.message}`));
      client.onWebSocketError = () => reject(new Error('WebSocket error'));
      client.activate();
    }),
    10_000,
    `STOMP connect to ${path}`,
  );
}

/** Messages of a subscription, collected. */
function collect(client, destination, headers = {}) {
  const messages = [];
  const sub = client.subscribe(destination, (m) => messages.push(m), headers);
  return { messages, sub };
}

test('stompjs on /stomp: CONNECTED with heart-beats, SUBSCRIBE, a publication from the API, SEND reaching a JSON-protocol subscriber, receipts', async () => {
  const { client, connected } = await connect('/stomp');
  assert.equal(connected.headers.version, '1.2');
  assert.match(connected.headers['heart-beat'], /^\d+,\d+$/);
  assert.match(connected.headers.server, /^switchboard\//);

  // A JSON-protocol subscriber of the same channel.
  const json = new WebSocket(`${server.wsUrl}/ws`, 'switchboard.v1.json');
  const seen = [];
  json.on('message', (m) => seen.push(JSON.parse(String(m))));
  await new Promise((r) => json.once('open', r));
  json.send(JSON.stringify({ id: 1, subscribe: { channel: 'chat:stomp' } }));
  await waitUntil(() => seen.some((f) => f.id === 1), { message: 'the JSON subscribe reply' });

  const subscribed = new Promise((r) => client.watchForReceipt('sub-1', r));
  const { messages } = collect(client, '/topic/chat:stomp', { receipt: 'sub-1' });
  const receipt = await withTimeout(subscribed, 5000, 'the SUBSCRIBE receipt');
  assert.equal(receipt.headers.recovered, 'false');

  const sent = await publish(server.url, 'chat:stomp', { text: 'from the API' });
  await waitUntil(() => messages.length === 1, { message: 'the API publication as a MESSAGE' });
  assert.deepEqual(JSON.parse(messages[0].body), { text: 'from the API' });
  assert.equal(messages[0].headers.position, `${sent.epoch}:${sent.offset}`);
  assert.equal(messages[0].headers.destination, '/topic/chat:stomp');
  assert.ok(messages[0].headers['message-id']);

  const sendReceipt = new Promise((r) => client.watchForReceipt('send-1', r));
  client.publish({ destination: '/topic/chat:stomp', body: JSON.stringify({ text: 'from STOMP' }), headers: { receipt: 'send-1' } });
  const r = await withTimeout(sendReceipt, 5000, 'the SEND receipt');
  assert.equal(r.headers.position, `${sent.epoch}:${sent.offset + 1}`, 'the next offset of the one stream');
  await waitUntil(() => seen.some((f) => f.pub?.data?.text === 'from STOMP'), { message: 'the JSON subscriber gets the SEND' });
  await waitUntil(() => messages.length === 2, { message: 'the STOMP subscriber gets its own SEND' });

  json.close();
  await client.deactivate();
});

test('stompjs on /ws by subprotocol: resubscribing with the last position loses nothing', async () => {
  const { client } = await connect('/ws');
  const ready = new Promise((r) => client.watchForReceipt('first', r));
  const first = collect(client, '/topic/feed:resume', { receipt: 'first' });
  await withTimeout(ready, 5000, 'the SUBSCRIBE receipt');
  await publish(server.url, 'feed:resume', { n: 1 });
  await waitUntil(() => first.messages.length === 1, { message: 'the first message' });
  const last = first.messages[0].headers.position;
  await client.deactivate();

  for (const n of [2, 3]) await publish(server.url, 'feed:resume', { n });
  const { client: again } = await connect('/ws');
  const subscribed = new Promise((r) => again.watchForReceipt('resume', r));
  const second = collect(again, '/topic/feed:resume', { position: last, receipt: 'resume' });
  const receipt = await withTimeout(subscribed, 5000, 'the resume receipt');
  assert.equal(receipt.headers.recovered, 'true');
  await waitUntil(() => second.messages.length === 2, { message: 'the two missed publications' });
  assert.deepEqual(second.messages.map((m) => JSON.parse(m.body).n), [2, 3]);
  await again.deactivate();
});

test('bad input: an unknown destination gets an ERROR with a code; transactions publish on COMMIT only', async () => {
  const { client } = await connect('/stomp');
  const tx = client.begin();
  const got = collect(client, '/topic/tx:one');
  client.publish({ destination: '/topic/tx:one', body: '{"n":1}', headers: { transaction: tx.id } });
  const aborted = client.begin();
  client.publish({ destination: '/topic/tx:one', body: '{"n":2}', headers: { transaction: aborted.id } });
  aborted.abort();
  tx.commit();
  await waitUntil(() => got.messages.length === 1, { message: 'the committed SEND' });
  assert.equal(JSON.parse(got.messages[0].body).n, 1);

  const error = new Promise((r) => { client.onStompError = r; });
  client.subscribe('/app/nothing', () => {});
  const frame = await withTimeout(error, 5000, 'an ERROR frame');
  assert.match(frame.headers.message, /destinations are \/topic\/NAME, \/queue\/NAME/);
  assert.equal(frame.headers.code, '108');
  await client.deactivate();
});

/** An HS256 JWT for `claims`, signed with `secret`. */
function jwt(secret, claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('/user/queue/NAME is the connected user\'s personal channel NAME#USER: every connection of that user, nobody else', async () => {
  const secured = await startServer({ args: ['--no-demo'], env: { SWITCHBOARD_TOKEN_SECRET: 's3cret', SWITCHBOARD_API_KEY: 'k3y' } });
  const saved = server;
  server = secured;
  try {
    const as = (sub) => ({ headers: { passcode: jwt('s3cret', { sub }) } });
    const tabs = [await connect('/stomp', as('alice')), await connect('/ws', as('alice'))];
    const bob = await connect('/stomp', as('bob'));
    const inboxes = [];
    for (const { client } of tabs) {
      const ready = new Promise((r) => client.watchForReceipt('u', r));
      inboxes.push(collect(client, '/user/queue/notes', { receipt: 'u' }).messages);
      await withTimeout(ready, 5000, 'the /user/ SUBSCRIBE receipt');
    }
    const bobReady = new Promise((r) => bob.client.watchForReceipt('b', r));
    const bobs = collect(bob.client, '/user/queue/notes', { receipt: 'b' }).messages;
    await withTimeout(bobReady, 5000, "bob's SUBSCRIBE receipt");
    const res = await fetch(`${secured.url}/api/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': 'k3y' },
      body: JSON.stringify({ channel: 'notes#alice', data: { to: 'alice' } }),
    });
    assert.equal(res.status, 200);
    await waitUntil(() => inboxes.every((m) => m.length === 1), { message: 'both of alice\'s connections get it' });
    for (const m of inboxes) {
      assert.deepEqual(JSON.parse(m[0].body), { to: 'alice' });
      assert.equal(m[0].headers.destination, '/user/queue/notes');
    }
    assert.equal(bobs.length, 0, 'bob\'s /user/queue/notes is his own channel');

    // Someone else's personal channel by its name: refused with 103.
    const error = new Promise((r) => { bob.client.onStompError = r; });
    bob.client.subscribe('/topic/notes#alice', () => {});
    const frame = await withTimeout(error, 5000, 'an ERROR frame');
    assert.equal(frame.headers.code, '103');
    for (const { client } of [...tabs, bob]) await client.deactivate();
  } finally {
    server = saved;
    await secured.stop();
  }
});

test('/app/: a SEND goes to the application backend as a Spring @MessageMapping would take it; its answer reaches /user/queue/', async () => {
  // The application's backend: a plain Node HTTP server.
  const calls = [];
  const backend = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const call = JSON.parse(body);
      calls.push(call);
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({
        result: 'ok',
        publish: [{ channel: `replies#${call.user}`, data: { hello: call.user, got: call.data } }],
      }));
    });
  });
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const secured = await startServer({
    args: ['--no-demo', '--app-proxy-url', `http://127.0.0.1:${backend.address().port}/stomp`],
    env: { SWITCHBOARD_TOKEN_SECRET: 's3cret' },
  });
  const saved = server;
  server = secured;
  try {
    const { client } = await connect('/ws', { headers: { passcode: jwt('s3cret', { sub: 'alice' }) } });
    const ready = new Promise((r) => client.watchForReceipt('sub', r));
    const { messages } = collect(client, '/user/queue/replies', { receipt: 'sub' });
    await withTimeout(ready, 5000, 'the /user/ SUBSCRIBE receipt');

    const sent = new Promise((r) => client.watchForReceipt('greet', r));
    client.publish({ destination: '/app/greet', body: JSON.stringify({ text: 'hi' }), headers: { receipt: 'greet' } });
    const receipt = await withTimeout(sent, 5000, 'the SEND receipt');
    assert.equal(receipt.headers.position, undefined, 'no position: nothing was published to /app/');
    await waitUntil(() => messages.length === 1, { message: 'the answer on /user/queue/replies' });
    assert.deepEqual(JSON.parse(messages[0].body), { hello: 'alice', got: { text: 'hi' } });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].kind, 'send');
    assert.equal(calls[0].destination, 'greet');
    assert.equal(calls[0].user, 'alice');
    await client.deactivate();
  } finally {
    server = saved;
    await secured.stop();
    backend.close();
  }
});
