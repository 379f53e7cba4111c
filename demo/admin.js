// The dashboard: live stats from the `__admin:stats` channel (each node publishes its own every
// second; this page subscribes with an admin ticket), and tables from the server API
// (`/api/channels`, `/api/connections`, `/api/history`, `/api/presence`, `/api/rooms`,
// `/api/turn`), refreshed as stats arrive. Nothing here uses an endpoint a script could not.
//
// Stable hooks (end-to-end tests drive the page through these):
//   #login #key #login-form #login-error; #dash; #live (data-state: off | live)
//   #by-transport tr[data-transport] > td.n; #kpi-conns
//   #channels tr[data-channel][data-subscribers][data-rate] > td.transports; #channel-panel #ch-history
//   #connections tr[data-conn][data-transport]; #conn-panel #disconnect-code #disconnect-custom
//   #disconnect; #conn-subs button[data-unsubscribe]
//   #rooms .room[data-room] tr.track[data-track][data-codec][data-width][data-height][data-bitrate]
//   #rooms .room tr.recv[data-peer][data-track][data-layer]
//   recordings: see admin-rec.js
// window.admin = { refresh(), nodes }

import { Switchboard } from '/sdk/switchboard.js';
import { LineChart, short } from '/admin/chart.js';
import { loadRecordings, renderRecordings, wireRecordings } from '/admin/admin-rec.js';

const $ = (id) => document.getElementById(id);
const STATS = '__admin:stats';
const COLORS = {
  websocket: '#2f6fe4', sse: '#1f9d55', stream: '#8e5bd8', long_poll: '#c98a00', poll: '#e07b39',
  webtransport: '#d64545', webrtc: '#0fa3b1', stomp: '#6b7385', sockjs: '#b3446c',
};
const TRANSPORTS = Object.keys(COLORS);
const STALE_MS = 5000;

let key = sessionStorage.getItem('switchboard-admin-key') || '';
let sb = null;
let selectedChannel = null;
let selectedConn = null;
let historyBefore = null;
const nodes = new Map(); // node → latest snapshot
window.admin = { refresh, nodes };

const connsChart = new LineChart($('chart-conns'), TRANSPORTS.map((t) => ({ label: t, color: COLORS[t] })));
const msgsChart = new LineChart($('chart-msgs'), [
  { label: 'in', color: '#2f6fe4' }, { label: 'out', color: '#1f9d55' },
]);
legend($('legend-conns'), TRANSPORTS);
legend($('legend-msgs'), ['in', 'out'], { in: '#2f6fe4', out: '#1f9d55' });
for (const t of TRANSPORTS) $('conn-filter').append(new Option(t, t));

function legend(el, names, colors = COLORS) {
  el.replaceChildren(...names.map((n) => {
    const s = document.createElement('span');
    s.innerHTML = `<i style="background:${colors[n]}"></i>${n}`;
    return s;
  }));
}

// --- the API -----------------------------------------------------------------------------------

class Refused extends Error {}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { 'X-API-Key': key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await r.json().catch(() => ({}));
  if (r.status === 401) throw new Refused(json.error?.message || 'refused');
  if (!r.ok) throw new Error(json.error?.message || `${r.status}`);
  return json;
}

// --- sign in -----------------------------------------------------------------------------------

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  key = $('key').value;
  await start();
});
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem('switchboard-admin-key');
  key = '';
  sb?.disconnect();
  sb = null;
  showLogin('');
});

function showLogin(message) {
  $('dash').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  setLive(false);
}

async function start() {
  let ticket;
  try {
    ticket = await api('/api/admin/ticket', { method: 'POST', body: {} });
  } catch (e) {
    if (!(e instanceof Refused)) return showLogin(`Cannot reach the server: ${e.message}`);
    return showLogin(key ? 'That is not the admin password or the API key.' : '');
  }
  sessionStorage.setItem('switchboard-admin-key', key);
  $('login').hidden = true;
  $('dash').hidden = false;
  $('logout').hidden = false;
  sb = new Switchboard({
    transports: ['websocket', 'sse'],
    getToken: async () => (await api('/api/admin/ticket', { method: 'POST', body: {} })).ticket,
    token: ticket.ticket,
    name: 'dashboard',
  });
  sb.on('state', (e) => setLive(e.state === 'connected'));
  sb.subscribe(STATS).on('publication', (p) => {
    nodes.set(p.data.node, p.data);
    if (!$('node-name').dataset.set) $('node-name').textContent = p.data.node;
  });
  sb.connect();
  const me = await api('/api/admin/node');
  $('node-name').textContent = `served by ${me.node}`;
  $('node-name').dataset.set = '1';
  nodes.set(me.node, me);
  tick();
  setInterval(tick, 1000);
}

function setLive(on) {
  $('live').dataset.state = on ? 'live' : 'off';
  $('live').textContent = on ? 'live' : 'offline';
}

// --- every second: charts from the stats, tables from the API -----------------------------------

let busy = false;
async function tick() {
  const now = Date.now();
  const live = [...nodes.values()].filter((n) => now - n.at_ms < STALE_MS);
  const sum = (f) => live.reduce((a, n) => a + f(n), 0);
  const byTransport = TRANSPORTS.map((t) => sum((n) => n.connections[t] || 0));
  connsChart.push(byTransport);
  msgsChart.push([sum((n) => n.rate.messages_in), sum((n) => n.rate.messages_out)]);
  $('kpi-conns').textContent = short(byTransport.reduce((a, b) => a + b, 0));
  $('kpi-in').textContent = short(sum((n) => n.rate.messages_in));
  $('kpi-out').textContent = short(sum((n) => n.rate.messages_out));
  $('kpi-nodes').textContent = String(live.length);
  $('by-transport').tBodies[0].replaceChildren(...TRANSPORTS.map((t, i) => row(
    { 'data-transport': t }, [`<i class="dot" style="background:${COLORS[t]}"></i>${t}`, { cls: 'n', text: byTransport[i] }],
  )).filter((_, i) => byTransport[i] > 0 || i < 2));
  renderNodes(now);
  if (!busy && !document.hidden) {
    busy = true;
    try { await refresh(); } catch (e) {
      if (e instanceof Refused) showLogin('The server no longer takes this key.');
      else $('status').textContent = e.message;
    } finally { busy = false; }
  }
}

function renderNodes(now) {
  $('nodes').tBodies[0].replaceChildren(...[...nodes.values()].map((n) => {
    const stale = now - n.at_ms >= STALE_MS;
    const conns = Object.values(n.connections).reduce((a, b) => a + b, 0);
    const broker = n.broker.up ? `<span class="ok">● ${n.broker.kind}</span>` : `<span class="bad">● ${n.broker.kind}: ${esc(n.broker.reason || 'down')}</span>`;
    return row({ 'data-node': n.node, class: stale ? 'stale' : '' },
      [esc(n.node) + (stale ? ' <span class="pill">silent</span>' : ''), n.version, uptime(n.uptime_seconds), broker, conns, n.rate.messages_in, n.rate.messages_out]);
  }));
}

async function refresh() {
  const [channels, conns, rooms, turn] = await Promise.all([
    api('/api/channels'), api(`/api/connections${$('conn-filter').value ? `?transport=${$('conn-filter').value}` : ''}`),
    api('/api/rooms'), api('/api/turn'),
  ]);
  const all = $('conn-filter').value ? (await api('/api/connections')).connections : conns.connections;
  const transportsOf = new Map();
  for (const c of all) for (const ch of c.subscriptions) {
    const m = transportsOf.get(ch) || {};
    m[c.transport] = (m[c.transport] || 0) + 1;
    transportsOf.set(ch, m);
  }
  const list = busiest(channels.channels, conns.node);
  const top = Math.max(1, ...list.map((c) => c.rate));
  $('kpi-channels').textContent = String(list.length);
  $('channels-node').textContent = conns.node;
  $('conns-node').textContent = `${conns.node} · ${conns.total}`;
  $('channels').tBodies[0].replaceChildren(...list.map((c) => {
    const t = transportsOf.get(c.channel) || {};
    const tr = row({ 'data-channel': c.channel, 'data-subscribers': c.subscribers, 'data-rate': c.rate, tabindex: 0, class: c.channel === selectedChannel ? 'sel' : '' },
      [`<code>${esc(c.channel)}</code>`, { cls: 'rate', html: `<span class="bar" style="--w:${(100 * c.rate / top).toFixed(1)}%"></span>${c.rate}` },
        c.subscribers, { cls: 'transports', html: Object.entries(t).map(([k, n]) => `<span class="tag" style="--c:${COLORS[k]}">${k} ${n}</span>`).join(' ') }]);
    tr.addEventListener('click', () => openChannel(c.channel));
    return tr;
  }));
  $('connections').tBodies[0].replaceChildren(...conns.connections.map((c) => {
    const tr = row({ 'data-conn': c.id, 'data-transport': c.transport, tabindex: 0, class: c.id === selectedConn ? 'sel' : '' },
      [c.id, `<span class="tag" style="--c:${COLORS[c.transport] || '#999'}">${c.transport}</span>`, esc(c.user || (c.client ? 'anonymous' : '…')), esc(c.remote || '–'), esc(c.subscriptions.join(', '))]);
    tr.addEventListener('click', () => openConn(c.id));
    return tr;
  }));
  const recordings = rooms.rtc ? await loadRecordings(api, rooms.rooms.map((r) => r.room)) : new Map();
  if (selectedConn) renderConn(conns.connections.find((c) => c.id === selectedConn) || all.find((c) => c.id === selectedConn));
  renderRooms(rooms, recordings);
  renderTurn(turn);
}

// Busiest first across the cluster: this node's channels and rates (the API), plus the rates of
// the channels the other live nodes report as their busiest (their stats on __admin:stats).
function busiest(here, me) {
  const rows = new Map(here.map((c) => [c.channel, { ...c }]));
  const now = Date.now();
  for (const n of nodes.values()) {
    if (n.node === me || now - n.at_ms >= STALE_MS) continue;
    for (const b of n.busiest || []) {
      const row = rows.get(b.channel) || { channel: b.channel, subscribers: 0, rate: 0 };
      row.rate = Math.round((row.rate + b.rate) * 10) / 10;
      rows.set(b.channel, row);
    }
  }
  return [...rows.values()].sort((a, b) => b.rate - a.rate || b.subscribers - a.subscribers || a.channel.localeCompare(b.channel));
}

// --- a channel: history, test publish, presence --------------------------------------------------

async function openChannel(name) {
  selectedChannel = name;
  historyBefore = null;
  $('channel-panel').hidden = false;
  $('ch-name').textContent = name;
  $('ch-history').replaceChildren();
  await Promise.all([loadHistory(), loadPresence()]);
}
$('ch-close').addEventListener('click', () => { selectedChannel = null; $('channel-panel').hidden = true; });
$('ch-older').addEventListener('click', () => loadHistory());

async function loadHistory() {
  const ch = selectedChannel;
  try {
    // Newest 20 first; "older" reads the 20 before the oldest shown (`since` is exclusive).
    const q = new URLSearchParams({ channel: ch, limit: '20' });
    if (historyBefore) q.set('since', `${historyBefore.epoch}:${Math.max(0, historyBefore.offset - 21)}`);
    else q.set('reverse', 'true');
    const h = await api(`/api/history?${q}`);
    let pubs = h.publications;
    if (historyBefore) pubs = pubs.filter((p) => p.offset < historyBefore.offset).reverse();
    if (pubs.length) historyBefore = { epoch: h.epoch, offset: pubs[pubs.length - 1].offset };
    $('ch-older').disabled = !pubs.length || historyBefore.offset <= 1;
    $('ch-history').append(...pubs.map((p) => {
      const li = document.createElement('li');
      li.innerHTML = `<span class="off">#${p.offset}</span><code>${esc(JSON.stringify(p.data ?? p.b64))}</code>`;
      return li;
    }));
  } catch (e) {
    $('ch-history').innerHTML = `<li class="hint">${esc(e.message)}</li>`;
    $('ch-older').disabled = true;
  }
}

async function loadPresence() {
  try {
    const p = await api(`/api/presence?channel=${encodeURIComponent(selectedChannel)}`);
    const clients = Object.values(p.clients);
    $('ch-presence-count').textContent = clients.length;
    $('ch-presence').replaceChildren(...clients.map((c) => {
      const li = document.createElement('li');
      li.textContent = c.name || c.user || c.client;
      return li;
    }));
  } catch (e) {
    $('ch-presence-count').textContent = '–';
    $('ch-presence').innerHTML = `<li class="hint">${esc(e.message)}</li>`;
  }
}

$('publish-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const data = JSON.parse($('publish-data').value);
    const r = await api('/api/publish', { method: 'POST', body: { channel: selectedChannel, data } });
    $('status').textContent = `published at offset ${r.offset}`;
    historyBefore = null;
    $('ch-history').replaceChildren();
    await loadHistory();
  } catch (err) {
    $('status').textContent = `publish: ${err.message}`;
  }
});

// --- a connection: details, disconnect, unsubscribe ---------------------------------------------

async function openConn(id) {
  selectedConn = id;
  $('conn-panel').hidden = false;
  $('conn-id').textContent = id;
  try { renderConn(await api(`/api/connections/${id}`)); } catch (e) { $('status').textContent = e.message; }
}
$('conn-close').addEventListener('click', () => { selectedConn = null; $('conn-panel').hidden = true; });

function renderConn(c) {
  if (!c) {
    $('conn-details').innerHTML = '<dt>state</dt><dd>closed</dd>';
    $('conn-subs').replaceChildren();
    $('disconnect').disabled = true;
    return;
  }
  $('disconnect').disabled = false;
  const opened = new Date(c.opened_at * 1000).toLocaleTimeString();
  $('conn-details').innerHTML = [['transport', c.transport], ['user', c.user || 'anonymous'], ['name', c.name || '–'],
    ['client', c.client || '–'], ['remote', c.remote || '–'], ['opened', opened], ['node', c.node]]
    .map(([k, v]) => `<dt>${k}</dt><dd>${esc(v)}</dd>`).join('');
  $('conn-subs').replaceChildren(...c.subscriptions.map((ch) => {
    const li = document.createElement('li');
    li.innerHTML = `<code>${esc(ch)}</code> <button type="button" class="ghost small" data-unsubscribe="${esc(ch)}">unsubscribe</button>`;
    li.querySelector('button').addEventListener('click', async () => {
      try {
        await api(`/api/connections/${c.id}/unsubscribe`, { method: 'POST', body: { channel: ch } });
        $('status').textContent = `unsubscribed ${c.id} from ${ch}`;
        await refresh();
      } catch (e) { $('status').textContent = e.message; }
    });
    return li;
  }));
}

$('disconnect-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const code = Number($('disconnect-custom').value || $('disconnect-code').value);
  try {
    await api(`/api/connections/${selectedConn}/disconnect`, { method: 'POST', body: { code } });
    $('status').textContent = `disconnected ${selectedConn} with ${code}`;
    await refresh();
  } catch (err) { $('status').textContent = `disconnect: ${err.message}`; }
});

// --- rooms and TURN --------------------------------------------------------------------------

wireRecordings($('rooms'), { api, key: () => key, status: (t) => { $('status').textContent = t; }, changed: refresh });

function renderRooms(r, recordings) {
  if (!r.rtc) { $('rooms').innerHTML = '<p class="hint">WebRTC is off on this node.</p>'; return; }
  if (!r.rooms.length) { $('rooms').innerHTML = '<p class="hint">No WebRTC rooms with peers on this node.</p>'; return; }
  $('rooms').innerHTML = r.rooms.map((room) => renderRoom(room, recordings.get(room.room))).join('');
}

// One room: who is in it, each published track (codec, size, bitrate, simulcast layers), and
// what each subscriber gets of it (which layer, at which size and bitrate); its recordings.
function renderRoom(room, recordings) {
  const who = (p) => p.name || p.participant || p.role.toUpperCase();
  const tracks = new Map();
  for (const p of room.peers) for (const t of p.published) tracks.set(t.id, { ...t, owner: who(p) });
  const trackRows = [...tracks.values()].map((t) => `<tr class="track" data-track="${esc(t.id)}" data-codec="${esc(t.codec || '')}" data-width="${t.width ?? ''}" data-height="${t.height ?? ''}" data-bitrate="${t.bitrate}">
    <td>${esc(t.owner)}</td><td><i class="kind ${t.kind}" title="${t.kind}"></i>${esc(t.label)}</td><td>${esc(t.codec || '…')}</td>
    <td>${size(t)}</td><td class="num">${bps(t.bitrate)}</td>
    <td>${t.layers.map((l) => `<span class="tag layer" style="--c:${l.bitrate ? '#1f9d55' : '#9aa3b2'}" title="${size(l)} · ${bps(l.bitrate)}">${esc(l.rid)} ${l.height ? `${l.height}p` : ''}</span>`).join(' ') || '<span class="hint">–</span>'}</td></tr>`).join('');
  const recvRows = room.peers.flatMap((p) => p.receiving.filter((x) => x.track).map((x) => {
    const t = tracks.get(x.track);
    return `<tr class="recv" data-peer="${esc(p.peer)}" data-track="${esc(x.track)}" data-layer="${esc(x.layer || '')}">
      <td>${esc(who(p))}</td><td>${esc(t ? `${t.owner} · ${t.label}` : x.track)}</td>
      <td>${x.layer ? `<span class="tag" style="--c:#2f6fe4">${esc(x.layer)}</span>` : (t?.layers.length ? '<span class="hint">waiting</span>' : '–')}${x.wanted && x.wanted !== x.layer ? ` <span class="hint">wants ${esc(x.wanted)}</span>` : ''}</td>
      <td>${size(x)}</td><td class="num">${bps(x.bitrate)}</td></tr>`;
  })).join('');
  const people = room.participants.map((p) => `<li>${esc(p.name || p.user || p.client)}</li>`).join('');
  const peers = room.peers.length;
  return `<div class="room" data-room="${esc(room.room)}">
    <h3><code>${esc(room.room)}</code> <span class="pill muted">${room.participants.length} present · ${peers} peer${peers === 1 ? '' : 's'}</span></h3>
    <ul class="chips">${people}</ul>
    <h4>Published tracks</h4>
    ${trackRows ? `<div class="scroll"><table class="tracks"><thead><tr><th>by</th><th>track</th><th>codec</th><th>size</th><th class="num">bitrate</th><th>simulcast layers</th></tr></thead><tbody>${trackRows}</tbody></table></div>` : '<p class="hint">No tracks published.</p>'}
    <h4>Subscribers</h4>
    ${recvRows ? `<div class="scroll"><table class="recvs"><thead><tr><th>who</th><th>gets</th><th>layer</th><th>size</th><th class="num">bitrate</th></tr></thead><tbody>${recvRows}</tbody></table></div>` : '<p class="hint">Nobody receives a track.</p>'}
    ${renderRecordings(room.room, recordings ?? null, esc)}
  </div>`;
}

function size(x) { return x.width ? `${x.width}×${x.height}` : '<span class="hint">–</span>'; }
function bps(n) { return n >= 1e6 ? `${(n / 1e6).toFixed(2)} Mb/s` : n >= 1e3 ? `${Math.round(n / 1e3)} kb/s` : n ? `${n} b/s` : '–'; }

function renderTurn(t) {
  if (!t.turn) { $('turn').innerHTML = '<dt>TURN</dt><dd>off on this node</dd>'; return; }
  $('turn').innerHTML = [['address', t.address], ['allocations', t.allocations], ['allocations (total)', t.allocations_total],
    ['relayed to peers', bytes(t.bytes_to_peer)], ['relayed to clients', bytes(t.bytes_to_client)], ['auth failures', t.auth_failures],
    ['peers denied', t.peers_denied]].map(([k, v]) => `<dt>${k}</dt><dd>${esc(String(v))}</dd>`).join('');
}

// --- helpers ---------------------------------------------------------------------------------

function row(attrs, cells) {
  const tr = document.createElement('tr');
  for (const [k, v] of Object.entries(attrs)) if (v !== '') tr.setAttribute(k, v);
  for (const c of cells) {
    const td = document.createElement('td');
    if (c && typeof c === 'object') { if (c.cls) td.className = c.cls; if (c.html !== undefined) td.innerHTML = c.html; else td.textContent = c.text; } else td.innerHTML = String(c);
    tr.append(td);
  }
  return tr;
}
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
function uptime(s) { return s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`; }
function bytes(n) { return `${short(n)}B`; }

// Open servers (loopback, no secrets) take no key: try before asking.
start();
