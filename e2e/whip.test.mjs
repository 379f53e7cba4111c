// End-to-end: WHIP ingest and WHEP playback through the SFU, with nothing but the browser's own
// RTCPeerConnection and fetch (as a third-party WHIP/WHEP client would use them), plus the
// endpoints' error answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

let server;
let browser;

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
  await p.addInitScript(installOfferHelper);
  await p.goto(`${server.url}/healthz`);
  return p;
}

// Installed in every page: offer `pc`'s description to `path` (WHIP and WHEP both POST an
// `application/sdp` offer with every candidate gathered, at most 2 s) and apply the answer.
function installOfferHelper() {
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
    return { location: res.headers.get('location'), type: res.headers.get('content-type') };
  };
}

// In the page: publish the fake camera and microphone to `path` with WHIP. Resolves the
// resource URL and content type; the connection stays on `window.whip`.
async function whipPublish(path) {
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  window.whip = new RTCPeerConnection();
  for (const track of media.getTracks()) window.whip.addTransceiver(track, { direction: 'sendonly' });
  return window.offerTo(window.whip, path);
}

// In the page: play `path` with WHEP (receive-only audio and video).
async function whepPlay(path) {
  window.whep = new RTCPeerConnection();
  window.whep.addTransceiver('video', { direction: 'recvonly' });
  window.whep.addTransceiver('audio', { direction: 'recvonly' });
  return (await window.offerTo(window.whep, path)).location;
}

// In the page: inbound video and audio counters of `window[name]`.
async function inbound(name) {
  const stats = await window[name].getStats();
  const out = { frames: 0, width: 0, height: 0, audioBytes: 0 };
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') Object.assign(out, { frames: s.framesDecoded ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0 });
    if (s.kind === 'audio') out.audioBytes = s.bytesReceived ?? 0;
  });
  return out;
}

test('a page publishes over WHIP and another plays it over WHEP', async () => {
  const [pub, sub] = [await page(), await page()];
  const created = await pub.evaluate(whipPublish, '/whip/room:whip-e2e');
  assert.match(created.location, /^\/rtc\/peers\/[0-9a-f]{32}$/);
  assert.equal(created.type, 'application/sdp');
  const resource = await sub.evaluate(whepPlay, '/whep/room:whip-e2e');
  assert.match(resource, /^\/rtc\/peers\//);
  let first;
  await waitUntil(async () => {
    first = await sub.evaluate(inbound, 'whep');
    return first.frames > 5 && first.audioBytes > 1000;
  }, { timeoutMs: 20_000, message: 'WHEP player decodes video and receives audio' });
  assert.equal(first.width, 640);
  await waitUntil(async () => (await sub.evaluate(inbound, 'whep')).frames > first.frames + 10, {
    timeoutMs: 10_000, message: 'frames keep being decoded',
  });

  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const value = (name) => Number(metrics.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1]);
  assert.equal(value('switchboard_rtc_peers'), 2, 'one WHIP and one WHEP peer');
  assert.ok(value('switchboard_rtc_frames_forwarded_total') > 10, 'forwarded frames are counted');

  // The WHIP resource ends the stream; a second DELETE finds nothing.
  const del = await fetch(server.url + created.location, { method: 'DELETE' });
  assert.equal(del.status, 200);
  assert.equal((await fetch(server.url + created.location, { method: 'DELETE' })).status, 404);
  await pub.close();
  await sub.evaluate(() => window.whep.close());
  await sub.close();
});

test('WHIP and WHEP refuse bad input with stable codes', async () => {
  const post = (path, body, type = 'application/sdp') =>
    fetch(server.url + path, { method: 'POST', headers: { 'Content-Type': type }, body });
  const err = async (res) => (await res.json()).error.code;

  let res = await post('/whip/room:x', 'this is not sdp');
  assert.equal(res.status, 400);
  assert.equal(await err(res), 107);

  res = await post('/whip/chat:x', 'v=0');
  assert.equal(res.status, 404, 'chat is not a rooms namespace');
  assert.equal(await err(res), 102);

  res = await post('/whip/room:x', '{}', 'application/json');
  assert.equal(res.status, 415);

  // An offer whose only video codec the server does not forward.
  const p = await page();
  const offer = await p.evaluate(async () => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'sendonly' });
    const { sdp } = await pc.createOffer();
    // Keep only the AV1 payload type (the SFU forwards VP8 and H.264).
    const av1 = sdp.match(/a=rtpmap:(\d+) AV1\/90000/)[1];
    return sdp.replace(/^(m=video \d+ [A-Z/]+) .*$/m, `$1 ${av1}`);
  });
  await p.close();
  res = await post('/whip/room:x', offer);
  assert.equal(res.status, 400, 'no usable codec');
  assert.match((await res.json()).error.message, /no usable codec/);

  res = await fetch(`${server.url}/rtc/peers/00000000000000000000000000000000`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates',
  });
  assert.equal(res.status, 405);
  res = await fetch(`${server.url}/rtc/peers/00000000000000000000000000000000`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: '{}',
  });
  assert.equal(res.status, 404);
  assert.equal(await err(res), 102);
  assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server is still up');
});
