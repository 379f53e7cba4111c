// End-to-end: headless Chromium (playwright-core) against the real `switchboard` binary.
//
//  - the demo feed on every transport, with two dropped connections resumed without loss;
//  - the feed across a server restart on the same port (history lost: `recovered: false`);
//  - the demo chat between two pages on different transports, with presence;
//  - the browser's own EventSource with no SDK, resuming by itself with Last-Event-ID through a
//    TCP proxy that cuts the connection, and resuming with `?since=`;
//  - the browser's own WebSocket with no SDK: subscribe / publish / ack, and close code 3500.
//
// Run: cargo build && cd e2e && node --test --test-concurrency=1 browser.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { launchBrowser, publish, startServer, waitUntil } from './helpers.mjs';

const TRANSPORTS = ['websocket', 'webrtc', 'sse', 'stream', 'long-poll', 'poll'];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A fresh browser context and page; both closed when the test ends. Page errors fail the test. */
async function newPage(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  t.after(() => assert.deepEqual(errors.map(String), [], 'uncaught errors in the page'));
  return { context, page };
}

async function server(t, opts) {
  const s = await startServer(opts);
  t.after(() => s.stop());
  return s;
}

/** The ticker channel's last offset, from the server API. */
async function tickerTop(srv) {
  const res = await fetch(`${srv.url}/api/history?channel=demo:ticker&limit=1&reverse=true`);
  assert.equal(res.status, 200);
  return (await res.json()).offset;
}

const stats = (page) => page.evaluate(() => ({ ...window.demo.stats, state: window.demo.feed.state }));

/** Waits until the demo feed uses `transport`, is connected and has received `n` publications. */
async function feedRunning(page, transport, n = 3) {
  await page.waitForFunction((x) => document.querySelector('#feed-transport').textContent === x, transport, { timeout: 15_000 });
  await page.waitForFunction((k) => window.demo.stats.count >= k && window.demo.feed.state === 'connected', n, { timeout: 15_000 });
}

describe('demo feed on every transport', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: receives the ticker and resumes twice after dropped connections without a gap`, { timeout: 60_000 }, async (t) => {
      const srv = await server(t);
      const { context, page } = await newPage(t);
      await page.goto(`${srv.url}/?transport=${transport}`);
      await feedRunning(page, transport);
      assert.equal(await page.textContent('#feed-transport'), transport);
      assert.equal(await page.evaluate(() => window.demo.feed.transport), transport);

      for (let round = 1; round <= 2; round++) {
        const before = await stats(page);
        // The page goes offline around the drop until the ticker (every 500 ms) has published twice
        // more, so the resume has to replay publications the feed missed.
        await context.setOffline(true);
        await page.click('#drop');
        await page.waitForFunction(() => window.demo.feed.state !== 'connected', null, { timeout: 5_000 });
        const top = await tickerTop(srv);
        await waitUntil(async () => (await tickerTop(srv)) >= top + 2, { timeout: 10_000, message: 'two ticker publications' });
        await context.setOffline(false);
        // Resubscribed (a new `subscribed` event), and publications flow again.
        await page.waitForFunction((b) => window.demo.stats.subscribed > b.subscribed && window.demo.stats.count >= b.count + 5,
          before, { timeout: 20_000 });
        const now = await stats(page);
        assert.equal(now.state, 'connected', `round ${round}: feed state`);
        assert.equal(now.gaps, 0, `round ${round}: gaps in seq (lost or repeated publications): ${JSON.stringify(now)}`);
        assert.equal(now.recovered, true, `round ${round}: the resume was not honoured: ${JSON.stringify(now)}`);
        // Every seq between the two readings arrived exactly once.
        assert.equal(now.lastSeq - before.lastSeq, now.count - before.count, `round ${round}: ${JSON.stringify({ before, now })}`);
        assert.ok(now.reconnects >= round, `round ${round}: reconnects ${now.reconnects}`);
        assert.equal(await page.textContent('#feed-recovered'), 'true');
        assert.equal(await page.textContent('#feed-gaps'), '0');
        assert.equal(await page.textContent('#feed-transport'), transport);
      }
      assert.equal(Number(await page.textContent('#feed-count')), (await stats(page)).count);
    });
  }

  test('the transport can be switched at run time with window.demo.setTransport', { timeout: 60_000 }, async (t) => {
    const srv = await server(t);
    const { page } = await newPage(t);
    await page.goto(`${srv.url}/?transport=websocket`);
    await feedRunning(page, 'websocket');
    for (const transport of ['sse', 'long-poll', 'stream']) {
      const before = await stats(page);
      await page.evaluate((x) => window.demo.setTransport(x), transport);
      await feedRunning(page, transport, before.count + 3);
      const now = await stats(page);
      assert.equal(now.gaps, 0, `${transport}: ${JSON.stringify(now)}`);
      assert.equal(now.recovered, true, `${transport}: ${JSON.stringify(now)}`);
      assert.equal(now.lastSeq - before.lastSeq, now.count - before.count);
      assert.match(page.url(), new RegExp(`transport=${transport}`));
    }
  });
});

describe('server restart on the same port', () => {
  for (const [transport, how] of [['websocket', 'stop'], ['sse', 'stop'], ['websocket', 'kill'], ['sse', 'kill']]) {
    test(`${transport}: after a ${how === 'stop' ? 'graceful restart' : 'crash (SIGKILL)'} the feed says recovered:false and keeps receiving`, { timeout: 60_000 }, async (t) => {
      let srv = await startServer();
      t.after(() => srv.stop());
      const { page } = await newPage(t);
      await page.goto(`${srv.url}/?transport=${transport}`);
      await feedRunning(page, transport);
      const before = await stats(page);
      const oldEpoch = await page.evaluate(() => window.demo.feed._subs.get('demo:ticker')?.position?.epoch);

      const port = srv.port;
      await (how === 'stop' ? srv.stop() : srv.kill());
      await page.waitForFunction(() => window.demo.feed.state !== 'connected', null, { timeout: 10_000 });
      srv = await startServer({ port });
      assert.equal(srv.port, port);

      await page.waitForFunction((b) => window.demo.stats.subscribed > b.subscribed && window.demo.stats.recovered === false,
        before, { timeout: 30_000 });
      assert.equal(await page.textContent('#feed-recovered'), 'false');
      const at = (await stats(page)).count;
      await page.waitForFunction((c) => window.demo.stats.count >= c + 3 && window.demo.feed.state === 'connected', at, { timeout: 15_000 });
      const now = await stats(page);
      assert.equal(now.gaps, 0, JSON.stringify(now));
      assert.equal(now.recovered, false, 'no later resume should claim recovery across the lost history');
      const newEpoch = await page.evaluate(() => window.demo.feed._subs.get('demo:ticker')?.position?.epoch);
      if (oldEpoch !== undefined) assert.notEqual(newEpoch, oldEpoch, 'a restarted in-memory broker must have a new epoch');
      assert.equal(await page.textContent('#feed-transport'), transport);
    });
  }
});

describe('demo chat across transports', () => {
  for (const [ta, tb] of [['websocket', 'long-poll'], ['sse', 'poll'], ['stream', 'websocket']]) {
    test(`${ta} page and ${tb} page chat in chat:lobby and see each other's presence`, { timeout: 60_000 }, async (t) => {
      const srv = await server(t);
      const a = (await newPage(t)).page;
      const b = (await newPage(t)).page;
      const nameA = `alice-${ta}`;
      const nameB = `bob-${tb}`;

      async function joinAs(page, transport, name) {
        await page.goto(`${srv.url}/?transport=${transport}`);
        await page.fill('#name', name);
        await page.click('#join');
        await page.waitForFunction(() => document.querySelector('#chat-state').dataset.state === 'connected', null, { timeout: 15_000 });
        await page.waitForFunction((x) => document.querySelector('#chat-transport').textContent === x, transport, { timeout: 15_000 });
        assert.equal(await page.isDisabled('#send'), false);
      }
      await joinAs(a, ta, nameA);
      await joinAs(b, tb, nameB);

      async function say(page, text) {
        await page.fill('#message', text);
        await page.click('#send');
        await page.waitForFunction(() => document.querySelector('#message').value === '', null, { timeout: 10_000 });
      }
      const hears = (page, name, text) => page.waitForFunction(([n, x]) => [...document.querySelectorAll('#messages li')]
        .some((li) => li.querySelector('.name')?.textContent === n && li.querySelector('.text')?.textContent === x),
      [name, text], { timeout: 15_000 });

      await say(a, `hello from ${ta}`);
      await hears(b, nameA, `hello from ${ta}`);
      await say(b, `hello from ${tb}`);
      await hears(a, nameB, `hello from ${tb}`);
      await hears(a, nameA, `hello from ${ta}`);
      await hears(b, nameB, `hello from ${tb}`);

      // Both pages show the same two messages, in the same order, with contiguous offsets.
      const ma = await a.evaluate(() => window.demo.messages);
      const mb = await b.evaluate(() => window.demo.messages);
      assert.deepEqual(ma.map((m) => [m.name, m.text]), [[nameA, `hello from ${ta}`], [nameB, `hello from ${tb}`]]);
      assert.deepEqual(mb, ma);
      assert.deepEqual(ma.map((m) => m.offset), [1, 2]);

      // Presence: a client on a streaming transport is present and shows in the other page; a
      // polling client is never present.
      const streaming = (x) => x === 'websocket' || x === 'sse' || x === 'stream';
      const presenceNames = (page) => page.evaluate(() => [...window.demo.presence.values()].map((p) => p.name || p.user));
      const shows = (page, name) => page.waitForFunction((n) => [...document.querySelectorAll('#presence li')]
        .some((li) => li.textContent === n), name, { timeout: 15_000 });
      if (streaming(ta)) await shows(b, nameA);
      if (streaming(tb)) await shows(a, nameB);
      if (!streaming(tb)) assert.ok(!(await presenceNames(a)).includes(nameB), `${tb} client must not be present`);
      if (!streaming(ta)) assert.ok(!(await presenceNames(b)).includes(nameA), `${ta} client must not be present`);
      // And the server agrees.
      const res = await fetch(`${srv.url}/api/presence?channel=chat:lobby`).then((r) => r.json());
      const names = Object.values(res.clients).map((c) => c.name).sort();
      assert.deepEqual(names, [streaming(ta) && nameA, streaming(tb) && nameB].filter(Boolean).sort());
    });
  }

  test('websocket chat sees join and leave events of another websocket page', { timeout: 60_000 }, async (t) => {
    const srv = await server(t);
    const a = (await newPage(t)).page;
    const { context: cb, page: b } = await newPage(t);
    for (const [page, name] of [[a, 'ann'], [b, 'ben']]) {
      await page.goto(`${srv.url}/?transport=websocket`);
      await page.evaluate((n) => window.demo.join(n), name);
      await page.waitForFunction(() => window.demo.chat?.state === 'connected', null, { timeout: 15_000 });
    }
    await a.waitForFunction(() => [...window.demo.presence.values()].some((p) => p.name === 'ben'), null, { timeout: 15_000 });
    await a.waitForFunction(() => document.querySelector('#presence li.me')?.textContent === 'ann (you)', null, { timeout: 15_000 });
    await cb.close(); // ben's tab goes away: a leave event reaches ann
    await a.waitForFunction(() => ![...window.demo.presence.values()].some((p) => p.name === 'ben'), null, { timeout: 15_000 });
  });
});

describe('fresh subscriptions (sdk/README.md: "A fresh subscription (no position) also says recovered: false")', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: the SDK's first subscribed event of a fresh subscription says recovered:false`, { timeout: 30_000 }, async (t) => {
      const srv = await server(t, { args: ['--no-demo'] });
      await publish(srv.url, 'news', { before: true });
      const { page } = await newPage(t);
      await page.goto(`${srv.url}/healthz`);
      const first = await page.evaluate(async (tr) => {
        const { Switchboard } = await import('/sdk/switchboard.js');
        const sb = new Switchboard({ transports: tr });
        const sub = sb.subscribe('news');
        const ev = await new Promise((resolve, reject) => {
          sub.on('subscribed', resolve);
          setTimeout(() => reject(new Error('no subscribed event')), 10_000);
          sb.connect();
        });
        sb.disconnect();
        return ev;
      }, transport);
      assert.equal(first.offset, 1, JSON.stringify(first));
      assert.equal(first.recovered, false, `fresh subscription on ${transport}: ${JSON.stringify(first)}`);
    });
  }

  for (const transport of TRANSPORTS) {
    test(`${transport}: someone joining the demo chat later sees the earlier messages`, { timeout: 30_000 }, async (t) => {
      const srv = await server(t);
      await publish(srv.url, 'chat:lobby', { name: 'earlier', text: 'said before you came' });
      const { page } = await newPage(t);
      await page.goto(`${srv.url}/?transport=${transport}`);
      await page.evaluate(() => window.demo.join('late'));
      await page.waitForFunction(() => window.demo.chat?.state === 'connected', null, { timeout: 15_000 });
      await page.evaluate(() => window.demo.send('now'));
      // Once our own message is shown, history had every chance to load.
      await page.waitForFunction(() => window.demo.messages.some((m) => m.text === 'now'), null, { timeout: 15_000 });
      await page.waitForFunction(() => window.demo.messages.length >= 2, null, { timeout: 5_000 }).catch(() => {});
      const texts = await page.evaluate(() => window.demo.messages.map((m) => m.text));
      assert.deepEqual(texts, ['said before you came', 'now'], `chat over ${transport}`);
    });
  }
});

describe('browser APIs with no SDK', () => {
  // A TCP proxy in front of the server whose connections the test can cut, as a network would.
  async function startProxy(t, targetPort) {
    const pairs = new Set();
    const heads = []; // the first bytes the browser sent on each connection (its request head)
    const proxy = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      const index = heads.length;
      const pair = { client, upstream, index };
      pairs.add(pair);
      let head = '';
      heads.push('');
      client.on('data', (chunk) => {
        if (head.length < 8192) { head += chunk.toString('latin1'); heads[index] = head; }
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
      client.on('error', end);
      upstream.on('error', end);
      client.on('close', end);
      upstream.on('close', end);
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    const cut = () => { for (const { client, upstream } of [...pairs]) { client.destroy(); upstream.destroy(); } };
    t.after(() => { cut(); return new Promise((r) => proxy.close(r)); });
    // Open connections that carried `request` (the browser may or may not have reused its
    // keep-alive connection from loading /healthz, so other connections may be open too).
    const open = (request = '') => [...pairs].filter((p) => heads[p.index].includes(request)).length;
    return { port: proxy.address().port, heads, cut, open };
  }

  test('EventSource resumes by itself with Last-Event-ID after the connection is cut, and with ?since=', { timeout: 60_000 }, async (t) => {
    const srv = await server(t, { args: ['--no-demo'] });
    const proxy = await startProxy(t, srv.port);
    const { page } = await newPage(t);
    await page.goto(`http://127.0.0.1:${proxy.port}/healthz`);

    await page.evaluate(() => {
      window.got = [];
      window.events = [];
      window.opens = 0;
      const es = new EventSource('/sse?channel=news');
      window.es = es;
      es.onopen = () => { window.opens++; };
      es.onmessage = (e) => window.got.push({ id: e.lastEventId, pub: JSON.parse(e.data) });
      es.addEventListener('subscribed', (e) => window.events.push({ type: 'subscribed', id: e.lastEventId, data: JSON.parse(e.data) }));
      es.addEventListener('connected', (e) => window.events.push({ type: 'connected', data: JSON.parse(e.data) }));
      es.onerror = () => window.events.push({ type: 'error', readyState: es.readyState });
    });
    await page.waitForFunction(() => window.events.some((e) => e.type === 'subscribed'), null, { timeout: 10_000 });
    const connected = await page.evaluate(() => window.events.find((e) => e.type === 'connected'));
    assert.ok(connected && typeof connected.data.client === 'string', 'connected event with a client id');

    for (let i = 1; i <= 5; i++) await publish(srv.url, 'news', { n: i });
    await page.waitForFunction(() => window.got.length >= 5, null, { timeout: 10_000 });
    assert.equal(proxy.open('GET /sse'), 1);

    // Cut the connection and publish during the gap (the server says `retry: 2000`).
    const connectionsBefore = proxy.heads.length;
    proxy.cut();
    for (let i = 6; i <= 10; i++) await publish(srv.url, 'news', { n: i });
    await page.waitForFunction(() => window.got.length >= 10 && window.opens >= 2, null, { timeout: 15_000 });
    // One live publication after the replay: any duplicate of the replay would come before it.
    await publish(srv.url, 'news', { n: 11 });
    await page.waitForFunction(() => window.got.some((g) => g.pub.data.n === 11), null, { timeout: 10_000 });
    const got = await page.evaluate(() => window.got);
    const all = Array.from({ length: 11 }, (_, i) => i + 1);
    assert.deepEqual(got.map((g) => g.pub.offset), all, 'every publication once, in order');
    assert.deepEqual(got.map((g) => g.pub.data.n), all);
    assert.ok(got.every((g) => g.pub.channel === 'news' && g.pub.epoch === got[0].pub.epoch));
    // The browser reconnected by itself, with the id of the last message it saw.
    const reconnect = proxy.heads.slice(connectionsBefore).find((h) => h.startsWith('GET /sse'));
    assert.ok(reconnect, `no reconnect request seen: ${JSON.stringify(proxy.heads)}`);
    const header = reconnect.match(/^last-event-id: *(.*)\r$/im);
    assert.ok(header, `reconnect without Last-Event-ID:\n${reconnect}`);
    assert.equal(header[1], got[4].id, 'Last-Event-ID is the id of the last message before the cut');
    assert.doesNotMatch(reconnect.split('\r\n')[0], /since=/, 'the resume came from the header, not the URL');
    const resubscribed = await page.evaluate(() => window.events.filter((e) => e.type === 'subscribed'));
    assert.equal(resubscribed.length, 2);
    assert.deepEqual({ recovered: resubscribed[1].data.recovered, replayed: resubscribed[1].data.replayed, offset: resubscribed[1].data.offset },
      { recovered: true, replayed: 5, offset: 5 });

    // Close, publish 3 more, resume explicitly with ?since=<last id>.
    const lastId = got[10].id;
    await page.evaluate(() => window.es.close());
    for (let i = 12; i <= 14; i++) await publish(srv.url, 'news', { n: i });
    await page.evaluate((since) => {
      window.got2 = [];
      window.sub2 = null;
      const es = new EventSource(`/sse?channel=news&since=${encodeURIComponent(since)}`);
      window.es = es;
      es.onmessage = (e) => window.got2.push(JSON.parse(e.data));
      es.addEventListener('subscribed', (e) => { window.sub2 = JSON.parse(e.data); });
    }, lastId);
    await page.waitForFunction(() => window.got2.length >= 3, null, { timeout: 10_000 });
    await publish(srv.url, 'news', { n: 15 });
    await page.waitForFunction(() => window.got2.some((p) => p.data.n === 15), null, { timeout: 10_000 });
    const got2 = await page.evaluate(() => window.got2);
    assert.deepEqual(got2.map((p) => p.offset), [12, 13, 14, 15]);
    assert.deepEqual(got2.map((p) => p.data.n), [12, 13, 14, 15]);
    const sub2 = await page.evaluate(() => window.sub2);
    assert.equal(sub2.recovered, true);
    assert.equal(sub2.replayed, 3);
    await page.evaluate(() => window.es.close());
  });

  test('WebSocket: subscribe, publish with ack, push; a malformed frame closes with 3500', { timeout: 30_000 }, async (t) => {
    const srv = await server(t, { args: ['--no-demo'] });
    const { page } = await newPage(t);
    await page.goto(`${srv.url}/healthz`);
    const r = await page.evaluate(async () => {
      const open = (url) => new Promise((resolve, reject) => {
        const ws = new WebSocket(url, 'switchboard.v1.json');
        ws.onopen = () => resolve(ws);
        ws.onerror = () => reject(new Error('websocket error'));
      });
      const url = `ws://${location.host}/ws`;
      const ws = await open(url);
      ws.binaryType = 'arraybuffer';
      const frames = [];
      const waiters = [];
      ws.onmessage = (e) => {
        let f;
        if (typeof e.data === 'string') f = JSON.parse(e.data);
        else {
          const bytes = new Uint8Array(e.data);
          const nl = bytes.indexOf(10);
          f = { binary: JSON.parse(new TextDecoder().decode(bytes.subarray(0, nl))), payload: [...bytes.subarray(nl + 1)] };
        }
        frames.push(f);
        for (const w of waiters.splice(0)) w();
      };
      const next = async (pred) => {
        const deadline = Date.now() + 5000;
        for (;;) {
          const f = frames.find(pred);
          if (f) return f;
          if (Date.now() > deadline) throw new Error(`no frame matched; got ${JSON.stringify(frames)}`);
          await new Promise((r2) => { waiters.push(r2); setTimeout(r2, 200); });
        }
      };
      ws.send(JSON.stringify({ id: 1, connect: { name: 'page' } }));
      const connect = await next((f) => f.id === 1);
      ws.send(JSON.stringify({ id: 2, subscribe: { channel: 'room' } }));
      const sub = await next((f) => f.id === 2);
      ws.send(JSON.stringify({ id: 3, publish: { channel: 'room', data: { hello: 'world' } } }));
      const ack = await next((f) => f.id === 3);
      const push = await next((f) => f.pub);
      ws.send(JSON.stringify({ id: 4, ping: {} }));
      const pong = await next((f) => f.id === 4);
      // A binary publication (made through the API) arrives as one binary frame: header, \n, bytes.
      const res = await fetch('/api/publish', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel: 'room', b64: btoa(String.fromCharCode(0, 10, 255, 1)) }),
      });
      const binAck = await res.json();
      const bin = await next((f) => f.binary);
      ws.close(1000);

      const bad = await open(url);
      const closed = await new Promise((resolve) => {
        bad.onclose = (e) => resolve({ code: e.code, reason: e.reason });
        bad.send('{"id": 1, "subscribe": ');
      });
      return { protocol: ws.protocol, connect, sub, ack, push, pong, closed, binAck, bin };
    });
    assert.equal(r.protocol, 'switchboard.v1.json');
    assert.equal(typeof r.connect.connect.client, 'string');
    assert.equal(typeof r.connect.connect.version, 'string');
    assert.deepEqual({ channel: r.sub.subscribe.channel, offset: r.sub.subscribe.offset, recovered: r.sub.subscribe.recovered },
      { channel: 'room', offset: 0, recovered: false }); // a fresh subscription has nothing to recover
    assert.equal(r.ack.publish.offset, 1);
    assert.equal(r.ack.publish.epoch, r.sub.subscribe.epoch);
    assert.deepEqual({ channel: r.push.pub.channel, offset: r.push.pub.offset, epoch: r.push.pub.epoch, data: r.push.pub.data },
      { channel: 'room', offset: 1, epoch: r.ack.publish.epoch, data: { hello: 'world' } });
    assert.equal(r.push.pub.info?.client, r.connect.connect.client, 'info names the publishing client');
    assert.deepEqual(r.pong, { id: 4, ping: {} });
    assert.equal(r.binAck.offset, 2);
    assert.deepEqual({ channel: r.bin.binary.pub.channel, offset: r.bin.binary.pub.offset }, { channel: 'room', offset: 2 });
    assert.deepEqual(r.bin.payload, [0, 10, 255, 1]);
    assert.equal(r.closed.code, 3500, JSON.stringify(r.closed));
  });
});
