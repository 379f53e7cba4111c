// Sketch & Guess: a drawing game on a video call. The server's referee (src/game/) owns turns
// and scores and alone writes `gamestate:ID`; this page joins the call `game:ID`, draws on and
// watches `gamedraw:ID`, and sends guesses and its transport to `gameguess:ID`, which only the
// referee reads. docs/game.md describes the channels.
//
// Hooks for end-to-end tests:
//   #name #game #mode (sfu | mesh) #transport #join; #state[data-state]; #transport-in-use
//   #phase[data-phase] (waiting | drawing | reveal), #round, #hint, #word (the drawer's), #timer
//   canvas#board[data-strokes][data-pen]; #guess #send; #chat > li[data-kind] (chat | correct | system)
//   #tiles > figure.tile[data-client][data-name][data-score][data-transport] with data-me,
//     data-drawer, data-away, data-guessed, data-speaking; a <video> each.
//   Query: ?name=&game=&mode=&transport=&autojoin=1
//   window.game = { sb, room, board, state, channels, join(), leave() }

import { Switchboard } from '/sdk/switchboard.js';
import { Board } from '/demo/game-board.js';
import { Tiles } from '/demo/game-tiles.js';

const $ = (id) => document.getElementById(id);
const TRANSPORTS = { auto: undefined, websocket: 'websocket', sse: 'sse' };
const COLORS = ['#1d2433', '#d64545', '#f08c00', '#f5c400', '#1f9d55', '#2f6fe4', '#7b4fd6', '#8a5a2b', '#ffffff'];
const SIZES = [4, 10, 24];

let sb = null;
let room = null;
let media = null;
let channels = null;
let state = { phase: 'waiting', players: [], round: 0 };
let word = null; // { round, word } from the referee, when this player draws
let ticker = null;
const board = new Board($('board'), (msg) => publishStroke(msg));
const tiles = new Tiles($('tiles'));
window.game = {
  get sb() { return sb; }, get room() { return room; }, get state() { return state; },
  get channels() { return channels; }, board, join, leave,
};

// --- lobby -----------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
$('name').value = params.get('name') || localStorage.getItem('game-name') || '';
$('game').value = params.get('game') || `party-${Math.random().toString(36).slice(2, 6)}`;
for (const id of ['mode', 'transport']) if (params.get(id)) $(id).value = params.get(id);

let statusTimer = null;
function status(text) {
  $('status').textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { $('status').textContent = ''; }, 8000);
}

function showConnection(s) {
  $('state').textContent = s;
  $('state').dataset.state = s;
}

$('join-form').addEventListener('submit', (ev) => { ev.preventDefault(); join(); });
$('leave').addEventListener('click', () => leave());
$('invite').addEventListener('click', async () => {
  const url = `${location.origin}/game?game=${encodeURIComponent($('game').value.trim())}`;
  try { await navigator.clipboard.writeText(url); status('Invite link copied.'); } catch { status(url); }
});

// --- joining ---------------------------------------------------------------------------------

async function getMedia() {
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  for (const want of [{ video, audio: true }, { video }, { audio: true }]) {
    try { return await navigator.mediaDevices.getUserMedia(want); } catch { /* try less */ }
  }
  status('No camera or microphone: you can still draw and guess.');
  return null;
}

async function openGame(id) {
  const res = await fetch(`/game/api/games/${encodeURIComponent(id)}`, { method: 'POST' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.message || body.message || `HTTP ${res.status}`);
  return body;
}

async function join() {
  const name = $('name').value.trim();
  const id = $('game').value.trim();
  if (!name || !$('game').reportValidity()) { status('Pick a name and a game (letters, digits, _ -).'); return null; }
  localStorage.setItem('game-name', name);
  $('join').disabled = true;
  try { channels = await openGame(id); } catch (err) {
    status(`Cannot open the game: ${err.message}`);
    $('join').disabled = false;
    return null;
  }
  history.replaceState(null, '', `/game?game=${encodeURIComponent(id)}`);
  $('game-code').textContent = id;
  $('lobby').hidden = true;
  $('play').hidden = false;
  $('invite').disabled = false;
  media = await getMedia();
  sb = new Switchboard({ name, transports: TRANSPORTS[$('transport').value] });
  sb.on('state', (e) => {
    showConnection(e.state);
    // The referee may have stopped while nobody was here: opening again starts it.
    if (e.state === 'connected') openGame(id).catch(() => {});
    if (e.state === 'connected') hello();
  });
  sb.on('transport', (e) => { $('transport-in-use').textContent = e.transport; hello(); });
  sb.on('error', (e) => { if (e.fatal) status(`Connection stopped: ${e.message} (${e.code})`); });
  watchState();
  watchDrawing();
  room = sb.room(channels.room, { mode: $('mode').value, media, simulcast: false });
  room.on('track', (e) => tiles.track(e));
  room.on('trackended', (e) => tiles.trackEnded(e));
  room.on('speakers', (list) => tiles.speaking(list.map((s) => s.participant.client)));
  room.on('participants', (list) => tiles.participants(list));
  room.on('error', (err) => status(err.message));
  tiles.local(media);
  try {
    await room.join();
  } catch (err) {
    status(`Cannot join the call: ${err.message}`);
    await leave();
    return null;
  }
  tiles.me = room.clientId;
  watchWord();
  hello();
  ticker = setInterval(renderTimer, 250);
  render();
  return room;
}

async function leave() {
  clearInterval(ticker);
  const r = room;
  room = null;
  if (r) await r.leave().catch(() => {});
  if (sb) sb.disconnect();
  sb = null;
  for (const t of media ? media.getTracks() : []) t.stop();
  media = null;
  tiles.reset();
  board.setPen(false, 0);
  board.clear();
  $('chat').replaceChildren();
  state = { phase: 'waiting', players: [], round: 0 };
  word = null;
  $('play').hidden = true;
  $('lobby').hidden = false;
  $('join').disabled = false;
  $('invite').disabled = true;
  $('transport-in-use').textContent = '–';
  showConnection('left');
}

/** Tells the referee this player's transport (it shows it to everyone). */
function hello() {
  if (!sb || !channels || !sb.transport || !room || room.state !== 'joined') return;
  sb.publish(channels.guess, { type: 'hello', transport: sb.transport }).catch(() => {});
}

// --- the referee's channel -------------------------------------------------------------------

function watchState() {
  const sub = sb.subscribe(channels.state);
  sub.on('publication', (p) => onReferee(p.data, false));
  sub.on('error', (err) => status(`Game state: ${err.message}`));
  let loaded = false;
  sub.on('subscribed', async (e) => {
    if (loaded && e.recovered) return; // the SDK replayed what was missed
    loaded = true;
    // First time (or history lost): the latest state and the recent chat from history.
    const h = await sb.history(channels.state, { limit: 100, reverse: true }).catch(() => null);
    if (!h) return;
    const pubs = h.publications.slice().reverse();
    const last = pubs.filter((p) => p.data?.type === 'state').at(-1);
    $('chat').replaceChildren();
    for (const p of pubs) if (p.data?.type !== 'state') onReferee(p.data, true);
    if (last && (!state.at || last.data.at >= state.at)) onReferee(last.data, true);
  });
}

function onReferee(msg, old) {
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'state') {
    const before = state;
    state = { ...msg, receivedAt: Date.now() };
    // Live: trust msLeft; from history: what is left of it since the referee wrote it.
    state.endsAt = old && msg.at ? msg.at + (msg.msLeft ?? 0) : Date.now() + (msg.msLeft ?? 0);
    if (msg.phase === 'reveal' && before.phase === 'drawing') line('system', `The word was “${msg.word}”.`);
    if (msg.phase === 'drawing' && (before.round !== msg.round || before.phase !== 'drawing')) {
      const drawer = msg.players.find((p) => p.client === msg.drawer);
      if (!old) line('system', `Round ${msg.round}: ${drawer ? drawer.name : 'someone'} draws.`);
    }
    render();
    return;
  }
  if (msg.type === 'chat') line('chat', msg.text, msg.name, msg.client);
  if (msg.type === 'correct') line('correct', `guessed the word! +${msg.points}`, msg.name, msg.client);
}

function line(kind, text, name, client) {
  const li = document.createElement('li');
  li.dataset.kind = kind;
  if (client && sb && client === sb.clientId) li.classList.add('mine');
  if (name) {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = name;
    li.append(who, ' ');
  }
  li.append(text);
  const list = $('chat');
  list.append(li);
  while (list.children.length > 200) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

// --- the drawing -----------------------------------------------------------------------------

function publishStroke(msg) {
  if (!sb || !channels) return;
  // Datagrams on WebTransport (a lost one is a gap in a line); the stream elsewhere.
  const datagram = sb.transport === 'webtransport';
  sb.publish(channels.draw, msg, { datagram }).catch((err) => status(`Stroke not sent: ${err.message}`));
}

/** Only the referee (no sender) and the round's drawer are drawn. */
function fromDrawer(p) {
  if (p.data?.clear && !p.info) return true;
  return p.info && p.info.client === state.drawer && p.data?.r === state.round;
}

function watchDrawing() {
  const sub = sb.subscribe(channels.draw);
  let buffered = null; // live publications while the history loads
  sub.on('publication', (p) => {
    if (buffered) { buffered.push(p); return; }
    if (p.info && sb && p.info.client === sb.clientId) return; // drawn already, as it was drawn
    if (fromDrawer(p)) board.apply(p.data);
  });
  let loaded = false;
  sub.on('subscribed', async (e) => {
    if (loaded && e.recovered) return;
    loaded = true;
    buffered = [];
    await redraw();
    const pending = buffered;
    buffered = null;
    for (const p of pending) if (p.offset > board.offset && fromDrawer(p)) board.apply(p.data);
  });
}

/** Redraws the round from history: back to the last clear marker, then forward. */
async function redraw() {
  const h = await sb.history(channels.draw, { limit: 4000, reverse: true }).catch(() => null);
  board.clear();
  board.offset = h ? h.offset : 0;
  if (!h) return;
  const since = h.publications.findIndex((p) => p.data?.clear && !p.info);
  const round = since >= 0 ? h.publications.slice(0, since) : h.publications;
  const ownRound = since >= 0 ? h.publications[since].data.round : state.round;
  for (const p of round.reverse()) {
    if (p.data?.clear) board.clear();
    else if (p.info && p.data?.r === ownRound && (!state.drawer || p.info.client === state.drawer)) board.apply(p.data);
  }
}

// --- the secret word -------------------------------------------------------------------------

/** The referee tells the drawer the word in their signaling inbox (nobody else can read it). */
function watchWord() {
  const inbox = `${channels.room}@${room.clientId}`;
  const sub = sb.getSubscription(inbox);
  const take = (p) => {
    if (p.info || p.data?.type !== 'game-word') return;
    if (!word || p.data.round >= word.round) word = { round: p.data.round, word: String(p.data.word) };
    render();
  };
  if (sub) sub.on('publication', take);
  // It may have come before the subscription did.
  sb.history(inbox, { limit: 10, reverse: true }).then((h) => h.publications.forEach(take)).catch(() => {});
}

// --- rendering -------------------------------------------------------------------------------

function render() {
  const me = sb && sb.clientId;
  const drawing = state.phase === 'drawing';
  const iDraw = drawing && state.drawer === me;
  $('round').textContent = state.round ? String(state.round) : '–';
  $('phase').dataset.phase = state.phase;
  const drawer = state.players.find((p) => p.client === state.drawer);
  $('phase').textContent = {
    waiting: 'waiting for a second player',
    drawing: iDraw ? 'your turn to draw' : `${drawer ? drawer.name : '…'} is drawing`,
    reveal: 'round over',
  }[state.phase] ?? state.phase;
  $('hint').textContent = drawing ? (iDraw ? '' : state.hint) : state.phase === 'reveal' ? state.word : '';
  const secret = iDraw && word && word.round === state.round ? word.word : '';
  $('word').textContent = secret;
  $('tools').hidden = !iDraw;
  board.setPen(iDraw, state.round);
  const mine = state.players.find((p) => p.client === me);
  const canGuess = !!sb && !iDraw && !(drawing && mine?.guessed);
  $('guess').disabled = $('send').disabled = !canGuess;
  $('guess').placeholder = iDraw ? 'You are drawing…' : mine?.guessed && drawing ? 'You got it! Chat after the round' : 'Type your guess…';
  const banner = $('banner');
  banner.hidden = drawing;
  banner.textContent = state.phase === 'reveal' ? `The word was “${state.word}”` : 'Waiting for another player… share the invite link';
  if (me && tiles.me !== me) tiles.me = me;
  tiles.players(state.players, state.drawer, state.phase);
  // The referee lost our transport (we joined before it saw us): say it again.
  if (mine && sb.transport && mine.transport !== sb.transport) hello();
  renderTimer();
}

function renderTimer() {
  const left = Math.max(0, (state.endsAt ?? 0) - Date.now());
  const on = state.phase === 'drawing';
  $('timer').textContent = on ? `${Math.ceil(left / 1000)}s` : '';
  const total = (channels?.roundSecs ?? 80) * 1000;
  $('progress').style.width = on ? `${Math.min(100, (left / total) * 100)}%` : '0';
}

// --- controls --------------------------------------------------------------------------------

$('guess-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('guess').value.trim();
  if (!text || !sb) return;
  $('guess').value = '';
  sb.publish(channels.guess, { type: 'guess', text }).catch((err) => status(`Not sent: ${err.message}`));
});

for (const c of COLORS) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'swatch';
  b.style.background = c;
  b.title = c === '#ffffff' ? 'eraser' : c;
  b.setAttribute('aria-label', b.title);
  b.addEventListener('click', () => {
    board.color = c;
    for (const s of $('colors').children) s.setAttribute('aria-pressed', String(s === b));
  });
  b.setAttribute('aria-pressed', String(c === board.color));
  $('colors').append(b);
}
for (const w of SIZES) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'size';
  b.setAttribute('aria-label', `pen ${w}`);
  b.innerHTML = `<i style="width:${Math.min(w, 18)}px;height:${Math.min(w, 18)}px"></i>`;
  b.addEventListener('click', () => {
    board.width = w;
    for (const s of $('sizes').children) s.setAttribute('aria-pressed', String(s === b));
  });
  b.setAttribute('aria-pressed', String(w === 10));
  $('sizes').append(b);
}
board.width = 10;
$('clear').addEventListener('click', () => {
  board.clear();
  publishStroke({ clear: true, r: state.round });
});

function toggle(id, on, [offText, onText]) {
  $(id).setAttribute('aria-pressed', String(on));
  $(id).textContent = on ? onText : offText;
}
$('mute-audio').addEventListener('click', () => {
  const muted = $('mute-audio').getAttribute('aria-pressed') !== 'true';
  room?.setMuted('audio', muted);
  toggle('mute-audio', muted, ['Mute mic', 'Unmute mic']);
});
$('mute-video').addEventListener('click', () => {
  const muted = $('mute-video').getAttribute('aria-pressed') !== 'true';
  room?.setMuted('video', muted);
  toggle('mute-video', muted, ['Stop camera', 'Start camera']);
});

showConnection('idle');
if (params.get('autojoin') === '1' && $('name').value.trim()) join();
