// End-to-end: a composition (video MCU) in headless Chromium. Two pages publish their fake
// cameras over WHIP (VP8); the server API starts a composition of the room; a third page plays
// the composition's one track with the room's audio mix over WHEP (`?track=ID&audio=mix`) in a
// <video> element, which decodes frames of the configured size and receives the mixed audio (a screenshot goes to $E2E_ARTIFACTS when set).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

const artifacts = process.env.E2E_ARTIFACTS ?? join(tmpdir(), 'switchboard-e2e-artifacts');

let server;
let browser;
const ROOM = 'room:video-e2e';

before(async () => {
  server = await startServer();
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function page() {
  const p = await browser.newPage();
  p.on('pageerror', (e) => console.error('page error:', e.message));
  await p.goto(`${server.url}/healthz`);
  await p.evaluate(() => {
    window.offerTo = async (pc, path) => {
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((r) => {
        if (pc.iceGatheringState === 'complete') return r();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
        setTimeout(r, 2000);
      });
      const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      if (res.status !== 201) throw new Error(`${path} ${res.status}: ${await res.text()}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    };
  });
  return p;
}

test('a page plays a composition of two WHIP publishers in one <video>', async () => {
  const publishers = [await page(), await page()];
  for (const p of publishers) {
    await p.evaluate(async (room) => {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
      window.whip = new RTCPeerConnection();
      for (const track of media.getTracks()) window.whip.addTransceiver(track, { direction: 'sendonly' });
      await window.offerTo(window.whip, `/whip/${room}`);
    }, ROOM);
  }
  const res = await fetch(`${server.url}/api/rooms/${ROOM}/compositions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ width: 640, height: 360, fps: 15 }),
  });
  assert.equal(res.status, 201);
  const comp = await res.json();

  const viewer = await page();
  await viewer.evaluate(async ({ room, track }) => {
    window.whep = new RTCPeerConnection();
    window.whep.addTransceiver('video', { direction: 'recvonly' });
    window.whep.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    const stream = new MediaStream();
    window.whep.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; video.play().catch(() => {}); };
    window.painted = 0;
    const count = () => { window.painted += 1; video.requestVideoFrameCallback(count); };
    video.requestVideoFrameCallback(count);
    window.video = video;
    await window.offerTo(window.whep, `/whep/${room}?track=${encodeURIComponent(track)}&audio=mix`);
  }, { room: ROOM, track: comp.track });
  await waitUntil(async () => viewer.evaluate(() => window.painted > 15), {
    timeoutMs: 30_000, message: 'the <video> paints frames of the composition',
  });
  const size = await viewer.evaluate(() => [window.video.videoWidth, window.video.videoHeight]);
  assert.deepEqual(size, [640, 360], 'one track at the composition\'s size');
  const tracks = await viewer.evaluate(() => window.whep.getReceivers().map((r) => r.track.kind).sort());
  assert.deepEqual(tracks, ['audio', 'video'], 'one video track (the composition) and one audio track (the mix)');
  await waitUntil(async () => viewer.evaluate(async () => {
    let bytes = 0;
    (await window.whep.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes = s.bytesReceived; });
    return bytes > 2000;
  }), { timeoutMs: 15_000, message: 'the room\'s audio mix arrives with the composition' });

  await fetch(`${server.url}/api/rooms/${ROOM}/compositions/${comp.id}`, { method: 'DELETE' });
  for (const p of [...publishers, viewer]) await p.close();
});

test('the /video demo switches a participant to the composed view and back', async () => {
  const room = `cmp${Date.now() % 100000}`;
  const open = async (name) => {
    const p = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    p.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
    await p.goto(`${server.url}/video?name=${name}&room=${room}&mode=sfu&simulcast=0&transport=websocket&autojoin=1`);
    await p.waitForSelector('#state[data-state="joined"]', { timeout: 20_000 });
    return p;
  };
  const ann = await open('Ann');
  const bob = await open('Bob');
  await ann.waitForSelector('#composed:not([hidden])', { timeout: 10_000 });
  await ann.click('#composed');
  await waitUntil(async () => ann.evaluate(() => {
    const v = document.querySelector('#composed-view video');
    return v && v.videoWidth === 640 && v.videoHeight === 360 && v.currentTime > 0.5;
  }), { timeoutMs: 30_000, message: 'the composed view plays the composition' });
  assert.equal(await ann.getAttribute('#composed', 'aria-pressed'), 'true');
  assert.equal(await ann.isHidden('#tiles'), true, 'the tiles give way to the one stream');
  const list = await (await fetch(`${server.url}/api/rooms/room:${room}/compositions`)).json();
  assert.equal(list.running.length, 1, 'one composition for the room');
  mkdirSync(artifacts, { recursive: true });
  await ann.screenshot({ path: join(artifacts, 'composed-demo.png'), fullPage: true });
  await ann.setViewportSize({ width: 390, height: 844 });
  await ann.screenshot({ path: join(artifacts, 'composed-demo-phone.png'), fullPage: true });
  await ann.click('#composed');
  assert.equal(await ann.isHidden('#composed-view'), true);
  assert.equal(await ann.isHidden('#tiles'), false);
  await fetch(`${server.url}/api/rooms/room:${room}/compositions/${list.running[0].id}`, { method: 'DELETE' });
  await ann.close();
  await bob.close();
});
