// End-to-end: the admin dashboard (/admin) in headless Chromium, against real SDK connections.
// A server with an API key and an admin password; a second page opens 3 WebSocket and 2 SSE
// connections subscribed to one channel. The dashboard must refuse without the password (page
// and API), then show those counts (its own connection is one more WebSocket, listed as user
// `__admin`), disconnect a chosen connection with a chosen close code (the client sees that
// code), and unsubscribe an SSE connection (the client gets `unsubscribed` 3506). Channels are
// listed busiest first (publications per second). Two pages with fake cameras in an SFU room
// (one publishing simulcast) show up in the rooms panel with their tracks' codec, picture size,
// bitrate and layers, and the layer the subscriber gets, which follows its choice. In a cluster
// (two nodes on Redis), a channel busy on one node ranks first on the other node's dashboard.
// Screenshots go to e2e/artifacts/ (desktop and phone widths).
//
// Run: cargo build && cd e2e && node --test admin.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePort, launchBrowser, startRedis, startServer, waitUntil } from './helpers.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const API_KEY = 'e2e-admin-api-key';
const PASSWORD = 'e2e-admin-password';
const CHANNEL = 'chat:admin-e2e';

let server;
let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const recordings = mkdtempSync(join(tmpdir(), 'admin-recordings-'));
  server = await startServer({
    env: { SWITCHBOARD_API_KEY: API_KEY, SWITCHBOARD_ADMIN_PASSWORD: PASSWORD, SWITCHBOARD_RECORDINGS_DIR: recordings },
  });
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function api(path, key, init = {}) {
  const headers = { ...(key ? { 'X-API-Key': key } : {}), 'Content-Type': 'application/json' };
  const r = await fetch(`${server.url}${path}`, { ...init, headers });
  return { status: r.status, body: await r.json().catch(() => null) };
}

test('the admin API refuses without the key or the password', async () => {
  for (const path of ['/api/connections', '/api/admin/node', '/api/admin/nodes', '/api/rooms', '/api/turn']) {
    const none = await api(path);
    assert.equal(none.status, 401, `${path} without a key`);
    assert.equal(none.body.error.code, 101);
    assert.equal((await api(path, 'wrong')).status, 401, `${path} with a wrong key`);
    assert.equal((await api(path, API_KEY)).status, 200, `${path} with the API key`);
    assert.equal((await api(path, PASSWORD)).status, 200, `${path} with the admin password`);
  }
  assert.equal((await api('/api/admin/ticket', null, { method: 'POST', body: '{}' })).status, 401);
  // The stats channel is closed to everyone but the server and an admin ticket.
  const h = await api(`/api/history?channel=${encodeURIComponent('__admin:stats')}&limit=1`, PASSWORD);
  assert.equal(h.status, 200);
});

test('the page refuses a wrong password, then shows counts, disconnects and unsubscribes', async () => {
  const clients = await browser.newPage();
  await clients.goto(`${server.url}/healthz`);
  await clients.evaluate(async (channel) => {
    const { Switchboard } = await import('/sdk/switchboard.js');
    window.events = [];
    window.clients = [];
    const kinds = ['websocket', 'websocket', 'websocket', 'sse', 'sse'];
    await Promise.all(kinds.map((transport, i) => new Promise((resolve) => {
      const sb = new Switchboard({ transports: [transport], name: `${transport}-${i}` });
      sb.on('state', (e) => window.events.push({ i, transport, state: e.state, code: e.code }));
      const sub = sb.subscribe(channel);
      sub.on('subscribed', () => resolve());
      sub.on('unsubscribed', (e) => window.events.push({ i, transport, unsubscribed: e.channel, code: e.code }));
      sb.connect();
      window.clients.push(sb);
    })));
  }, CHANNEL);

  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  await page.goto(`${server.url}/admin`);
  await page.waitForSelector('#login:not([hidden])');
  assert.equal(await page.isHidden('#dash'), true, 'nothing shown before signing in');
  await page.fill('#key', 'not-the-password');
  await page.click('#login-form button[type=submit]');
  await waitUntil(async () => (await page.textContent('#login-error')).includes('not the admin password'));
  assert.equal(await page.isHidden('#dash'), true);

  await page.fill('#key', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#dash:not([hidden])');
  await page.waitForSelector('#live[data-state="live"]', { timeout: 10_000 });

  const row = `#channels tr[data-channel="${CHANNEL}"]`;
  await waitUntil(async () => (await page.getAttribute(row, 'data-subscribers').catch(() => null)) === '5',
    { message: 'the channel shows 5 subscribers' });
  const transports = await page.textContent(`${row} td.transports`);
  assert.match(transports, /websocket 3/);
  assert.match(transports, /sse 2/);
  // Live counts, through the stats channel: the 3 + 2 opened, plus the dashboard's own WebSocket.
  const count = (t) => page.textContent(`#by-transport tr[data-transport="${t}"] td.n`).catch(() => null);
  await waitUntil(async () => (await count('websocket')) === '4' && (await count('sse')) === '2',
    { message: 'by-transport shows 4 websocket (3 + the dashboard) and 2 sse' });
  const listed = await api('/api/connections?transport=websocket', API_KEY);
  assert.deepEqual(listed.body.connections.map((c) => c.user).sort(), ['', '', '', '__admin']);

  // Open the channel: history and a test publish.
  await page.click(`${row} td`);
  await page.click('#publish-form button[type=submit]');
  await waitUntil(async () => (await page.textContent('#ch-history')).includes('hello from the dashboard'));

  await page.screenshot({ path: join(ARTIFACTS, 'admin-desktop.png'), fullPage: true });

  // Disconnect one WebSocket client with a chosen code.
  const target = await page.getAttribute(`#connections tr[data-transport="websocket"]:not(:has-text("__admin"))`, 'data-conn');
  await page.click(`#connections tr[data-conn="${target}"] td`);
  await page.waitForSelector('#conn-panel:not([hidden])');
  // The panel opens before its details arrive (a request to the server API).
  await waitUntil(async () => /websocket/.test(await page.textContent('#conn-details')),
    { message: "the connection's details are shown" });
  assert.match(await page.textContent('#conn-details'), /127\.0\.0\.1/);
  await page.fill('#disconnect-custom', '4321');
  await page.click('#disconnect');
  await waitUntil(() => clients.evaluate(() => window.events.some((e) => e.code === 4321 && e.transport === 'websocket')),
    { message: 'a WebSocket client saw close code 4321' });
  await waitUntil(async () => (await page.$(`#connections tr[data-conn="${target}"]`)) === null
    || (await api(`/api/connections/${target}`, API_KEY)).status === 404, { message: 'the connection is gone' });

  // Unsubscribe an SSE client from the channel.
  const sse = await page.getAttribute('#connections tr[data-transport="sse"]', 'data-conn');
  await page.click(`#connections tr[data-conn="${sse}"] td`);
  await page.waitForSelector(`#conn-subs button[data-unsubscribe="${CHANNEL}"]`);
  await page.click(`#conn-subs button[data-unsubscribe="${CHANNEL}"]`);
  await waitUntil(() => clients.evaluate((ch) => window.events.some((e) => e.unsubscribed === ch && e.code === 3506), CHANNEL),
    { message: 'an SSE client got unsubscribed 3506' });
  const after = await api(`/api/connections/${sse}`, API_KEY);
  assert.equal(after.status, 200, 'the SSE connection stays open');
  assert.ok(!after.body.subscriptions.includes(CHANNEL));

  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, 'admin-phone.png'), fullPage: true });
  await clients.close();
  await page.close();
});

test('channels are listed busiest first, with their publication rate', async () => {
  const publish = (channel, n) => Promise.all(Array.from({ length: n }, (_, i) =>
    api('/api/publish', API_KEY, { method: 'POST', body: JSON.stringify({ channel, data: { i } }) })));
  await publish('chat:admin-busy', 40);
  await publish('chat:admin-quiet', 2);
  const { body } = await api('/api/channels', API_KEY);
  const names = body.channels.map((c) => c.channel);
  const rate = (name) => body.channels.find((c) => c.channel === name).rate;
  assert.ok(names.indexOf('chat:admin-busy') < names.indexOf('chat:admin-quiet'), names.join(', '));
  assert.ok(rate('chat:admin-busy') > rate('chat:admin-quiet') && rate('chat:admin-quiet') > 0,
    `busy ${rate('chat:admin-busy')} > quiet ${rate('chat:admin-quiet')} > 0`);
  for (let i = 1; i < body.channels.length; i++) assert.ok(body.channels[i - 1].rate >= body.channels[i].rate, 'sorted by rate');

  const page = await dashboard();
  const first = () => page.getAttribute('#channels tbody tr:first-child', 'data-channel').catch(() => null);
  // Keep it the busiest while the page looks (the rate decays over seconds).
  await waitUntil(async () => { await publish('chat:admin-busy', 10); return (await first()) === 'chat:admin-busy'; },
    { message: 'the busiest channel is the first row' });
  assert.ok(Number(await page.getAttribute('#channels tr[data-channel="chat:admin-busy"]', 'data-rate')) > 0);
  await page.close();
});

test('rooms: tracks with codec, size, bitrate and layers, and the layer each subscriber gets', async () => {
  const room = 'room:admin-e2e';
  const pub = await joinRoom(room, 'alice', { simulcast: true, width: 1280, height: 720 });
  const sub = await joinRoom(room, 'bob', {});
  const video = async () => (await sub.evaluate(() => window.room.stats())).find((s) => s.kind === 'video');
  // The API: alice's video track is VP8 with 3 layers; bob's receiver gets one of them, and the
  // picture size the server read from that layer's keyframes is what bob's decoder shows.
  let detail;
  let got;
  await waitUntil(async () => {
    const r = await api(`/api/rooms/${encodeURIComponent(room)}`, API_KEY);
    if (r.status !== 200) return false;
    detail = r.body;
    const v = await video();
    const recv = detail.peers.find((p) => p.name === 'bob')?.receiving.find((x) => x.kind === 'video' && x.layer);
    got = { v, recv };
    return v?.width >= 640 && recv?.width === v.width && recv.height === v.height && recv.bitrate > 0;
  }, { timeoutMs: 40_000, intervalMs: 500, message: 'bob\'s receiver to match his decoder' })
    .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(got)}`); });
  const alice = detail.peers.find((p) => p.name === 'alice');
  const track = alice.published.find((t) => t.kind === 'video');
  assert.equal(track.codec, 'VP8');
  assert.deepEqual(track.layers.map((l) => l.rid), ['q', 'h', 'f']);
  assert.ok(track.bitrate > 0 && track.width >= 640, JSON.stringify(track));
  assert.equal(alice.published.find((t) => t.kind === 'audio').codec, 'opus');
  assert.equal((await api('/api/rooms/room:nobody-here', API_KEY)).status, 404);

  // The page: the track row, and bob's row following his switch to the low layer.
  const page = await dashboard();
  const trackRow = `#rooms .room[data-room="${room}"] tr.track[data-track="${track.id}"]`;
  await page.waitForSelector(`${trackRow}[data-codec="VP8"]`, { timeout: 15_000 });
  assert.match(await page.textContent(trackRow), /alice/);
  assert.match(await page.textContent(trackRow), /\d+×\d+/);
  const bobRow = `#rooms tr.recv[data-track="${track.id}"]`;
  await page.waitForSelector(bobRow);
  await sub.evaluate((id) => window.room.setLayer(id, 'q'), track.id);
  await waitUntil(async () => (await page.getAttribute(bobRow, 'data-layer').catch(() => null)) === 'q',
    { timeoutMs: 20_000, message: 'bob\'s row shows the q layer' });
  const low = (await api(`/api/rooms/${encodeURIComponent(room)}`, API_KEY)).body.peers
    .find((p) => p.name === 'bob').receiving.find((x) => x.track === track.id);
  assert.ok(low.wanted === 'q' && low.width < got.v.width, JSON.stringify(low));
  await page.locator(`#rooms .room[data-room="${room}"]`).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'admin-rooms.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, 'admin-rooms-phone.png'), fullPage: true });
  for (const p of [pub, sub]) {
    await p.evaluate(() => window.room.leave());
    await p.close();
  }
  await page.close();
});

test('rooms: recordings start from the page, show as recording, stop from the page and download', async () => {
  const room = 'room:admin-rec';
  const carol = await joinRoom(room, 'carol', {});
  const page = await dashboard(); // signed in with the admin password, which the recording API takes
  const block = `#rooms .room[data-room="${room}"]`;
  await page.click(`${block} button[data-record="tracks"]`, { timeout: 20_000 });
  const rec = `${block} tr.rec[data-state="recording"]`;
  await page.waitForSelector(rec, { timeout: 15_000 });
  const id = await page.getAttribute(rec, 'data-rec');
  const listed = await api(`/api/recordings?room=${encodeURIComponent(room)}`, PASSWORD);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.body.recordings.map((r) => [r.id, r.state]), [[id, 'recording']]);
  // Carol's camera and microphone files appear in the row as they start.
  await page.waitForSelector(`${block} tr.rec[data-rec="${id}"] a[data-file$=".webm"] + a[data-file$=".webm"]`, { timeout: 20_000 });
  // The room's mix too, as its own recording of one Ogg file.
  await page.click(`${block} button[data-record="mix"]`);
  await waitUntil(async () => (await page.$$(`${block} tr.rec[data-state="recording"]`)).length === 2,
    { timeoutMs: 15_000, message: 'two recordings running' });
  const mixRow = `${block} tr.rec[data-state="recording"]:not([data-rec="${id}"])`;
  await page.waitForSelector(`${mixRow} a[data-file$="_room-mix.ogg"]`, { timeout: 15_000 });
  // And composed: the room's grid and its mix in one WebM (a composition started for it).
  await page.click(`${block} button[data-record="composed"]`);
  await page.waitForSelector(`${block} tr.rec[data-state="recording"] a[data-file$="_composed.webm"]`, { timeout: 20_000 });
  await page.locator(block).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'admin-recordings.png'), fullPage: true });

  // Stop all three from the page: the rows say stopped, and so does the API.
  for (let n = 0; n < 3; n++) await page.click(`${block} tr.rec[data-state="recording"] button[data-stop]`);
  await page.waitForSelector(`${block} tr.rec[data-rec="${id}"][data-state="stopped"]`, { timeout: 15_000 });
  await waitUntil(async () => (await page.$$(`${block} tr.rec[data-state="stopped"]`)).length === 3,
    { timeoutMs: 15_000, message: 'all three stopped' });
  const after = (await api(`/api/recordings?room=${encodeURIComponent(room)}`, PASSWORD)).body.recordings;
  assert.deepEqual(after.map((r) => r.state), ['stopped', 'stopped', 'stopped']);
  assert.ok(after.some((r) => r.mix && r.files.length === 1) && after.some((r) => !r.mix && !r.composition
    // carol's camera and microphone (and the composed recording's composition, a track of the room too)
    && r.files.filter((f) => f.participant !== 'server').length === 2));
  assert.ok(after.some((r) => r.composition && r.files.length === 1 && r.files[0].codec === 'vp8+opus'), JSON.stringify(after));
  assert.equal(await page.$(`${block} button[data-stop]`), null, 'nothing left to stop');

  // A file downloads from its link (the page sends the password; a plain link could not).
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`${block} tr.rec[data-rec="${id}"] a[data-file]`)]);
  const body = await download.createReadStream();
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.length;
  const file = after.find((r) => r.id === id).files.find((f) => f.name === download.suggestedFilename());
  assert.ok(file, download.suggestedFilename());
  assert.equal(bytes, file.bytes);
  await page.screenshot({ path: join(ARTIFACTS, 'admin-recordings-stopped.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  // The panel re-renders on each stats tick: a scroll that loses its element tries again.
  await page.locator(block).scrollIntoViewIfNeeded().catch(() => page.locator(block).scrollIntoViewIfNeeded());
  await page.screenshot({ path: join(ARTIFACTS, 'admin-recordings-phone.png') });
  await carol.evaluate(() => window.room.leave());
  await carol.close();
  await page.close();
});

test('a cluster: the dashboard on one node ranks a channel busy on the other first', async () => {
  const redis = await startRedis();
  const redisPort = redis.port;
  const nodes = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      nodes.push(await startServer({
        port,
        env: { SWITCHBOARD_BROKER: `redis://127.0.0.1:${redisPort}`, SWITCHBOARD_NODE_URL: `http://127.0.0.1:${port}`, SWITCHBOARD_TURN: 'false' },
      }));
    }
    const [a, b] = nodes;
    const channel = 'chat:admin-cluster';
    const publishOnB = () => Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`${b.url}/api/publish`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ channel, data: { i } }),
    })));
    // An open loopback server: the dashboard needs no key.
    const page = await dashboard(a.url, null);
    const first = () => page.getAttribute('#channels tbody tr:first-child', 'data-channel').catch(() => null);
    await waitUntil(async () => { await publishOnB(); return (await first()) === channel; },
      { timeoutMs: 15_000, intervalMs: 300, message: `node A's dashboard ranks ${channel} (busy on node B) first` });
    assert.ok(Number(await page.getAttribute(`#channels tr[data-channel="${channel}"]`, 'data-rate')) > 0);
    const onA = (await (await fetch(`${a.url}/api/channels`)).json()).channels.find((c) => c.channel === channel);
    assert.ok(!onA || onA.rate === 0, `node A accepted none of them itself: ${JSON.stringify(onA)}`);
    await page.close();
  } finally {
    for (const n of nodes) await n.stop();
    redis.stop();
  }
});

/** A signed-in dashboard page (`key` null: an open server, no sign-in). */
async function dashboard(url = server.url, key = PASSWORD) {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  await page.goto(`${url}/admin`);
  if (key !== null) {
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#key', key);
    await page.click('#login-form button[type=submit]');
  }
  await page.waitForSelector('#dash:not([hidden])');
  return page;
}

/** A page in SFU room `room` as `name`, with a fake camera and microphone. */
async function joinRoom(room, name, { width = 320, height = 240, ...opts }) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(async ({ room, name, width, height, opts }) => {
    const { Switchboard } = await import('/sdk/switchboard.js');
    const media = await navigator.mediaDevices.getUserMedia({ video: { width, height }, audio: true });
    window.sb = new Switchboard({ name, transports: ['websocket'] });
    window.room = window.sb.room(room, { media, mode: 'sfu', ...opts });
    await window.room.join();
  }, { room, name, width, height, opts });
  return page;
}
