// The transport lab (/lab) in headless Chromium: every technique runs the measured session, the
// figures are there and plausible (latency > 0, polling costs more bytes per message than a
// WebSocket, nothing lost across the forced drop on a reliable technique), and the impaired
// network control changes what is measured. Screenshots go to e2e/artifacts/ (not committed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startServer } from './helpers.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Runs the lab with `query` and resolves its rows (without the raw latencies). */
async function runLab(query, { width = 1360, height = 1000, shot } = {}) {
  const page = await browser.newPage({ viewport: { width, height } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const params = new URLSearchParams({ autorun: '1', idle: '2', count: '20', gap: '50', poll: '500' });
  for (const [k, v] of new URLSearchParams(query)) params.set(k, v);
  await page.goto(`${server.url}/lab?${params}`);
  await page.waitForFunction(() => window.lab?.done, null, { timeout: 240_000 });
  const { rows, error, markdown } = await page.evaluate(() => ({ rows: window.lab.results, error: window.lab.error, markdown: window.lab.markdown() }));
  if (shot) await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
  await page.close();
  assert.equal(error, null, 'the lab ran');
  assert.deepEqual(errors, [], 'no page errors');
  return { rows, markdown };
}

const ALL = ['poll', 'long-poll', 'stream', 'sse', 'websocket', 'stomp', 'sockjs', 'webtransport', 'webtransport-dg', 'webrtc', 'webrtc-unreliable'];
const UDP = new Set(['webtransport', 'webtransport-dg', 'webrtc', 'webrtc-unreliable']);

test('every technique runs the session with plausible figures and loses nothing across a drop', async () => {
  const { rows, markdown } = await runLab(`techniques=${ALL.join(',')}`, { shot: 'lab.png' });
  assert.deepEqual(rows.map((r) => r.id), ALL);
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  for (const r of rows) {
    assert.equal(r.error, undefined, `${r.id}: ${r.error}`);
    assert.ok(r.p50_ms > 0 && r.p99_ms >= r.p50_ms, `${r.id}: latency ${r.p50_ms}/${r.p99_ms}`);
    assert.ok(r.latencies.length > 0, `${r.id}: latencies`);
    if (!r.id.endsWith('-dg') && !r.id.endsWith('-unreliable')) {
      assert.equal(r.lost, 0, `${r.id}: lost in the burst`);
      assert.equal(r.lost_across_drop, 0, `${r.id}: lost across the drop`);
    } else if (r.lost || r.lost_across_drop) {
      assert.match(r.note, /unreliable/, `${r.id}: the page says why it lost some`);
    }
    assert.equal(r.duplicates, 0, `${r.id}: duplicates`);
    if (UDP.has(r.id)) {
      assert.equal(r.down_bytes_per_msg, null, `${r.id}: UDP bytes are not claimed`);
    } else {
      // The counted bytes hold at least the payload (64 bytes of padding) and its framing.
      assert.ok(r.down_bytes_per_msg > 64, `${r.id}: ${r.down_bytes_per_msg} B/msg down`);
    }
  }
  // Each poll is a request and a response with their headers; a WebSocket frame is a few bytes.
  assert.ok(by.poll.down_bytes_per_msg + by.poll.up_bytes_per_msg > by.websocket.down_bytes_per_msg + by.websocket.up_bytes_per_msg,
    `polling ${by.poll.down_bytes_per_msg}+${by.poll.up_bytes_per_msg} vs WebSocket ${by.websocket.down_bytes_per_msg}+${by.websocket.up_bytes_per_msg}`);
  assert.ok(by.poll.up_bytes_per_msg > 0 && by.websocket.up_bytes_per_msg === 0, 'only polling sends while receiving');
  assert.ok(by.poll.idle_requests_per_min >= 60, `polling every 500 ms is busy when idle: ${by.poll.idle_requests_per_min}/min`);
  assert.equal(by.websocket.idle_requests_per_min, 0, 'a WebSocket makes no request when idle');
  assert.ok(by.websocket.drop_noticed_ms != null && by.websocket.resumed_ms != null, 'the WebSocket saw the drop and came back');
  assert.ok(by.poll.p50_ms > by.websocket.p50_ms, "polling's latency floor is above a push transport's");
  assert.match(markdown, /^\| technique \| network \|/);
  assert.equal(markdown.trim().split('\n').length, ALL.length + 2, 'a Markdown row per technique');
});

test('the impaired network control delays the lab connections and loss shows as head-of-line blocking', async () => {
  const clean = (await runLab('techniques=websocket')).rows[0];
  // 60 messages at 20% loss: some lost segment is all but certain (0.8^60 < 2e-6 for none).
  const { rows } = await runLab('techniques=websocket,sse,webtransport-dg&delay=150&jitter=0&loss=20&count=60', { shot: 'lab-impaired.png' });
  const ws = rows.find((r) => r.id === 'websocket');
  assert.deepEqual(ws.impairment, { delay_ms: 150, jitter_ms: 0, loss: 0.2 });
  assert.equal(ws.messages, 60);
  assert.ok(ws.p50_ms >= 150, `WebSocket p50 ${ws.p50_ms} ms with 150 ms of delay (clean: ${clean.p50_ms})`);
  assert.ok(ws.p50_ms > clean.p50_ms + 100, 'the delay shows');
  // A lost segment's 200 ms retransmission holds it and the ones behind it back.
  assert.ok(ws.max_ms >= 150 + 150, `a lost segment's retransmission shows: max ${ws.max_ms} ms`);
  assert.equal(ws.lost + ws.lost_across_drop, 0, 'a reliable stream loses nothing, it is only late');
  // Datagrams are really lost (and the page says why), and the ones that arrive are not held back.
  const dg = rows.find((r) => r.id === 'webtransport-dg');
  assert.ok(dg.lost > 0, `WebTransport datagrams lost some of 60 at 20% loss: ${dg.lost}`);
  assert.match(dg.note, /unreliable/);
  assert.ok(dg.max_ms < ws.max_ms, `no head-of-line blocking: datagram max ${dg.max_ms} ms, WebSocket max ${ws.max_ms} ms`);
});

test('the page fits a small screen', async () => {
  const { rows } = await runLab('techniques=websocket,poll', { width: 390, height: 844, shot: 'lab-mobile.png' });
  assert.equal(rows.length, 2);
});
