// End-to-end: the audio MCU in headless Chromium with fake cameras and microphones, through the
// SDK's rooms. A page with `audio: 'mixed'` receives ONE audio track (the server's mix) while
// video still comes one track per participant through the SFU; the others are unaffected. In a
// namespace with `audio_mix = true`, every page gets the mix without asking.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as join_ } from 'node:path';
import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

let server;
let browser;
let dir;

before(async () => {
  dir = mkdtempSync(join_(tmpdir(), 'sb-mix-'));
  const config = join_(dir, 'mix.toml');
  writeFileSync(config, [
    '[namespaces.room]', 'rooms = true', 'join_leave = true',
    '[namespaces.meet]', 'rooms = true', 'join_leave = true', 'audio_mix = true', '',
  ].join('\n'));
  server = await startServer({ args: ['--no-demo', '--config', config] });
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A page joined to `room` as `name`; `window.room` is the SDK room, `window.tracks` its track events. */
async function join(room, name, opts = {}) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(async ({ room, name, opts }) => {
    const { Switchboard } = await import('/sdk/switchboard.js');
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    window.sb = new Switchboard({ name, transports: ['websocket'] });
    window.tracks = [];
    window.errors = [];
    window.room = window.sb.room(room, { media, mode: 'sfu', ...opts });
    window.room.on('error', (e) => window.errors.push(`${e.code}: ${e.message}`));
    window.room.on('track', (e) => {
      window.tracks.push({ kind: e.kind, trackId: e.trackId, label: e.label, from: e.participant.name });
      if (e.kind !== 'audio') return;
      const audio = new Audio();
      audio.srcObject = e.stream;
      audio.play().catch(() => {});
    });
    await window.room.join();
  }, { room, name, opts });
  return page;
}

/** Remote tracks of a page that are flowing, per kind (frames decoded / bytes rising). */
async function flowing(page) {
  const first = await page.evaluate(() => window.room.stats());
  await new Promise((r) => setTimeout(r, 1500));
  const second = await page.evaluate(() => window.room.stats());
  const out = { video: 0, audio: 0, audioIds: [] };
  for (const s of second) {
    const before = first.find((f) => f.trackId === s.trackId);
    if (!before) continue;
    if (s.kind === 'video' && s.framesDecoded > before.framesDecoded) out.video += 1;
    if (s.kind === 'audio' && s.bytesReceived > before.bytesReceived) {
      out.audio += 1;
      out.audioIds.push(s.trackId);
    }
  }
  return out;
}

async function expectFlowing(page, video, audio, message) {
  return waitUntil(async () => {
    const got = await flowing(page);
    if (got.video !== video || got.audio !== audio) throw new Error(JSON.stringify(got));
    return got;
  }, { timeoutMs: 30_000, intervalMs: 200, message: `${message}: ${video} video and ${audio} audio flowing` });
}

test('a page in mixed mode plays one remote audio track (the mix) while video still flows per participant', async () => {
  const room = 'room:mixed-one';
  const ann = await join(room, 'ann', { audio: 'mixed' });
  const bob = await join(room, 'bob');
  const cy = await join(room, 'cy');
  const seen = await expectFlowing(ann, 2, 1, 'ann (mixed)');
  assert.deepEqual(seen.audioIds, ['mix']);
  await expectFlowing(bob, 2, 2, 'bob (tracks)');
  await expectFlowing(cy, 2, 2, 'cy (tracks)');
  const audio = await ann.evaluate(() => window.tracks.filter((t) => t.kind === 'audio'));
  assert.deepEqual(audio, [{ kind: 'audio', trackId: 'mix', label: 'mix', from: 'Room mix' }], 'one audio track event: the mix');
  const receivers = await ann.evaluate(() => window.room._sfu.pc.getTransceivers()
    .filter((t) => t.receiver.track.kind === 'audio' && t.currentDirection !== 'inactive' && t.direction !== 'sendonly').length);
  assert.equal(receivers, 1, 'one receiving audio m-line');
  for (const page of [ann, bob, cy]) {
    assert.deepEqual(await page.evaluate(() => window.errors), []);
    await page.evaluate(() => window.room.leave());
    await page.close();
  }
});

test('in a namespace with audio_mix = true every page receives the mix without asking', async () => {
  const room = 'meet:standup';
  const ann = await join(room, 'ann');
  const bob = await join(room, 'bob');
  for (const [page, who] of [[ann, 'ann'], [bob, 'bob']]) {
    const seen = await expectFlowing(page, 1, 1, who);
    assert.deepEqual(seen.audioIds, ['mix']);
  }
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, /^switchboard_mixers 1$/m);
  assert.match(metrics, /^switchboard_mixed_participants 2$/m);
  for (const page of [ann, bob]) {
    await page.evaluate(() => window.room.leave());
    await page.close();
  }
});
