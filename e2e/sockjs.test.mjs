// A Spring-style page against Switchboard: sockjs-client 1.6 and @stomp/stompjs 7 loaded in headless
// Chromium (served from node_modules, no CDN), `new SockJS('/sockjs')` with each SockJS transport
// forced in turn. Each must connect, subscribe, receive an API publication, SEND to a JSON-protocol
// WebSocket subscriber, get its RECEIPTs, and see its own /user/queue/ messages and no one else's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { launchBrowser, startServer, waitUntil, withTimeout } from './helpers.mjs';

const modules = join(dirname(fileURLToPath(import.meta.url)), 'node_modules');
const SOCKJS_JS = readFileSync(join(modules, 'sockjs-client/dist/sockjs.min.js'), 'utf8');
const STOMP_JS = readFileSync(join(modules, '@stomp/stompjs/bundles/stomp.umd.min.js'), 'utf8');
const SECRET = 's3cret';
const API_KEY = 'k3y';

/** An HS256 JWT for `claims`. */
function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

let server;
let browser;
before(async () => {
  // Heart-beats every second, so that a test can see them kept.
  server = await startServer({
    args: ['--no-demo'],
    env: { SWITCHBOARD_TOKEN_SECRET: SECRET, SWITCHBOARD_API_KEY: API_KEY, SWITCHBOARD_HEARTBEAT_INTERVAL: '1' },
  });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

async function publish(channel, data) {
  const res = await fetch(`${server.url}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

/** A page on the server's own origin with sockjs-client and stompjs loaded, as a Spring app's. (A
 * real response, not an intercepted one: Chromium's local network access checks treat an
 * intercepted page as public and block its WebSocket to loopback.) */
async function springPage() {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}/sockjs`);
  await page.addScriptTag({ content: SOCKJS_JS });
  await page.addScriptTag({ content: STOMP_JS });
  return { page, errors };
}

/** A JSON-protocol WebSocket subscriber of `channel`; resolves once subscribed. */
async function jsonSubscriber(channel) {
  const ws = new WebSocket(`${server.wsUrl}/ws`, 'switchboard.v1.json');
  const frames = [];
  ws.on('message', (m) => frames.push(JSON.parse(String(m))));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ id: 1, connect: { token: jwt({ sub: 'watcher' }) } }));
  ws.send(JSON.stringify({ id: 2, subscribe: { channel } }));
  await waitUntil(() => frames.some((f) => f.id === 2), { message: 'the JSON subscribe reply' });
  assert.ok(!frames.find((f) => f.id === 2).error, JSON.stringify(frames));
  return { ws, frames };
}

const TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource', 'iframe-htmlfile', 'jsonp-polling'];

for (const transport of TRANSPORTS) {
  test(`sockjs-client with transports: ['${transport}'] + @stomp/stompjs: connect, subscribe, API publication, SEND to a JSON subscriber, /user/queue/, receipts`, async () => {
    const channel = `room:${transport}`;
    const { page, errors } = await springPage();
    try {
      const watcher = await jsonSubscriber(channel);
      const tokens = { alice: jwt({ sub: 'alice' }), bob: jwt({ sub: 'bob' }) };
      // Two users on the same transport, as two tabs of a Spring app would be.
      const used = await withTimeout(page.evaluate(async ({ transport, channel, tokens }) => {
        window.got = { alice: [], bob: [], notes: { alice: [], bob: [] }, receipts: [] };
        const connect = (who) => new Promise((resolve, reject) => {
          const sock = () => {
            const s = new SockJS('/sockjs', null, { transports: [transport] });
            window[`sock_${who}`] = s;
            return s;
          };
          const client = new StompJs.Client({
            webSocketFactory: sock,
            connectHeaders: { passcode: tokens[who] },
            heartbeatIncoming: 10000,
            heartbeatOutgoing: 10000,
            reconnectDelay: 0,
            debug: () => {},
          });
          client.onConnect = () => resolve(client);
          client.onStompError = (f) => reject(new Error(`ERROR ${f.headers.code}: ${f.headers.message}`));
          client.onWebSocketClose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
          client.activate();
        });
        const receipt = (client, id) => new Promise((r) => client.watchForReceipt(id, (f) => { window.got.receipts.push(f.headers); r(); }));
        for (const who of ['alice', 'bob']) {
          const client = await connect(who);
          window[`client_${who}`] = client;
          const subscribed = receipt(client, `sub-${who}`);
          client.subscribe(`/topic/${channel}`, (m) => window.got[who].push({ body: m.body, headers: m.headers }), { receipt: `sub-${who}` });
          await subscribed;
          const notes = receipt(client, `notes-${who}`);
          client.subscribe('/user/queue/notes', (m) => window.got.notes[who].push(m.body), { receipt: `notes-${who}` });
          await notes;
        }
        return window.sock_alice.transport;
      }, { transport, channel, tokens }), 20_000, `connecting over ${transport}`);
      assert.equal(used, transport, 'sockjs-client used the forced transport');

      // A publication made through the server API reaches both STOMP subscribers.
      const sent = await publish(channel, { text: 'from the API' });
      await waitUntil(async () => (await page.evaluate(() => [window.got.alice.length, window.got.bob.length])).every((n) => n >= 1),
        { message: `the API publication over ${transport}` });
      const first = await page.evaluate(() => window.got.alice[0]);
      assert.deepEqual(JSON.parse(first.body), { text: 'from the API' });
      assert.equal(first.headers.position, `${sent.epoch}:${sent.offset}`);
      assert.equal(first.headers.destination, `/topic/${channel}`);

      // SEND from the page, with a receipt, reaches the JSON-protocol WebSocket subscriber.
      await withTimeout(page.evaluate(({ channel }) => new Promise((resolve) => {
        window.client_alice.watchForReceipt('send-1', (f) => resolve(f.headers));
        window.client_alice.publish({ destination: `/topic/${channel}`, body: JSON.stringify({ text: 'from SockJS' }), headers: { receipt: 'send-1' } });
      }), { channel }), 10_000, 'the SEND receipt');
      await waitUntil(() => watcher.frames.some((f) => f.pub?.data?.text === 'from SockJS'),
        { message: `the JSON subscriber gets the SEND over ${transport}` });

      // A personal message reaches alice's /user/queue/notes only.
      await publish('notes#alice', { to: 'alice' });
      await waitUntil(async () => (await page.evaluate(() => window.got.notes.alice.length)) === 1,
        { message: `alice's /user/queue/notes over ${transport}` });
      await publish(`${channel}`, { text: 'after' });
      await waitUntil(async () => (await page.evaluate(() => window.got.bob.length)) >= 3,
        { message: 'bob is still connected and reading' });
      assert.equal(await page.evaluate(() => window.got.notes.bob.length), 0, "alice's note never reaches bob");
      const receipts = await page.evaluate(() => window.got.receipts);
      assert.ok(receipts.some((r) => r['receipt-id'] === 'sub-alice' && r.recovered === 'false'), JSON.stringify(receipts));
      assert.deepEqual(errors, []);
      await page.evaluate(async () => { await window.client_alice.deactivate(); await window.client_bob.deactivate(); });
      watcher.ws.close();
    } finally {
      await page.close();
    }
  });
}

test('the iframe page loads the sockjs-client this server serves, not a CDN', async () => {
  const res = await fetch(`${server.url}/sockjs/iframe.html`);
  assert.equal(res.status, 200);
  const html = await res.text();
  const src = html.match(/<script src="([^"]+)"><\/script>/)[1];
  assert.equal(src, '/sockjs/sockjs.min.js');
  const js = await fetch(`${server.url}${src}`);
  assert.equal(js.status, 200);
  assert.match(await js.text(), /sockjs-client v1\.6\.1/);
});

test('@stomp/stompjs in Chromium over a plain WebSocket (brokerURL): heart-beats kept both ways, client-individual ACK/NACK, reconnect and resubscribe from the last position losing nothing', async () => {
  const { page, errors } = await springPage();
  try {
    const channel = 'feed:chromium';
    const token = jwt({ sub: 'carol' });
    await withTimeout(page.evaluate(({ wsUrl, token, channel }) => {
      window.beats = 0;
      window.got = [];
      window.receipts = [];
      window.open = (position) => new Promise((resolve, reject) => {
        const client = new StompJs.Client({
          // brokerURL, with the incoming heart-beats counted on the way.
          webSocketFactory: () => {
            const ws = new WebSocket(`${wsUrl}/stomp`, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
            ws.addEventListener('message', (e) => { if (e.data === '\n') window.beats += 1; });
            return ws;
          },
          connectHeaders: { passcode: token },
          heartbeatIncoming: 1000,
          heartbeatOutgoing: 1000,
          reconnectDelay: 0,
          debug: () => {},
        });
        client.onConnect = () => {
          const headers = { ack: 'client-individual', receipt: 'sub' };
          if (position) headers.position = position;
          client.watchForReceipt('sub', (f) => { window.receipts.push(f.headers); resolve(); });
          client.subscribe(`/topic/${channel}`, (m) => window.got.push(m), headers);
        };
        client.onStompError = (f) => reject(new Error(`ERROR ${f.headers.message}`));
        window.client = client;
        client.activate();
      });
      return window.open(null);
    }, { wsUrl: server.wsUrl, token, channel }), 10_000, 'connecting with brokerURL');

    // The server heart-beats every second and the client too: after several, still connected.
    await waitUntil(async () => (await page.evaluate(() => window.beats)) >= 3, { message: 'three server heart-beats' });
    assert.equal(await page.evaluate(() => window.client.connected), true, 'heart-beats kept the connection');

    await publish(channel, { n: 1 });
    await publish(channel, { n: 2 });
    await waitUntil(async () => (await page.evaluate(() => window.got.length)) === 2, { message: 'two messages' });
    const acked = await withTimeout(page.evaluate(() => new Promise((resolve) => {
      const [first, second] = window.got;
      const done = [];
      window.client.watchForReceipt('ack-1', () => { done.push('ack'); if (done.length === 2) resolve(done); });
      window.client.watchForReceipt('nack-2', () => { done.push('nack'); if (done.length === 2) resolve(done); });
      first.ack({ receipt: 'ack-1' });
      second.nack({ receipt: 'nack-2' });
    })), 5000, 'the ACK and NACK receipts');
    assert.deepEqual(acked.sort(), ['ack', 'nack']);
    const last = await page.evaluate(() => window.got[1].headers.position);

    // Gone for a while; two publications meanwhile; back with the last position.
    await page.evaluate(() => window.client.deactivate());
    await publish(channel, { n: 3 });
    await publish(channel, { n: 4 });
    await withTimeout(page.evaluate((p) => { window.got = []; return window.open(p); }, last), 10_000, 'reconnecting');
    await waitUntil(async () => (await page.evaluate(() => window.got.length)) === 2, { message: 'the two missed messages' });
    assert.deepEqual(await page.evaluate(() => window.got.map((m) => JSON.parse(m.body).n)), [3, 4]);
    assert.equal(await page.evaluate(() => window.receipts.at(-1).recovered), 'true');
    assert.deepEqual(errors, []);
    await page.evaluate(() => window.client.deactivate());
  } finally {
    await page.close();
  }
});
