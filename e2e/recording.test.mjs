// End-to-end: recording an SFU room of two headless Chromium pages with fake cameras, through
// the /video demo's Record button: the recording starts and stops, both pages list it (the
// events reach the other page), ffprobe decodes every file (VP8 and Opus, one pair per
// participant), and a recorded video plays in the page. A screenshot of the page is saved in
// $E2E_ARTIFACTS (default: a temporary directory) as recording-demo.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, startServer, waitUntil, sleep } from './helpers.mjs';

let server;
let browser;
const dir = mkdtempSync(join(tmpdir(), 'switchboard-recordings-'));
const artifacts = process.env.E2E_ARTIFACTS ?? join(tmpdir(), 'switchboard-e2e-artifacts');

const hasFfprobe = (() => {
  try { execFileSync('ffprobe', ['-version'], { stdio: 'ignore' }); return true; } catch { return false; }
})();

before(async () => {
  server = await startServer({ env: { SWITCHBOARD_RECORDINGS_DIR: dir } });
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function openVideoPage(name, room) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(`${server.url}/video?name=${name}&room=${room}&mode=sfu&simulcast=0&transport=websocket&autojoin=1`);
  await page.waitForSelector('#state[data-state="joined"]', { timeout: 20_000 });
  return page;
}

const remoteVideos = (page) => page.evaluate(() => document.querySelectorAll('figure.tile[data-track]:not([data-me])').length);

test('the demo records an SFU room of two pages, lists the recording on both and plays it', { skip: !hasFfprobe && 'no ffprobe' }, async () => {
  const room = `rec${Date.now() % 100000}`;
  const ann = await openVideoPage('Ann', room);
  const bob = await openVideoPage('Bob', room);
  for (const page of [ann, bob]) {
    await waitUntil(async () => (await remoteVideos(page)) === 1, { timeoutMs: 30_000, message: 'each page sees the other' });
  }
  // The panel shows: this open server lets the page record.
  await waitUntil(() => ann.evaluate(() => !document.getElementById('recordings').hidden), { message: 'the recordings panel' });

  await ann.click('#record');
  await waitUntil(() => ann.evaluate(() => document.getElementById('record').getAttribute('aria-pressed') === 'true'),
    { message: 'recording' });
  const id = await ann.evaluate(() => document.getElementById('record').dataset.recording);
  // Bob's page hears of it on the room channel.
  await waitUntil(() => bob.evaluate((id) => !!document.querySelector(`li.recording[data-id="${id}"][data-state="recording"]`), id),
    { timeoutMs: 10_000, message: "the other page lists the running recording" });
  // Four files once every track delivered a frame (video starts at a keyframe).
  await waitUntil(async () => (await (await fetch(`${server.url}/api/recordings/${id}`)).json()).files.length === 4,
    { timeoutMs: 15_000, message: 'a file per track' });
  await sleep(4000);
  await ann.click('#record');
  for (const page of [ann, bob]) {
    await waitUntil(() => page.evaluate((id) => !!document.querySelector(`li.recording[data-id="${id}"][data-state="stopped"]`), id),
      { timeoutMs: 10_000, message: 'both pages list it stopped' });
  }

  const rec = await (await fetch(`${server.url}/api/recordings/${id}`)).json();
  assert.equal(rec.state, 'stopped');
  const kinds = rec.files.map((f) => `${f.participant_name}:${f.kind}:${f.codec}`).sort();
  assert.deepEqual(kinds, ['Ann:audio:opus', 'Ann:video:vp8', 'Bob:audio:opus', 'Bob:video:vp8']);
  for (const f of rec.files) {
    const path = join(dir, id, f.name);
    assert.ok(existsSync(path), f.name);
    const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_packets', '-show_streams', '-of', 'json', path]));
    const s = probe.streams[0];
    assert.equal(s.codec_name, f.codec);
    // About 4 s and more: 25+ fps video from Chromium's fake camera, 50 Opus packets a second.
    assert.ok(Number(s.nb_read_packets) >= (f.kind === 'video' ? 40 : 150), `${f.name}: ${s.nb_read_packets} packets`);
    execFileSync('ffmpeg', ['-v', 'error', '-xerror', '-i', path, '-fps_mode', 'passthrough', '-f', 'null', '-']); // throws on a decode error
  }

  // A recorded video plays in the page (range requests, the <video> seeks).
  const played = await ann.evaluate(async (id) => {
    const v = document.querySelector(`li.recording[data-id="${id}"] video`);
    v.muted = true;
    await v.play();
    // Plays past half a second (a busy machine decodes slowly: wait on its progress, not a clock).
    await new Promise((resolve) => {
      const check = () => { if (v.currentTime > 0.5) resolve(); };
      v.addEventListener('timeupdate', check);
      setTimeout(resolve, 20_000);
      check();
    });
    const t = v.currentTime;
    v.currentTime = 1;
    await new Promise((r) => v.addEventListener('seeked', r, { once: true }));
    return { t, width: v.videoWidth, seeked: v.currentTime };
  }, id);
  assert.ok(played.t > 0.5 && played.width > 0, JSON.stringify(played));
  assert.ok(Math.abs(played.seeked - 1) < 0.5, JSON.stringify(played));

  mkdirSync(artifacts, { recursive: true });
  await ann.screenshot({ path: join(artifacts, 'recording-demo.png'), fullPage: true });
  await ann.setViewportSize({ width: 390, height: 844 });
  await ann.screenshot({ path: join(artifacts, 'recording-demo-phone.png'), fullPage: true });
  console.log(`screenshots in ${artifacts}`);
  await ann.close();
  await bob.close();
});

// Chromium's own H.264 (its encoder, its packetization) over WHIP, recorded into Matroska, which
// ffmpeg decodes and Chromium plays and seeks.
test('a Chromium WHIP publisher sending H.264 is recorded into an .mkv that ffmpeg decodes', { skip: !hasFfprobe && 'no ffprobe' }, async (t) => {
  const room = `room:rech264${Date.now() % 100000}`;
  const page = await browser.newPage();
  await page.goto(`${server.url}/healthz`);
  const published = await page.evaluate(async (path) => {
    const codecs = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264');
    if (!codecs.length) return { skip: 'this Chromium has no H.264 encoder' };
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    window.whip = new RTCPeerConnection();
    for (const track of media.getTracks()) {
      const t = window.whip.addTransceiver(track, { direction: 'sendonly' });
      if (track.kind === 'video') t.setCodecPreferences(codecs);
    }
    await window.whip.setLocalDescription(await window.whip.createOffer());
    await new Promise((r) => {
      if (window.whip.iceGatheringState === 'complete') return r();
      window.whip.addEventListener('icegatheringstatechange', () => window.whip.iceGatheringState === 'complete' && r());
      setTimeout(r, 2000);
    });
    const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: window.whip.localDescription.sdp });
    if (res.status !== 201) throw new Error(`${path} ${res.status}: ${await res.text()}`);
    await window.whip.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return { ok: true };
  }, `/whip/${room}`);
  if (published.skip) {
    await page.close();
    t.skip(published.skip);
    return;
  }
  let started;
  await waitUntil(async () => {
    const res = await fetch(`${server.url}/api/rooms/${encodeURIComponent(room)}/recordings`, { method: 'POST' });
    if (res.status === 201) started = await res.json();
    return !!started;
  }, { timeoutMs: 15_000, message: 'the room exists once the publisher connects' });
  const id = started.id;
  let last;
  await waitUntil(async () => (last = await (await fetch(`${server.url}/api/recordings/${id}`)).json()).files.length === 2,
    { timeoutMs: 15_000, message: 'a file per track' }).catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(last)}`); });
  await sleep(3000);
  const res = await fetch(`${server.url}/api/recordings/${id}`, { method: 'DELETE' });
  const rec = await res.json();
  assert.equal(rec.state, 'stopped', JSON.stringify(rec));
  assert.deepEqual(rec.skipped ?? [], []);
  const video = rec.files.find((f) => f.kind === 'video');
  assert.equal(video.codec, 'h264');
  assert.match(video.name, /\.mkv$/);
  const path = join(dir, id, video.name);
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_packets', '-show_streams', '-show_format', '-of', 'json', path]));
  const s = probe.streams[0];
  assert.match(probe.format.format_name, /matroska/);
  assert.equal(s.codec_name, 'h264');
  assert.ok(s.width > 0 && s.height > 0, `${s.width}x${s.height}`);
  assert.ok(Number(s.nb_read_packets) >= 30, `${s.nb_read_packets} packets in ~3 s`);
  console.log(`chromium h264: ${s.width}x${s.height} ${s.profile}, ${s.nb_read_packets} packets, ${probe.format.duration} s`);
  execFileSync('ffmpeg', ['-v', 'error', '-xerror', '-i', path, '-fps_mode', 'passthrough', '-f', 'null', '-']); // throws on a decode error

  // Chromium plays the .mkv from the server (range requests) and seeks it, cues or not.
  const played = await page.evaluate(async (url) => {
    const v = document.createElement('video');
    v.muted = true;
    v.src = url;
    document.body.append(v);
    await v.play();
    await new Promise((resolve) => {
      const check = () => { if (v.currentTime > 0.5) resolve(); };
      v.addEventListener('timeupdate', check);
      setTimeout(resolve, 20_000);
      check();
    });
    const t = v.currentTime;
    v.currentTime = 1;
    await new Promise((r) => v.addEventListener('seeked', r, { once: true }));
    return { t, width: v.videoWidth, duration: v.duration, seeked: v.currentTime };
  }, video.url);
  assert.ok(played.t > 0.5 && played.width > 0, JSON.stringify(played));
  assert.ok(Math.abs(played.seeked - 1) < 0.5, JSON.stringify(played));
  assert.ok(Math.abs(played.duration - Number(probe.format.duration)) < 0.1, `the Duration element: ${JSON.stringify(played)}`);
  await page.evaluate(() => window.whip.close());
  await page.close();
});
