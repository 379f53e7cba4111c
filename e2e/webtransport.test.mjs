// WebTransport (HTTP/3) end to end with a real peer: headless Chromium, QUIC enabled, connecting to
// `/wt` with the development certificate's hash from `GET /wt/cert-hash`.
//
// Covers: the SDK picks WebTransport first, subscribes, receives, resumes after a dropped session
// without loss; datagram delivery (and the stream fallback for a publication larger than a
// datagram); bad input (garbage, oversize frames, too many streams, bad datagrams) closing the
// session with its code while the server lives on; and the SDK falling back to WebSocket when UDP
// is unreachable (the HTTP/3 listener off).
//
// Run: cargo build && (cd e2e && npm install) && node --test e2e/webtransport.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser, publish, startServer, waitUntil } from './helpers.mjs';

const CONFIG = `
[namespaces.game]
datagrams = true
history_size = 10
`;

function configFile() {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-wt-'));
  const path = join(dir, 'switchboard.toml');
  writeFileSync(path, CONFIG);
  return path;
}

// Page-side raw client: the framing of docs/webtransport.md, written from the spec, not the SDK.
const PAGE_LIB = `
window.wtLib = {
  enc: new TextEncoder(),
  dec: new TextDecoder(),
  frame(obj, kind = 0) {
    const p = typeof obj === 'string' ? this.enc.encode(obj) : obj instanceof Uint8Array ? obj : this.enc.encode(JSON.stringify(obj));
    const f = new Uint8Array(5 + p.length);
    f[0] = kind;
    new DataView(f.buffer).setUint32(1, p.length);
    f.set(p, 5);
    return f;
  },
  async open() {
    const info = await (await fetch('/wt/cert-hash')).json();
    const value = new Uint8Array(info.hash.match(/../g).map((h) => parseInt(h, 16)));
    const wt = new WebTransport('https://127.0.0.1:' + info.port + info.path, { serverCertificateHashes: [{ algorithm: 'sha-256', value }] });
    await wt.ready;
    const s = await wt.createBidirectionalStream();
    const c = { wt, writer: s.writable.getWriter(), frames: [], datagrams: [], ended: null, closeInfo: null };
    wt.closed.then((i) => { c.closeInfo = { code: i.closeCode, reason: i.reason }; }, (e) => { c.closeInfo = { error: String(e) }; });
    (async () => {
      const r = s.readable.getReader();
      let buf = new Uint8Array(0);
      try {
        for (;;) {
          const { value, done } = await r.read();
          if (done) break;
          const nb = new Uint8Array(buf.length + value.length); nb.set(buf); nb.set(value, buf.length); buf = nb;
          while (buf.length >= 5) {
            const len = new DataView(buf.buffer, buf.byteOffset + 1, 4).getUint32(0);
            if (buf.length < 5 + len) break;
            c.frames.push(JSON.parse(this.dec.decode(buf.subarray(5, 5 + len))));
            buf = buf.slice(5 + len);
          }
        }
        c.ended = 'finished';
      } catch (e) { c.ended = String(e); }
    })();
    (async () => {
      const r = wt.datagrams.readable.getReader();
      try {
        for (;;) {
          const { value, done } = await r.read();
          if (done) break;
          c.datagrams.push({ kind: value[0], msg: JSON.parse(this.dec.decode(value.subarray(1))) });
        }
      } catch {}
    })();
    c.send = (obj, kind) => c.writer.write(window.wtLib.frame(obj, kind));
    c.maxDatagram = wt.datagrams.maxDatagramSize;
    return c;
  },
};
`;

async function newPage(browser, server) {
  const page = await browser.newPage();
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(PAGE_LIB);
  return page;
}

describe('WebTransport with headless Chromium', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ args: ['--no-demo', '--config', configFile()] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('serves the development certificate hash and advertises HTTP/3 with Alt-Svc', async () => {
    const res = await fetch(`${server.url}/wt/cert-hash`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('alt-svc'), `h3=":${server.port}"; ma=86400`);
    const body = await res.json();
    assert.equal(body.algorithm, 'sha-256');
    assert.match(body.hash, /^[0-9a-f]{64}$/);
    assert.equal(body.port, server.port, 'UDP on the TCP port number');
    const days = (body.not_after * 1000 - Date.now()) / 86400e3;
    assert.ok(days > 7 && days < 14, `valid for less than 14 days (${days.toFixed(1)} left)`);
  });

  test("a page of another origin may not open a WebTransport session or a WebSocket (allowed_origins is empty)", async () => {
    const page = await browser.newPage();
    // localhost and 127.0.0.1 are different origins of the same server.
    await page.goto(`http://localhost:${server.port}/healthz`);
    const outcome = await page.evaluate(async (port) => {
      const info = await (await fetch('/wt/cert-hash')).json();
      const value = new Uint8Array(info.hash.match(/../g).map((h) => parseInt(h, 16)));
      const wt = new WebTransport(`https://127.0.0.1:${port}/wt`, { serverCertificateHashes: [{ algorithm: 'sha-256', value }] });
      const wtResult = await wt.ready.then(() => 'opened', (e) => `refused: ${e && e.message}`);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'switchboard.v1.json');
      const wsResult = await new Promise((resolve) => {
        ws.onopen = () => resolve('opened');
        ws.onclose = (ev) => resolve(`refused: ${ev.code}`);
      });
      return { wtResult, wsResult };
    }, server.port);
    assert.match(outcome.wtResult, /^refused/, 'WebTransport');
    assert.match(outcome.wsResult, /^refused/, 'WebSocket');
    await page.close();
  });

  test('the SDK picks WebTransport, subscribes, receives, and resumes after a dropped session without loss', async () => {
    const page = await newPage(browser, server);
    await page.evaluate(async () => {
      const { Switchboard } = await import('/sdk/switchboard.js');
      const sb = new Switchboard({ backoff: { minMs: 50, maxMs: 200 } });
      window.sb = sb;
      window.got = [];
      window.transports = [];
      sb.on('transport', (e) => window.transports.push(e.transport));
      sb.subscribe('news').on('publication', (p) => window.got.push(p.data.n));
      sb.connect();
    });
    await waitUntil(() => page.evaluate(() => window.sb.state === 'connected' && window.sb.getSubscription('news').state === 'subscribed'), { message: 'SDK subscribed' });
    assert.equal(await page.evaluate(() => window.sb.transport), 'webtransport');
    for (let n = 1; n <= 5; n++) await publish(server.url, 'news', { n });
    await waitUntil(() => page.evaluate(() => window.got.length >= 5), { message: 'five live publications' });
    // Publish over the session itself: a command with a reply.
    const reply = await page.evaluate(() => window.sb.publish('news', { n: 6 }));
    assert.equal(reply.offset, 6);
    await waitUntil(() => page.evaluate(() => window.got.length >= 6), { message: 'own publication' });

    await page.evaluate(() => window.sb.dropConnection());
    for (let n = 7; n <= 12; n++) await publish(server.url, 'news', { n });
    await waitUntil(() => page.evaluate(() => window.got.length >= 12), { message: 'replay after resume' });
    await publish(server.url, 'news', { n: 13 });
    await waitUntil(() => page.evaluate(() => window.got.length >= 13), { message: 'live after resume' });
    assert.deepEqual(await page.evaluate(() => window.got), Array.from({ length: 13 }, (_, i) => i + 1));
    assert.equal(await page.evaluate(() => window.sb.transport), 'webtransport');
    await page.evaluate(() => window.sb.disconnect());
    await page.close();
  });

  test('presence over WebTransport', async () => {
    const page = await newPage(browser, server);
    const clients = await page.evaluate(async () => {
      const c = await window.wtLib.open();
      await c.send({ id: 1, connect: { name: 'ada' } });
      await c.send({ id: 2, subscribe: { channel: 'room' } });
      const t0 = Date.now();
      // Presence is added once the subscription is live: ask until it shows.
      for (let id = 3; Date.now() - t0 < 5000; id++) {
        await c.send({ id, presence: { channel: 'room' } });
        while (!c.frames.find((f) => f.id === id) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
        const reply = c.frames.find((f) => f.id === id);
        if (reply && reply.presence && Object.keys(reply.presence.clients).length) {
          c.wt.close();
          return reply.presence.clients;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      c.wt.close();
      return {};
    });
    assert.deepEqual(Object.values(clients).map((c) => c.name), ['ada']);
    await page.close();
  });

  test('datagram subscriptions get publications as datagrams; one too large for a datagram comes on the stream', async () => {
    const page = await newPage(browser, server);
    await page.evaluate(async () => {
      const c = await window.wtLib.open();
      window.c = c;
      await c.send({ id: 1, subscribe: { channel: 'game:state', datagram: true } });
      await c.send({ id: 2, subscribe: { channel: 'news', datagram: true } });
    });
    await waitUntil(() => page.evaluate(() => window.c.frames.filter((f) => f.id).length >= 2), { message: 'subscribe replies' });
    const replies = await page.evaluate(() => window.c.frames.filter((f) => f.id));
    assert.ok(replies.find((f) => f.id === 1).subscribe, JSON.stringify(replies));
    assert.equal(replies.find((f) => f.id === 2).error.code, 108, 'datagrams are off for that namespace');

    for (let n = 1; n <= 20; n++) await publish(server.url, 'game:state', { x: n, y: n * 2 });
    const maxDatagram = await page.evaluate(() => window.c.maxDatagram);
    assert.ok(maxDatagram > 100 && maxDatagram < 1500, `max datagram ${maxDatagram}`);
    // Larger than any QUIC datagram (quinn's path MTU tops out at 1452 bytes of UDP payload).
    const big = 'x'.repeat(3000);
    await publish(server.url, 'game:state', { big });
    await waitUntil(() => page.evaluate(() => window.c.frames.some((f) => f.pub && f.pub.data.big)), { message: 'oversize publication on the stream' });
    const { datagrams, streamPubs } = await page.evaluate(() => ({
      datagrams: window.c.datagrams,
      streamPubs: window.c.frames.filter((f) => f.pub),
    }));
    assert.ok(datagrams.length >= 1, 'datagrams arrived');
    const offsets = datagrams.map((d) => d.msg.pub.offset);
    assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `latest-wins, increasing: ${offsets}`);
    assert.equal(streamPubs.length, 1, 'only the oversize one on the stream');
    assert.equal(streamPubs[0].pub.offset, 21);

    // A client may publish in a datagram too (fire-and-forget; the reply comes on the stream).
    await page.evaluate(() => {
      const p = window.wtLib.enc.encode(JSON.stringify({ id: 9, publish: { channel: 'game:state', data: { from: 'dg' } } }));
      const d = new Uint8Array(p.length + 1);
      d.set(p, 1);
      return window.c.wt.datagrams.writable.getWriter().write(d);
    });
    await waitUntil(() => page.evaluate(() => window.c.frames.some((f) => f.id === 9 && f.publish)), { message: 'datagram publish reply' });
    await page.evaluate(() => window.c.wt.close());
    await page.close();
  });

  async function badSession(page, fn) {
    return page.evaluate(async (src) => {
      const c = await window.wtLib.open();
      await c.send({ id: 1, ping: {} });
      const t1 = Date.now();
      while (!c.frames.some((f) => f.id === 1) && Date.now() - t1 < 5000) await new Promise((r) => setTimeout(r, 20));
      // eslint-disable-next-line no-new-func
      await new Function('c', `return (async () => { ${src} })()`)(c);
      const t0 = Date.now();
      while (!c.closeInfo && Date.now() - t0 < 8000) await new Promise((r) => setTimeout(r, 20));
      return { frames: c.frames, closeInfo: c.closeInfo };
    }, fn);
  }

  test('bad input: garbage, oversize frames, bad datagrams and too many streams end the session with a code', async () => {
    const page = await newPage(browser, server);
    const cases = [
      ['garbage on the stream', `await c.writer.write(new TextEncoder().encode('GET / HTTP/1.1'));`, 3500],
      ['bad JSON in a frame', `await c.send('{"id":', 0);`, 3500],
      ['oversize frame', `const f = new Uint8Array(5); f[0] = 0; new DataView(f.buffer).setUint32(1, 64 * 1024 * 1024); await c.writer.write(f);`, 1009],
      ['garbage datagram', `await c.wt.datagrams.writable.getWriter().write(new Uint8Array([7, 1, 2, 3]));`, 3500],
      ['too many streams', `for (let i = 0; i < 8; i++) { c.wt.createBidirectionalStream().then((s) => s.writable.getWriter().write(new Uint8Array([0]))).catch(() => {}); await new Promise((r) => setTimeout(r, 30)); }`, 3500],
    ];
    for (const [name, src, code] of cases) {
      const r = await badSession(page, src);
      assert.ok(r.frames.some((f) => f.id === 1 && f.ping), `${name}: session worked before`);
      const bye = r.frames.find((f) => f.disconnect);
      assert.ok(bye, `${name}: a disconnect frame says why (${JSON.stringify(r)})`);
      assert.equal(bye.disconnect.code, code, name);
      assert.ok(r.closeInfo, `${name}: the session closed`);
    }
    // An oversize datagram never reaches the server (the browser refuses it); the session lives on.
    const ok = await page.evaluate(async () => {
      const c = await window.wtLib.open();
      const w = c.wt.datagrams.writable.getWriter();
      await w.write(new Uint8Array(c.maxDatagram + 500)).catch(() => {});
      await c.send({ id: 5, ping: {} });
      const t0 = Date.now();
      while (!c.frames.some((f) => f.id === 5) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      c.wt.close();
      return c.frames.some((f) => f.id === 5) && !c.frames.some((f) => f.disconnect);
    });
    assert.ok(ok, 'oversize datagram dropped, session fine');
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200, 'the server lives on');
    await page.close();
  });
});

describe('SDK fallback when UDP is unreachable', () => {
  test('with the HTTP/3 listener off, the same page ends up on WebSocket', async () => {
    const server = await startServer({ args: ['--no-demo'], env: { SWITCHBOARD_WEBTRANSPORT: 'false' } });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/healthz`);
      await page.evaluate(async () => {
        const { Switchboard } = await import('/sdk/switchboard.js');
        const sb = new Switchboard({ backoff: { minMs: 50, maxMs: 200 } });
        window.sb = sb;
        window.got = [];
        window.errors = [];
        window.order = sb.transports;
        sb.on('error', (e) => window.errors.push(e.transport));
        sb.subscribe('news').on('publication', (p) => window.got.push(p.data));
        sb.connect();
      });
      await waitUntil(() => page.evaluate(() => window.sb.state === 'connected' && window.sb.getSubscription('news').state === 'subscribed'), { message: 'connected after fallback', timeoutMs: 15_000 });
      assert.equal((await page.evaluate(() => window.order))[0], 'webtransport', 'WebTransport first where the browser has it');
      assert.equal(await page.evaluate(() => window.sb.transport), 'websocket');
      assert.ok((await page.evaluate(() => window.errors)).includes('webtransport'), 'WebTransport was tried and failed');
      await publish(server.url, 'news', { hello: 1 });
      await waitUntil(() => page.evaluate(() => window.got.length === 1), { message: 'publication over WebSocket' });
      await page.evaluate(() => window.sb.disconnect());
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});

describe('demo cursors page', () => {
  test('cursors move over datagrams, with the transport in use shown', async () => {
    const server = await startServer();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/cursors`);
      await waitUntil(() => page.evaluate(() => document.getElementById('in-use').textContent === 'webtransport'), { message: 'on WebTransport' });
      assert.equal(await page.evaluate(() => document.getElementById('delivery').textContent), 'datagrams (latest-wins)');
      await page.fill('#bots', '25');
      await page.dispatchEvent('#bots', 'change');
      await waitUntil(() => page.evaluate(() => Number(document.getElementById('count').textContent) >= 25), { message: '25 cursors drawn' });
      await waitUntil(() => page.evaluate(() => Number(document.getElementById('rate').textContent) > 100), { message: 'updates flowing' });
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});
