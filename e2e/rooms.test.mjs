// End-to-end: calls in headless Chromium with fake cameras, through the SDK's rooms. Three
// pages in an SFU room and in a mesh room each decode both others' video and hear their audio;
// a leaver is seen by the others, and leaving logs no error; a subscriber switched to the low
// simulcast layer gets a smaller picture; a mesh call still connects with the TURN server as its
// only way through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as join_ } from 'node:path';
import { freePort, launchBrowser, startRedis, startServer, waitUntil } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ args: ['--turn-allow-loopback-peers'] });
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page joined to `room` as `name`; `window.room` is the SDK room, `window.events` its log. */
async function join(room, name, opts = {}) {
  const { node = server, ...rest } = opts;
  opts = rest;
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${node.url}/healthz`);
  await page.evaluate(async ({ room, name, opts }) => {
    const { Switchboard } = await import('/sdk/switchboard.js');
    const { width = 320, height = 240, transports = ['websocket'], ...roomOpts } = opts;
    const media = await navigator.mediaDevices.getUserMedia({ video: { width, height }, audio: true });
    window.sb = new Switchboard({ name, transports });
    window.events = [];
    window.room = window.sb.room(room, { media, ...roomOpts });
    for (const type of ['join', 'leave', 'trackended', 'error']) {
      window.room.on(type, (e) => window.events.push({ type, detail: String(e?.name ?? e?.participant ?? e?.message ?? '') }));
    }
    window.room.on('track', (e) => window.events.push({ type: 'track', detail: e.kind, trackId: e.trackId, layers: e.layers }));
    // Play remote audio as an app would (playout is what the speaker levels measure).
    window.room.on('track', (e) => {
      if (e.kind !== 'audio') return;
      const audio = new Audio();
      audio.srcObject = e.stream;
      audio.play().catch(() => {});
    });
    window.speakers = [];
    window.room.on('speakers', (list) => { window.speakers = list.map((s) => s.participant.name); });
    await window.room.join();
  }, { room, name, opts });
  return page;
}

/**
 * Leaves the room on `page` and closes it; asserts that leaving logged no console error and no
 * request answered an error (the SFU peer's DELETE once answered 404: the browser's `pc.close()`
 * had already hung up over DTLS, and the server had dropped the peer).
 */
async function leaveCleanly(page) {
  const problems = [];
  const onConsole = (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); };
  const onResponse = async (r) => { if (r.status() >= 400) problems.push(`${r.request().method()} ${r.url()}: ${r.status()} origin=${await r.request().headerValue("origin")} body=${await r.text().catch(() => "")}`); };
  page.on('console', onConsole);
  page.on('response', onResponse);
  await page.evaluate(() => window.room.leave());
  await new Promise((r) => setTimeout(r, 300)); // console and response events trail the call
  page.off('console', onConsole);
  page.off('response', onResponse);
  await page.close();
  assert.deepEqual(problems, [], 'leaving logs no errors and no request fails');
}

/** Remote tracks of a page: per kind, how many are flowing (frames decoded / bytes rising). */
async function flowing(page) {
  const first = await page.evaluate(() => window.room.stats());
  await new Promise((r) => setTimeout(r, 1500));
  const second = await page.evaluate(() => window.room.stats());
  const out = { video: 0, audio: 0, sizes: [] };
  for (const s of second) {
    const before = first.find((f) => f.trackId === s.trackId);
    if (!before) continue;
    if (s.kind === 'video' && s.framesDecoded > before.framesDecoded) {
      out.video += 1;
      out.sizes.push(`${s.width}x${s.height}`);
    }
    if (s.kind === 'audio' && s.bytesReceived > before.bytesReceived) out.audio += 1;
  }
  return out;
}

async function expectFlowing(pages, video, audio, message) {
  for (const [i, page] of pages.entries()) {
    await waitUntil(async () => {
      const f = await flowing(page);
      return f.video === video && f.audio === audio;
    }, { timeoutMs: 30_000, intervalMs: 200, message: `${message}: page ${i} receives ${video} video and ${audio} audio` });
  }
}

for (const mode of ['sfu', 'mesh']) {
  test(`three pages in a ${mode} room each receive both others' video and audio; a leaver is seen`, async () => {
    const room = `room:${mode}-three`;
    const pages = [];
    for (const name of ['ann', 'bob', 'cy']) pages.push(await join(room, name, { mode }));
    await expectFlowing(pages, 2, 2, mode);

    const names = await pages[0].evaluate(() => window.room.participants().map((p) => p.name).sort());
    assert.deepEqual(names, ['ann', 'bob', 'cy']);

    await leaveCleanly(pages[2]);
    for (const page of pages.slice(0, 2)) {
      await waitUntil(() => page.evaluate(() => window.events.some((e) => e.type === 'leave' && e.detail === 'cy')), {
        timeoutMs: 15_000, message: 'the others see cy leave',
      });
    }
    await expectFlowing(pages.slice(0, 2), 1, 1, `${mode} after a leave`);
    for (const page of pages.slice(0, 2)) {
      const errors = await page.evaluate(() => window.events.filter((e) => e.type === 'error'));
      assert.deepEqual(errors, [], 'no errors in the room');
      await leaveCleanly(page);
    }
  });
}

for (const mode of ['mesh', 'sfu']) {
  test(`a ${mode} call signals over the SSE and HTTP-streaming fallbacks`, async () => {
    const room = `room:${mode}-fallback`;
    const pages = [
      await join(room, 'sse', { mode, transports: ['sse'] }),
      await join(room, 'ndjson', { mode, transports: ['stream'] }),
    ];
    await expectFlowing(pages, 1, 1, `${mode} over one-way transports`);
    for (const page of pages) {
      const t = await page.evaluate(() => window.sb.transport);
      assert.ok(['sse', 'stream'].includes(t), `still on a one-way transport: ${t}`);
      const errors = await page.evaluate(() => window.events.filter((e) => e.type === 'error'));
      assert.deepEqual(errors, [], 'no errors in the room');
      await leaveCleanly(page);
    }
  });

  test(`a dropped connection keeps its client id and the ${mode} call goes on`, async () => {
    const room = `room:${mode}-drop`;
    const pages = [await join(room, 'stay', { mode }), await join(room, 'drop', { mode })];
    await expectFlowing(pages, 1, 1, `${mode} before the drop`);
    const before = await pages[1].evaluate(() => {
      window.pcOf = () => (window.room.mode === 'sfu' ? window.room._sfu.pc : [...window.room._mesh.peers.values()][0].pc);
      window.pcBefore = window.pcOf();
      const id = window.sb.clientId;
      window.sb.dropConnection();
      return id;
    });
    await waitUntil(() => pages[1].evaluate(() => window.sb.state === 'connected'), { message: 'reconnected' });
    const after = await pages[1].evaluate(() => ({ id: window.sb.clientId, same: window.pcOf() === window.pcBefore }));
    assert.equal(after.id, before, 'the server gave the client id back');
    assert.ok(after.same, 'the peer connection was kept');
    await expectFlowing(pages, 1, 1, `${mode} after the drop`);
    const names = await pages[0].evaluate(() => window.room.participants().map((p) => p.name).sort());
    assert.deepEqual(names, ['drop', 'stay']);
    for (const page of pages) {
      const errors = await page.evaluate(() => window.events.filter((e) => e.type === 'error'));
      assert.deepEqual(errors, [], 'no errors in the room');
      await leaveCleanly(page);
    }
  });
}

for (const mode of ['sfu', 'mesh']) {
  test(`active speakers (${mode}): whoever is unmuted is heard by everyone, themselves included`, async () => {
    const room = `room:${mode}-speakers`;
    const pages = [await join(room, 'ada', { mode }), await join(room, 'ben', { mode })];
    await expectFlowing(pages, 1, 1, `${mode} speakers`);
    const speakers = (page) => page.evaluate(() => window.speakers);
    const expectSpeakers = async (who) => {
      for (const [i, page] of pages.entries()) {
        await waitUntil(async () => JSON.stringify(await speakers(page)) === JSON.stringify(who), {
          timeoutMs: 15_000, intervalMs: 250, message: `page ${i} hears exactly ${who}: ${JSON.stringify(await speakers(page))}`,
        });
      }
    };
    await pages[1].evaluate(() => window.room.setMuted('audio', true));
    await expectSpeakers(['ada']);
    if (mode === 'sfu') {
      // The SFU passes the publisher's audio-level header extension on to subscribers.
      const level = await pages[1].evaluate(async () => {
        const receivers = window.room._sfu.pc.getReceivers().filter((r) => r.track.kind === 'audio');
        let max = 0;
        for (let i = 0; i < 40; i++) { // the level of the newest packet: sample it for 2 s
          for (const r of receivers) for (const s of r.getSynchronizationSources()) max = Math.max(max, s.audioLevel ?? 0);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return max;
      });
      assert.ok(level > 0.01, `ben's receiver reads ada's audio level from the RTP header: ${level}`);
    }
    await pages[0].evaluate(() => window.room.setMuted('audio', true));
    await pages[1].evaluate(() => window.room.setMuted('audio', false));
    await expectSpeakers(['ben']);
    for (const page of pages) {
      await page.evaluate(() => window.room.leave());
      await page.close();
    }
  });
}

test('a cluster: pages on two nodes share an SFU room, whose media lives on the node that claimed it', async () => {
  const redis = await startRedis();
  const redisPort = redis.port;
  const dir = mkdtempSync(join_(tmpdir(), 'sb-cluster-'));
  const config = join_(dir, 'switchboard.toml');
  // The page of node B posts its offer to node A: A must take B's origin (CORS).
  writeFileSync(config, 'allowed_origins = ["*"]\n');
  const nodes = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      nodes.push(await startServer({
        port,
        args: ['--config', config],
        env: { SWITCHBOARD_BROKER: `redis://127.0.0.1:${redisPort}`, SWITCHBOARD_NODE_URL: `http://127.0.0.1:${port}`, SWITCHBOARD_TURN: 'false' },
      }));
    }
    const room = 'room:cluster';
    const pages = [await join(room, 'on-a', { mode: 'sfu', node: nodes[0] }), await join(room, 'on-b', { mode: 'sfu', node: nodes[1] })];
    await expectFlowing(pages, 1, 1, 'cluster');
    const url = await pages[1].evaluate(() => window.room._sfu.link.url);
    assert.ok(url.startsWith(`${nodes[0].url}/rtc/peers/`), `node B's page holds its peer on node A: ${url}`);
    for (const page of pages) {
      await page.evaluate(() => window.room.leave());
      await page.close();
    }
  } finally {
    for (const n of nodes) await n.stop();
    redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('simulcast: a subscriber switched to the low layer receives a lower resolution', async () => {
  const room = 'room:simulcast';
  const pub = await join(room, 'pub', { mode: 'sfu', simulcast: true, width: 1280, height: 720 });
  const sub = await join(room, 'sub', { mode: 'sfu' });
  const size = async () => {
    const stats = await sub.evaluate(() => window.room.stats());
    const v = stats.find((s) => s.kind === 'video');
    return v ? { w: v.width, h: v.height, trackId: v.trackId } : { w: 0, h: 0 };
  };
  let high;
  await waitUntil(async () => {
    high = await size();
    return high.w >= 640;
  }, { timeoutMs: 40_000, intervalMs: 500, message: 'the subscriber gets a high layer (>= 640 wide)' });
  await sub.evaluate((trackId) => window.room.setLayer(trackId, 'q'), high.trackId);
  await waitUntil(async () => {
    const low = await size();
    return low.w > 0 && low.w <= high.w / 2;
  }, { timeoutMs: 20_000, intervalMs: 500, message: `the low layer is smaller than ${high.w}x${high.h}` });
  for (const p of [pub, sub]) {
    await p.evaluate(() => window.room.leave());
    await p.close();
  }
});

test('a mesh call connects with TURN as the only ICE server and relay-only policy', async () => {
  const room = 'room:relay';
  const res = await fetch(`${server.url}/api/ice-servers`);
  const { iceServers } = await res.json();
  const turnOnly = iceServers.filter((s) => [].concat(s.urls).some((u) => u.startsWith('turn:')));
  assert.ok(turnOnly.length > 0, 'the server hands out TURN credentials');
  const opts = { mode: 'mesh', iceServers: turnOnly, iceTransportPolicy: 'relay' };
  const pages = [await join(room, 'r1', opts), await join(room, 'r2', opts)];
  await expectFlowing(pages, 1, 1, 'relayed mesh');
  const types = await pages[0].evaluate(async () => {
    const out = [];
    for (const pc of [...window.room._mesh.peers.values()].map((p) => p.pc)) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
          out.push(stats.get(s.localCandidateId).candidateType);
        }
      });
    }
    return out;
  });
  assert.ok(types.length > 0 && types.every((t) => t === 'relay'), `selected pairs are relayed: ${types}`);
  for (const p of pages) {
    await p.evaluate(() => window.room.leave());
    await p.close();
  }
});

test('the /video demo: two tabs in an SFU room see each other with resolution and frame counts', async () => {
  const tabs = [];
  for (const name of ['vee', 'dub']) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
    await page.goto(`${server.url}/video?name=${name}&room=demo-e2e&mode=sfu&simulcast=0&autojoin=1`);
    tabs.push(page);
  }
  for (const [i, page] of tabs.entries()) {
    const other = i === 0 ? 'dub' : 'vee';
    await page.waitForFunction(() => document.querySelector('#state')?.dataset.state === 'joined', null, { timeout: 15_000 });
    await page.waitForFunction(() => {
      const o = document.querySelector('figure.tile:not([data-me]) .overlay[data-frames]');
      return o && Number(o.dataset.frames) > 10 && Number(o.dataset.width) > 0;
    }, null, { timeout: 30_000 });
    const names = await page.$$eval('figure.tile:not([data-me]) .name', (els) => els.map((e) => e.textContent));
    assert.ok(names.some((n) => n.includes(other)), `tab ${i} shows ${other}: ${names}`);
  }
  // Both microphones are on: each tab rings the other's camera tile as speaking.
  for (const page of tabs) {
    await page.waitForFunction(() => document.querySelector('figure.tile[data-speaking]:not([data-me])'), null, { timeout: 15_000 });
  }
  await tabs[1].click('#leave');
  await tabs[0].waitForFunction(() => !document.querySelector('figure.tile:not([data-me]) .overlay[data-frames]'), null, { timeout: 15_000 });
  for (const t of tabs) await t.close();
});
