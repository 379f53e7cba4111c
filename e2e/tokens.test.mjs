// End-to-end: tokens that expire while a browser stays connected, through the SDK's getToken.
// A `private` namespace takes subscriptions with a subscription token only (docs/protocol.md,
// "Subscription tokens"). On each transport, the page subscribes to `vip:feed` with a
// subscription token that lives 3 s and a connection token that lives 8 s
// (token_expiry_warning = 3), while the test publishes every 250 ms for 12 s:
//  - WebSocket: the subscription token expires (`unsubscribed`, 3005) and the SDK subscribes again
//    with a new one from where it stood; the connection token is replaced by `refresh` commands;
//  - SSE: the stream cannot send commands, so the `expiring` event and the `unsubscribed` event
//    each make the SDK reopen it with new tokens from its cursor;
// and on both every publication arrives exactly once, in order, and the client never stops.
//
// Run: cargo build && cd e2e && node --test tokens.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

const SECRET = 'e2e-token-secret';
const API_KEY = 'e2e-api-key';
const CONFIG = `
token_secret = "${SECRET}"
api_key = "${API_KEY}"
token_expiry_warning = 3

[namespaces.vip]
private = true
history_size = 1000
`;
const CHANNEL = 'vip:feed';

/** An HS256 JWT of `claims`. */
function sign(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}
const now = () => Math.floor(Date.now() / 1000);

const PAGE_LIB = `
window.start = async ({ transport, channel }) => {
  const { Switchboard } = await import('/sdk/switchboard.js');
  window.heard = { offsets: [], states: [], errors: [], connTokens: 0, subTokens: 0, unsubscribed: 0 };
  window.sb = new Switchboard({
    transports: [transport],
    backoff: { minMs: 50, maxMs: 300 },
    getToken: async () => { window.heard.connTokens++; return window.signConnection(); },
  });
  window.sb.on('state', (e) => window.heard.states.push(e.state));
  window.sb.on('error', (e) => window.heard.errors.push({ code: e.code, message: e.message }));
  const sub = window.sb.subscribe(channel, {
    getToken: async (ch) => { window.heard.subTokens++; return window.signSubscription(ch); },
  });
  sub.on('publication', (p) => window.heard.offsets.push(p.offset));
  sub.on('error', (e) => window.heard.errors.push({ code: e.code, message: e.message, sub: true }));
  sub.on('unsubscribed', () => window.heard.unsubscribed++);
  window.sb.connect();
};
`;

describe('tokens expire and are replaced while the browser stays subscribed', () => {
  let server;
  let browser;
  let dir;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-tokens-'));
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

  async function publish(n) {
    const res = await fetch(`${server.url}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
      body: JSON.stringify({ channel: CHANNEL, data: { n } }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    return JSON.parse(body).offset;
  }

  for (const transport of ['websocket', 'sse']) {
    test(`${transport}: short-lived connection and subscription tokens are replaced without losing a publication`, { timeout: 60_000 }, async (t) => {
      const context = await browser.newContext();
      t.after(() => context.close());
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (err) => errors.push(err));
      await page.exposeFunction('signConnection', () => sign({ sub: 'alice', exp: now() + 8 }));
      await page.exposeFunction('signSubscription', (channel) => sign({ sub: 'alice', channel, exp: now() + 3 }));
      await page.goto(`${server.url}/healthz`);
      await page.evaluate(PAGE_LIB);
      await page.evaluate((o) => window.start(o), { transport, channel: CHANNEL });
      await page.waitForFunction(() => window.sb.state === 'connected' && window.sb.getSubscription('vip:feed')?.state === 'subscribed',
        null, { timeout: 15_000 });

      const offsets = [];
      const until = Date.now() + 12_000;
      while (Date.now() < until) {
        offsets.push(await publish(offsets.length));
        await new Promise((r) => setTimeout(r, 250));
      }
      const last = offsets.at(-1);
      await waitUntil(async () => (await page.evaluate(() => window.heard.offsets)).includes(last),
        { timeoutMs: 15_000, message: `the last publication (${last}) reaches the page` });
      const heard = await page.evaluate(() => window.heard);
      const got = heard.offsets.filter((o) => o >= offsets[0]);
      assert.deepEqual(got, offsets, `every publication exactly once, in order (${transport}): ${JSON.stringify(heard)}`);
      assert.ok(heard.subTokens >= 3, `subscription tokens were replaced as they expired: ${heard.subTokens}`);
      assert.ok(heard.connTokens >= 2, `the connection token was replaced: ${heard.connTokens}`);
      assert.equal(heard.unsubscribed, 0, 'the subscription never ended');
      assert.deepEqual(heard.errors, [], 'no errors');
      assert.ok(!heard.states.includes('closed'), `never stopped: ${heard.states}`);
      if (transport === 'websocket') {
        assert.deepEqual(heard.states, ['connecting', 'connected'], 'one WebSocket: refreshed, never reconnected');
      }
      assert.deepEqual(errors.map(String), [], 'no uncaught page errors');
    });
  }
});
