// STOMP over WebSocket with a real client: @stomp/stompjs 7 in Node (its `webSocketFactory` on the
// `ws` package), against `/stomp` and `/ws` (subprotocol). The same channels as the JSON protocol.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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
  assert.match(frame.headers.message, /destinations are \/topic\/NAME or \/queue\/NAME/);
  assert.equal(frame.headers.code, '108');
  await client.deactivate();
});
