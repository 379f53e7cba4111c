// End-to-end: the channel rules (src/rules.rs) hold on the transports only a browser exercises
// here. A signaling inbox `room:NAME@CLIENT` (docs/webrtc.md) is readable by its participant
// alone: Ann and Bob are in `room:r1`, Bob signals into Ann's inbox; then, through the SDK on
// each transport (WebTransport, WebRTC data channels, WebSocket, SSE, HTTP streaming):
//  - Eve, also in the room, asks for Ann's inbox from before the signal: refused with 103
//    (PermissionDenied) and never given the signal; her `history` and `presence` of it: 103;
//  - Ann, on the same transport, receives the signal (the refusal is about who, not a blanket ban).
// tests/rules.rs proves the same for the Rust client and raw HTTP.
//
// Run: cargo build && cd e2e && node --test rules.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

const CONFIG = `
[namespaces.room]
rooms = true
join_leave = true
history_size = 100
`;

const ROOM = 'room:r1';
/** Transports with commands and replies (history and presence go over the connection itself). */
const TWO_WAY = ['webtransport', 'webrtc', 'websocket'];
/** One-way transports: a refused channel refuses the request (HTTP 403 with the error's code). */
const ONE_WAY = ['sse', 'stream'];
const PERMISSION_DENIED = 103;

// Page-side: an SDK client on `transports`, with what it heard kept in `window.heard`.
const PAGE_LIB = `
window.start = async ({ transports, name }) => {
  const { Switchboard } = await import('/sdk/switchboard.js');
  window.sb = new Switchboard({ transports, name, backoff: { minMs: 50, maxMs: 500 } });
  window.heard = { pubs: [], subErrors: [], errors: [] };
  window.sb.on('error', (e) => window.heard.errors.push({ code: e.code, fatal: e.fatal, message: e.message }));
};
window.sub = (channel, since) => {
  const s = window.sb.subscribe(channel, since ? { since } : {});
  s.on('publication', (p) => window.heard.pubs.push({ channel: p.channel, offset: p.offset, data: p.data }));
  s.on('error', (e) => window.heard.subErrors.push({ channel, code: e.code, message: e.message }));
  return s.state;
};
window.subState = (channel) => window.sb.getSubscription(channel)?.state ?? 'removed';
// The code a command fails with, or 'ok' and its result.
window.codeOf = async (fn) => {
  try { return { ok: await fn() }; } catch (e) { return { code: e.code, message: e.message }; }
};
`;

describe("a signaling inbox is its participant's alone, in the browser", () => {
  let server;
  let browser;
  let dir;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-rules-'));
    const config = join(dir, 'switchboard.toml');
    writeFileSync(config, CONFIG);
    server = await startServer({ args: ['--no-demo', '--config', config] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** An SDK client on `transport` in its own browser context; closed when the test ends. */
  async function client(t, name, transport) {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err));
    t.after(() => assert.deepEqual(errors.map(String), [], `uncaught errors in ${name}'s page`));
    await page.goto(`${server.url}/healthz`);
    await page.evaluate(PAGE_LIB);
    await page.evaluate((o) => window.start(o), { transports: [transport], name });
    return page;
  }

  /** Connects `page` into the room; resolves its client id. */
  async function joinRoom(page, transport) {
    await page.evaluate((room) => { window.sub(room); window.sb.connect(); }, ROOM);
    await page.waitForFunction((room) => window.sb.state === 'connected' && window.subState(room) === 'subscribed' && window.sb.clientId,
      ROOM, { timeout: 15_000 });
    assert.equal(await page.evaluate(() => window.sb.transport), transport);
    return page.evaluate(() => window.sb.clientId);
  }

  /** Ann and Bob in the room, Bob's signal in Ann's inbox and received by Ann on `transport`. */
  async function annGetsASignal(t, transport) {
    const ann = await client(t, 'ann', transport);
    const annId = await joinRoom(ann, transport);
    const inbox = `${ROOM}@${annId}`;
    await ann.evaluate((ch) => window.sub(ch), inbox);
    await ann.waitForFunction((ch) => window.subState(ch) === 'subscribed', inbox, { timeout: 10_000 });
    // One-way transports reopen for the new channel with the session: still Ann.
    assert.equal(await ann.evaluate(() => window.sb.clientId), annId, 'Ann keeps her client id');

    const bob = await client(t, 'bob', 'websocket');
    await joinRoom(bob, 'websocket');
    // Signalling needs Ann in the room's presence: wait for it rather than guess.
    await waitUntil(async () => {
      const p = await bob.evaluate((room) => window.sb.presence(room), ROOM);
      return Object.keys(p.clients).includes(annId);
    }, { timeoutMs: 10_000, message: 'Ann in the room presence' });
    const secret = `SECRET-SDP-${transport}-${Math.random().toString(36).slice(2)}`;
    const sent = await bob.evaluate(({ ch, sdp }) => window.sb.publish(ch, { type: 'offer', sdp }), { ch: inbox, sdp: secret });
    assert.ok(sent && sent.offset >= 1, `Bob's signal was stored: ${JSON.stringify(sent)}`);

    // The owner reads it: the rule is not a blanket ban.
    await ann.waitForFunction(({ ch, sdp }) => window.heard.pubs.some((p) => p.channel === ch && p.data?.sdp === sdp),
      { ch: inbox, sdp: secret }, { timeout: 10_000 });
    return { ann, annId, inbox, secret, since: { epoch: sent.epoch, offset: sent.offset - 1 } };
  }

  /** Nothing `page` heard or was answered holds `secret`. */
  async function neverSaw(page, secret, who) {
    const heard = await page.evaluate(() => window.heard);
    assert.ok(!JSON.stringify(heard).includes(secret), `${who} never receives the signal: ${JSON.stringify(heard)}`);
  }

  for (const transport of TWO_WAY) {
    test(`${transport}: Eve is refused Ann's inbox with 103 (subscribe, history, presence); Ann reads it`, { timeout: 45_000 }, async (t) => {
      const { ann, inbox, secret, since } = await annGetsASignal(t, transport);

      const eve = await client(t, 'eve', transport);
      await joinRoom(eve, transport);
      // From before the signal: were she let in, the resume would replay it.
      await eve.evaluate(({ ch, since }) => window.sub(ch, since), { ch: inbox, since });
      await eve.waitForFunction((ch) => window.subState(ch) !== 'pending', inbox, { timeout: 10_000 });
      const subErrors = await eve.evaluate(() => window.heard.subErrors);
      assert.deepEqual(subErrors.map((e) => [e.channel, e.code]), [[inbox, PERMISSION_DENIED]], `Eve's subscription is refused: ${JSON.stringify(subErrors)}`);
      assert.equal(await eve.evaluate((ch) => window.subState(ch), inbox), 'removed');

      const history = await eve.evaluate((ch) => window.codeOf(() => window.sb.history(ch)), inbox);
      assert.equal(history.code, PERMISSION_DENIED, `Eve's history: ${JSON.stringify(history)}`);
      const presence = await eve.evaluate((ch) => window.codeOf(() => window.sb.presence(ch)), inbox);
      assert.equal(presence.code, PERMISSION_DENIED, `Eve's presence: ${JSON.stringify(presence)}`);
      assert.equal(await eve.evaluate(() => window.sb.transport), transport, 'all of it went over the transport under test');
      assert.equal(await eve.evaluate(() => window.sb.state), 'connected', 'a refused channel does not cost Eve her connection');
      await neverSaw(eve, secret, 'Eve');

      // Ann's own history, over the same transport, has it.
      const own = await ann.evaluate((ch) => window.codeOf(() => window.sb.history(ch)), inbox);
      assert.deepEqual(own.ok?.publications.map((p) => p.data.sdp), [secret], `Ann's history: ${JSON.stringify(own)}`);
    });
  }

  for (const transport of ONE_WAY) {
    test(`${transport}: Eve's request for Ann's inbox is answered 403 with 103, and her history of it too; Ann reads it`, { timeout: 45_000 }, async (t) => {
      const { inbox, secret, since } = await annGetsASignal(t, transport);

      const eve = await client(t, 'eve', transport);
      await joinRoom(eve, transport);
      // Adding the inbox reopens the transport with it, from before the signal. An EventSource
      // cannot read a refusal's status: the browser's network log can.
      const path = transport === 'sse' ? '/sse' : '/stream';
      const refused = eve.waitForResponse((r) => {
        const url = new URL(r.url());
        return url.pathname === path && url.searchParams.getAll('channel').includes(inbox);
      }, { timeout: 10_000 });
      await eve.evaluate(({ ch, since }) => window.sub(ch, since), { ch: inbox, since });
      const res = await refused;
      assert.equal(res.status(), 403, `Eve's ${path} request for the inbox`);
      // Chromium drops the body once the SDK closes its EventSource: ask the same URL again.
      const again = await eve.evaluate(async (url) => { const r = await fetch(url); return { status: r.status, body: await r.text() }; }, res.url());
      const body = again.body;
      assert.deepEqual([again.status, JSON.parse(body).error?.code], [403, PERMISSION_DENIED], body);
      assert.ok(!body.includes(secret), 'the refusal does not carry the signal');
      if (transport === 'stream') {
        // fetch reads the code: the SDK stops (retrying the same request cannot help) and says why.
        await eve.waitForFunction(() => window.sb.state === 'closed', null, { timeout: 10_000 });
        const errors = await eve.evaluate(() => window.heard.errors);
        assert.deepEqual(errors.map((e) => [e.code, e.fatal]), [[PERMISSION_DENIED, true]], JSON.stringify(errors));
      }
      assert.notEqual(await eve.evaluate((ch) => window.subState(ch), inbox), 'subscribed');

      // Off a two-way transport, history is `GET /api/history`.
      const history = await eve.evaluate((ch) => window.codeOf(() => window.sb.history(ch)), inbox);
      assert.equal(history.code, PERMISSION_DENIED, `Eve's history: ${JSON.stringify(history)}`);
      const presence = await eve.evaluate((ch) => window.codeOf(() => window.sb.presence(ch)), inbox);
      assert.equal(presence.code, PERMISSION_DENIED, `Eve's presence: ${JSON.stringify(presence)}`);
      await eve.evaluate(() => window.sb.disconnect()); // the SSE client would go on retrying
      await neverSaw(eve, secret, 'Eve');
    });
  }
});
