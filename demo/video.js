// Video demo: a WebRTC room `room:NAME`, mesh (browser to browser) or SFU (through the server),
// with camera, microphone, screen share and live receive statistics.
//
// Stable hooks (end-to-end tests drive the page through these):
//   #name #room #mode (mesh | sfu) #simulcast #transport (auto | websocket | webrtc) #join
//   #mute-audio #mute-video #screen (aria-pressed) #leave
//   #state (text and data-state: idle | joining | joined | left), #transport-in-use, #status, #count
//   #tiles > figure.tile[data-participant][data-label] (data-me on this tab's own tiles), each with
//     a <video>, .name, and for a remote video track data-track plus
//     .overlay[data-width][data-height][data-frames][data-bitrate] and, in SFU mode with
//     simulcast, select.layer (q | h | f). Remote audio plays in <audio data-track> inside the tile.
//     Camera tiles of whoever is speaking have data-speaking.
//   #record, #recordings: see recordings.js.
//   #composed, #composed-view: see composed.js.
//   Query: ?name=&room=&mode=sfu&transport=webrtc&simulcast=0&autojoin=1 preset the form.
//
// window.video = { sb, room, stats: Map<trackId, stats>, join(), leave() }

import { Switchboard } from '/sdk/switchboard.js';
import { followRoom } from '/demo/recordings.js';
import { closeComposed, offerComposed } from '/demo/composed.js';

const $ = (id) => document.getElementById(id);
const STATS_MS = 1000;
const TRANSPORTS = { auto: undefined, websocket: 'websocket', webrtc: ['webrtc', 'websocket'] };

let sb = null;
let room = null;
let media = null;
let screenTrack = null;
let statsTimer = null;
const tiles = new Map(); // `${client}|${label}` → {el, video}
const stats = new Map();
window.video = { get sb() { return sb; }, get room() { return room; }, stats, join, leave };

// --- form ------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
for (const id of ['name', 'room', 'mode', 'transport']) if (params.get(id)) $(id).value = params.get(id);
if (params.get('simulcast') === '0') $('simulcast').checked = false;
const channel = () => `room:${$('room').value.trim()}`;
$('room').addEventListener('input', () => { $('channel').textContent = channel(); });
$('channel').textContent = channel();

let statusTimer = null;
document.addEventListener('demo-status', (e) => status(e.detail));
function status(text) {
  $('status').textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { $('status').textContent = ''; }, 8000);
}

function showState(state) {
  $('state').textContent = state;
  $('state').dataset.state = state;
  const inCall = state === 'joining' || state === 'joined';
  for (const id of ['name', 'room', 'mode', 'simulcast', 'transport', 'join']) $(id).disabled = inCall;
  for (const id of ['mute-audio', 'mute-video', 'screen', 'record', 'leave']) $(id).disabled = !inCall;
}

function toggle(id, on, [offText, onText]) {
  $(id).setAttribute('aria-pressed', String(on));
  $(id).textContent = on ? onText : offText;
}

// --- joining ---------------------------------------------------------------------------------

/** Camera and microphone, or whatever of them there is (none: join to watch). */
async function getMedia() {
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } }; // big enough for three simulcast layers
  for (const want of [{ video, audio: true }, { video }, { audio: true }]) {
    try { return await navigator.mediaDevices.getUserMedia(want); } catch { /* try less */ }
  }
  status('No camera or microphone: joining to watch.');
  return null;
}

async function join() {
  const name = $('name').value.trim();
  if (!name || !$('room').reportValidity()) {
    status('Pick a name and a room (letters, digits, _ . -).');
    return null;
  }
  showState('joining');
  media = await getMedia();
  const mode = $('mode').value;
  sb = new Switchboard({ name, transports: TRANSPORTS[$('transport').value] });
  sb.on('transport', (e) => { $('transport-in-use').textContent = e.transport; });
  sb.on('error', (e) => { if (e.fatal) status(`Connection stopped: ${e.message} (${e.code})`); });
  room = sb.room(channel(), { mode, media, simulcast: mode === 'sfu' && $('simulcast').checked });
  room.on('participants', renderParticipants);
  room.on('track', addTrack);
  room.on('trackended', endTrack);
  room.on('speakers', markSpeakers);
  room.on('error', (err) => status(err.message));
  localTile('camera', media);
  try {
    await room.join();
  } catch (err) {
    status(`Cannot join: ${err.message}`);
    await leave();
    return null;
  }
  showState('joined');
  followRoom(room);
  if (mode === 'sfu') offerComposed(channel(), status);
  statsTimer = setInterval(refreshStats, STATS_MS);
  return room;
}

async function leave() {
  clearInterval(statsTimer);
  followRoom(null);
  closeComposed();
  const r = room;
  room = null;
  if (r) await r.leave();
  if (sb) sb.disconnect();
  sb = null;
  for (const t of [...(media ? media.getTracks() : []), screenTrack]) if (t) t.stop();
  media = screenTrack = null;
  for (const key of [...tiles.keys()]) removeTile(key);
  stats.clear();
  toggle('mute-audio', false, ['Mute mic', 'Unmute mic']);
  toggle('mute-video', false, ['Stop camera', 'Start camera']);
  toggle('screen', false, ['Share screen', 'Stop sharing']);
  $('count').textContent = '0';
  $('transport-in-use').textContent = '–';
  showState(r ? 'left' : 'idle');
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join();
});
$('leave').addEventListener('click', () => leave());

// --- controls --------------------------------------------------------------------------------

$('mute-audio').addEventListener('click', () => {
  const muted = $('mute-audio').getAttribute('aria-pressed') !== 'true';
  room.setMuted('audio', muted);
  toggle('mute-audio', muted, ['Mute mic', 'Unmute mic']);
});

$('mute-video').addEventListener('click', () => {
  const muted = $('mute-video').getAttribute('aria-pressed') !== 'true';
  room.setMuted('video', muted);
  toggle('mute-video', muted, ['Stop camera', 'Start camera']);
});

$('screen').addEventListener('click', async () => {
  if (screenTrack) {
    stopScreen();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true });
    screenTrack = stream.getVideoTracks()[0];
  } catch (err) {
    status(`No screen share: ${err.message}`);
    return;
  }
  if (!room) {
    screenTrack.stop();
    screenTrack = null;
    return;
  }
  screenTrack.addEventListener('ended', stopScreen); // the browser's own "Stop sharing"
  room.addTrack(screenTrack, 'screen');
  localTile('screen', new MediaStream([screenTrack]));
  toggle('screen', true, ['Share screen', 'Stop sharing']);
});

function stopScreen() {
  if (!screenTrack) return;
  if (room) room.removeTrack(screenTrack);
  screenTrack.stop();
  screenTrack = null;
  removeTile('me|screen');
  toggle('screen', false, ['Share screen', 'Stop sharing']);
}

// --- tiles -----------------------------------------------------------------------------------

/** Rings the camera tiles of the participants speaking now. */
function markSpeakers(list) {
  const speaking = new Set(list.map((s) => s.participant.client));
  for (const t of tiles.values()) {
    const on = t.el.dataset.label === 'camera' && speaking.has(t.el.dataset.participant);
    if (on) t.el.dataset.speaking = '';
    else delete t.el.dataset.speaking;
  }
}

function tileFor(key, { client, label, title, me = false }) {
  let tile = tiles.get(key);
  if (tile) return tile;
  const el = document.createElement('figure');
  el.className = 'tile';
  el.dataset.participant = client;
  el.dataset.label = label;
  if (me) el.dataset.me = '';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound plays through <audio> elements
  const name = document.createElement('figcaption');
  name.className = 'name';
  name.textContent = title;
  el.append(video, name);
  $('tiles').append(el);
  tile = { el, video };
  tiles.set(key, tile);
  return tile;
}

function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.el.remove();
  tiles.delete(key);
}

function localTile(label, stream) {
  const me = (room && room.clientId) || 'me';
  const title = label === 'screen' ? 'You (screen)' : `You (${$('name').value.trim()})`;
  const tile = tileFor(`me|${label}`, { client: me, label, title, me: true });
  tile.el.classList.toggle('mirror', label === 'camera');
  tile.el.dataset.video = stream && stream.getVideoTracks().length ? 'on' : 'off';
  tile.video.srcObject = stream;
}

const who = (p) => p.name || p.user || p.client.slice(0, 6);

function renderParticipants(list) {
  $('count').textContent = String(list.length);
  const mine = room && room.clientId;
  for (const t of tiles.values()) if (t.el.dataset.me !== undefined && mine) t.el.dataset.participant = mine;
  const present = new Set(list.map((p) => p.client));
  for (const p of list) {
    if (p.client === mine) continue;
    const tile = tileFor(`${p.client}|camera`, { client: p.client, label: 'camera', title: who(p) });
    if (!tile.el.dataset.video) tile.el.dataset.video = 'off';
  }
  for (const [key, t] of tiles) {
    // Tiles with a live track stay (a WHIP publisher is not in presence); trackended clears them.
    if (t.el.dataset.me === undefined && !t.el.dataset.track && !present.has(t.el.dataset.participant)) removeTile(key);
  }
}

function addTrack(e) {
  const p = e.participant;
  if (e.kind === 'audio') {
    const tile = tileFor(`${p.client}|camera`, { client: p.client, label: 'camera', title: who(p) });
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.dataset.track = e.trackId;
    audio.srcObject = new MediaStream([e.track]);
    tile.el.append(audio);
    return;
  }
  const label = e.label === 'camera' ? 'camera' : e.label;
  const title = label === 'camera' ? who(p) : `${who(p)} (${label})`;
  const tile = tileFor(`${p.client}|${label}`, { client: p.client, label, title });
  tile.el.dataset.track = e.trackId;
  tile.el.dataset.video = 'on';
  tile.video.srcObject = new MediaStream([e.track]);
  tile.el.querySelector('.overlay')?.remove();
  tile.el.querySelector('.layer')?.remove();
  const overlay = document.createElement('div');
  overlay.className = 'overlay';
  overlay.textContent = '…';
  tile.el.append(overlay);
  if (room && room.mode === 'sfu' && e.layers && e.layers.length > 1) tile.el.append(layerSelect(e));
}

function layerSelect(e) {
  const select = document.createElement('select');
  select.className = 'layer';
  select.dataset.track = e.trackId;
  select.setAttribute('aria-label', 'Simulcast layer');
  for (const rid of e.layers) select.append(new Option(rid, rid));
  select.value = e.layers.at(-1); // shown as the top layer until one is picked
  select.addEventListener('change', () => {
    room.setLayer(e.trackId, select.value).catch(() => {}); // failures reach the room's error event
  });
  return select;
}

function endTrack(e) {
  stats.delete(e.trackId);
  document.querySelector(`audio[data-track="${CSS.escape(e.trackId)}"]`)?.remove();
  for (const [key, t] of tiles) {
    if (t.el.dataset.track !== e.trackId) continue;
    if (t.el.dataset.label !== 'camera') {
      removeTile(key);
      continue;
    }
    t.video.srcObject = null;
    t.el.dataset.video = 'off';
    delete t.el.dataset.track;
    t.el.querySelector('.overlay')?.remove();
    t.el.querySelector('.layer')?.remove();
  }
}

// --- statistics ------------------------------------------------------------------------------

async function refreshStats() {
  if (!room) return;
  let list;
  try { list = await room.stats(); } catch { return; }
  for (const s of list) {
    if (s.kind !== 'video') continue;
    stats.set(s.trackId, s);
    const tile = [...tiles.values()].find((t) => t.el.dataset.track === s.trackId);
    const overlay = tile && tile.el.querySelector('.overlay');
    if (!overlay) continue;
    overlay.dataset.width = s.width ?? 0;
    overlay.dataset.height = s.height ?? 0;
    overlay.dataset.frames = s.framesDecoded ?? 0;
    overlay.dataset.bitrate = s.bitrate;
    const size = s.width ? `${s.width}×${s.height}` : 'no video yet';
    const fps = s.framesPerSecond ? ` · ${Math.round(s.framesPerSecond)} fps` : '';
    overlay.textContent = `${size} · ${Math.round(s.bitrate / 1000)} kbps${fps}`;
  }
}

showState('idle');
if (params.get('autojoin') === '1' && $('name').value.trim()) join();
