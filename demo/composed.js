// The video demo's composed view: instead of one tile per participant, the whole room as ONE
// stream composed by the server (a grid with names, and the room's mixed audio), as a TV or a
// phone on a weak link would watch it. The button starts the room's composition if none runs
// (POST /api/rooms/{room}/compositions; shown only where the page may), then plays its track
// over WHEP (`?track=ID&audio=mix`). docs/video.md.
//
// Stable hooks: #composed (aria-pressed), #composed-view (hidden unless on) > video.

const $ = (id) => document.getElementById(id);

let room = null; // the room channel name
let pc = null;
let resource = null;

async function composition(name) {
  const path = `/api/rooms/${encodeURIComponent(name)}/compositions`;
  const list = await fetch(path);
  if (!list.ok) return null; // this page may not compose (the server holds the API key)
  const running = (await list.json()).running.find((r) => r.kind === 'composition');
  if (running) return running;
  const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"layout": "grid"}' });
  if (res.status !== 201) throw new Error(((await res.json().catch(() => ({}))).error || {}).message || res.statusText);
  return res.json();
}

async function play(name, track) {
  pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  const video = $('composed-view').querySelector('video');
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
    video.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done());
    setTimeout(done, 2000);
  });
  const url = `/whep/${encodeURIComponent(name)}?track=${encodeURIComponent(track)}&audio=mix`;
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error(await res.text());
  resource = res.headers.get('location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
}

function show(on) {
  $('composed').setAttribute('aria-pressed', String(on));
  $('composed').textContent = on ? 'Tiles view' : 'Composed view';
  $('composed-view').hidden = !on;
  $('tiles').hidden = on;
}

async function stop() {
  if (pc) pc.close();
  if (resource) fetch(resource, { method: 'DELETE' }).catch(() => {});
  pc = null;
  resource = null;
  show(false);
}

/** Offers the composed view of `name` (an SFU room this page joined); `status` shows errors. */
export async function offerComposed(name, status) {
  room = name;
  const probe = await fetch(`/api/rooms/${encodeURIComponent(name)}/compositions`).catch(() => null);
  $('composed').hidden = !(probe && probe.ok);
  $('composed').onclick = async () => {
    if (pc) return stop();
    try {
      const comp = await composition(room);
      if (!comp) return status('This page may not start a composition.');
      show(true);
      await play(room, comp.track);
    } catch (err) {
      status(`Composed view: ${err.message}`);
      await stop();
    }
  };
}

/** Leaves the composed view (the page left the room). */
export function closeComposed() {
  $('composed').hidden = true;
  return stop();
}
