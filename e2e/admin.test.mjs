// End-to-end: the admin dashboard (/admin) in headless Chromium, against real SDK connections.
// A server with an API key and an admin password; a second page opens 3 WebSocket and 2 SSE
// connections subscribed to one channel. The dashboard must refuse without the password (page
// and API), then show those counts (its own connection is one more WebSocket, listed as user
// `__admin`), disconnect a chosen connection with a chosen close code (the client sees that
// code), and unsubscribe an SSE connection (the client gets `unsubscribed` 3506).
// Screenshots go to e2e/artifacts/ (desktop and phone widths).
//
// Run: cargo build && cd e2e && node --test admin.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const API_KEY = 'e2e-admin-api-key';
const PASSWORD = 'e2e-admin-password';
const CHANNEL = 'chat:admin-e2e';

let server;
let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer({ env: { SWITCHBOARD_API_KEY: API_KEY, SWITCHBOARD_ADMIN_PASSWORD: PASSWORD } });
  browser = await launchBrowser();
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
  assert.match(await page.textContent('#conn-details'), /websocket/);
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
