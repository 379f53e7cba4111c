// Switchboard demo: a chat room (chat:lobby) and a live ticker feed (demo:ticker).
//
// Stable element ids (end-to-end tests drive the page through these):
//   #transport        <select>: auto | websocket | webrtc | sse | stream | long-poll | poll. Changing it
//                     reconnects both clients with that transport. `/?transport=sse` preselects one.
//   #status           last error or notice (text)
//   Chat
//   #name             name input;  #join  button (joins, or rejoins under a new name)
//   #chat-state       connection state of the chat client (text and data-state)
//   #chat-transport   transport the chat client uses
//   #messages         <ol> of messages: <li data-offset data-epoch> with .name and .text
//   #presence         <ul> of who is here: <li data-client> with the name ("(you)" marks this tab)
//   #message          message input;  #send  button (enabled once joined)
//   Feed
//   #feed-state       connection state of the feed client (text and data-state)
//   #feed-transport   transport in use
//   #feed-count       publications received
//   #feed-gaps        silent gaps seen in `seq` (must stay 0)
//   #feed-seq         last seq
//   #feed-recovered   `recovered` of the last `subscribed` event: "true" | "false"
//   #feed-reconnects  times the feed lost its connection and reconnected
//   #price-SWB, #price-RUST, #price-HTTP   latest prices (.val), data-dir="up" | "down"
//   #drop             drops the feed's connection (sb.dropConnection())
//
// window.demo = {
//   feed: Switchboard,            // the feed client, created on load
//   chat: Switchboard | null,     // the chat client, after #join
//   stats: { count, gaps, lastSeq, recovered, reconnects, subscribed },  // feed counters
//   messages: [{ epoch, offset, name, text }],                          // chat, in order
//   presence: Map<clientId, { user, name }>,
//   setTransport(choice), join(name), send(text) → Promise,
// }

import { Switchboard } from '/sdk/switchboard.js';

const CHAT = 'chat:lobby';
const TICKER = 'demo:ticker';
const CHOICES = ['auto', 'websocket', 'webrtc', 'sse', 'stream', 'long-poll', 'poll'];

const $ = (id) => document.getElementById(id);
const transportsFor = (choice) => (choice === 'auto' ? undefined : choice);

// --- transport selector ----------------------------------------------------------------------

const params = new URLSearchParams(location.search);
if (CHOICES.includes(params.get('transport'))) $('transport').value = params.get('transport');
const choice = () => $('transport').value;

function setTransport(value) {
  if (!CHOICES.includes(value)) throw new Error(`unknown transport ${value}`);
  $('transport').value = value;
  const url = new URL(location.href);
  if (value === 'auto') url.searchParams.delete('transport');
  else url.searchParams.set('transport', value);
  history.replaceState(null, '', url);
  feed.setTransports(transportsFor(value));
  if (chat) chat.setTransports(transportsFor(value));
}

$('transport').addEventListener('change', () => setTransport(choice()));

let statusTimer = null;
function status(text) {
  $('status').textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { $('status').textContent = ''; }, 6000);
}

function showState(el, state) {
  el.textContent = state;
  el.dataset.state = state;
}

// --- live feed -------------------------------------------------------------------------------

const stats = { count: 0, gaps: 0, lastSeq: null, recovered: null, reconnects: 0, subscribed: 0 };
const lastPrice = {};
const presence = new Map(); // chat: client id → {user, name}
const demo = { feed: null, chat: null, stats, messages: [], presence, setTransport, join, send };
window.demo = demo;

const feed = new Switchboard({ transports: transportsFor(choice()) });
demo.feed = feed;
feed.on('state', (e) => {
  showState($('feed-state'), e.state);
  if (e.previous === 'connected' && e.state === 'connecting') {
    stats.reconnects++;
    $('feed-reconnects').textContent = stats.reconnects;
  }
});
feed.on('transport', (e) => { $('feed-transport').textContent = e.transport; });
feed.on('error', (e) => { if (e.fatal) status(`Feed stopped: ${e.message} (${e.code})`); });

const ticker = feed.subscribe(TICKER);
ticker.on('subscribed', (e) => {
  stats.subscribed++;
  stats.recovered = e.recovered;
  // A resume that was not honoured is announced, not silent: start counting afresh.
  if (!e.recovered) stats.lastSeq = null;
  $('feed-recovered').textContent = String(e.recovered);
});
ticker.on('publication', (p) => {
  const d = p.data;
  stats.count++;
  $('feed-count').textContent = stats.count;
  if (!d || typeof d !== 'object') return;
  if (typeof d.seq === 'number') {
    if (stats.lastSeq !== null && d.seq !== stats.lastSeq + 1) {
      stats.gaps++;
      $('feed-gaps').textContent = stats.gaps;
    }
    stats.lastSeq = d.seq;
    $('feed-seq').textContent = d.seq;
  }
  const el = $(`price-${d.symbol}`);
  if (el && typeof d.price === 'number') {
    const before = lastPrice[d.symbol];
    if (before !== undefined && d.price !== before) el.dataset.dir = d.price > before ? 'up' : 'down';
    lastPrice[d.symbol] = d.price;
    el.querySelector('.val').textContent = d.price.toFixed(2);
  }
});
feed.connect();

$('drop').addEventListener('click', () => feed.dropConnection());

// --- chat ------------------------------------------------------------------------------------

let chat = null;
let myName = '';
let chatEpoch = null;
let presenceTimer = null;
const messages = new Map(); // offset → message, for the current epoch

function join(name) {
  name = String(name ?? '').trim();
  if (!name) {
    status('Pick a name first.');
    return null;
  }
  if (chat) chat.disconnect();
  clearInterval(presenceTimer);
  myName = name;
  presence.clear();
  renderPresence();

  chat = new Switchboard({ name, transports: transportsFor(choice()) });
  demo.chat = chat;
  chat.on('state', (e) => {
    showState($('chat-state'), e.state);
    if (e.state === 'closed') status(`Chat stopped: ${e.reason || e.code}`);
  });
  chat.on('transport', (e) => {
    $('chat-transport').textContent = e.transport;
    // Polling clients get no join/leave events (and are never present): ask now and then.
    clearInterval(presenceTimer);
    if (e.transport === 'poll' || e.transport === 'long-poll') presenceTimer = setInterval(refreshPresence, 3000);
  });

  const sub = chat.subscribe(CHAT);
  sub.on('subscribed', (e) => {
    if (!e.recovered) {
      // Whatever we showed may be stale or incomplete: reload what the history still holds.
      if (e.epoch !== chatEpoch) {
        messages.clear();
        chatEpoch = e.epoch;
        renderMessages();
      }
      loadHistory(sub.channel);
    }
    refreshPresence();
  });
  sub.on('publication', (p) => addMessages([p]));
  sub.on('join', (e) => {
    presence.set(e.client, { user: e.user, name: e.name });
    renderPresence();
  });
  sub.on('leave', (e) => {
    presence.delete(e.client);
    renderPresence();
  });
  sub.on('error', (err) => status(`Cannot join ${CHAT}: ${err.message}`));
  chat.connect();

  $('join').textContent = 'Rejoin';
  $('message').disabled = false;
  $('send').disabled = false;
  $('message').placeholder = `Message as ${name}`;
  return chat;
}

async function loadHistory(channel) {
  const client = chat;
  try {
    const h = await client.history(channel, { limit: 50, reverse: true });
    if (client === chat) addMessages(h.publications);
  } catch (err) {
    if (err.code !== 108) status(`History: ${err.message}`); // 108: history is off for the namespace
  }
}

async function refreshPresence() {
  const client = chat;
  if (!client) return;
  try {
    const res = await client.presence(CHAT);
    if (client !== chat) return;
    presence.clear();
    for (const [id, info] of Object.entries(res.clients || {})) presence.set(id, info);
    renderPresence();
  } catch (err) {
    if (err.code !== 108) status(`Presence: ${err.message}`);
  }
}

function addMessages(pubs) {
  let changed = false;
  for (const p of pubs) {
    const d = p.data;
    if (!d || typeof d !== 'object' || typeof d.text !== 'string') continue;
    if (chatEpoch === null) chatEpoch = p.epoch;
    if (p.epoch !== chatEpoch || messages.has(p.offset)) continue;
    messages.set(p.offset, { epoch: p.epoch, offset: p.offset, name: String(d.name ?? '?'), text: d.text });
    changed = true;
  }
  if (changed) renderMessages();
}

function renderMessages() {
  const list = $('messages');
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  const items = [...messages.values()].sort((a, b) => a.offset - b.offset);
  demo.messages = items;
  list.replaceChildren(...items.map((m) => {
    const li = document.createElement('li');
    li.dataset.offset = m.offset;
    li.dataset.epoch = m.epoch;
    if (m.name === myName) li.classList.add('mine');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = m.name;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(name, text);
    return li;
  }));
  if (stick) list.scrollTop = list.scrollHeight;
}

function renderPresence() {
  const me = chat && chat.clientId;
  const entries = [...presence.entries()]
    .map(([id, info]) => ({ id, label: (info && (info.name || info.user)) || 'anonymous' }))
    .sort((a, b) => a.label.localeCompare(b.label) || a.id.localeCompare(b.id));
  $('presence').replaceChildren(...entries.map(({ id, label }) => {
    const li = document.createElement('li');
    li.dataset.client = id;
    li.textContent = id === me ? `${label} (you)` : label;
    if (id === me) li.classList.add('me');
    return li;
  }));
}

async function send(text) {
  text = String(text ?? '').trim();
  if (!text || !chat) return null;
  return chat.publish(CHAT, { name: myName, text });
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join($('name').value);
});

$('send-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('message');
  const text = input.value;
  if (!text.trim()) return;
  input.value = '';
  try {
    await send(text);
  } catch (err) {
    input.value = text;
    status(`Not sent: ${err.message}`);
  }
});

