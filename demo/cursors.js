// Cursors demo: every pointer on this board, and any bots, publish their position on
// `cursors:room`; every page draws all of them. On WebTransport the subscription asks for datagram
// delivery (latest-wins: a lost update is simply replaced by the next one) and positions are
// published in datagrams; elsewhere the same page runs over the SDK's fallback transports.
import { Switchboard } from '/sdk/switchboard.js';

const CHANNEL = 'cursors:room';
const SEND_MS = 33; // about 30 updates per second per cursor
const $ = (id) => document.getElementById(id);
const board = $('board');
const me = `user-${Math.random().toString(36).slice(2, 7)}`;
const color = (key) => `hsl(${[...key].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 360, 7)} 70% 45%)`;

const params = new URLSearchParams(location.search);
if (params.get('transport')) $('transport').value = params.get('transport');
const chosen = () => ($('transport').value === 'auto' ? undefined : $('transport').value);

const sb = new Switchboard({ transports: chosen(), name: me });
const cursors = new Map(); // key → {el, seen}
let received = 0;

function draw(key, x, y) {
  let c = cursors.get(key);
  if (!c) {
    const el = document.createElement('div');
    el.className = 'cursor';
    el.style.setProperty('--c', color(key));
    el.textContent = key;
    board.append(el);
    c = { el };
    cursors.set(key, c);
    $('count').textContent = cursors.size;
  }
  c.seen = performance.now();
  c.el.style.transform = `translate(${x * board.clientWidth}px, ${y * board.clientHeight}px)`;
}

function forget(key) {
  const c = cursors.get(key);
  if (!c) return;
  c.el.remove();
  cursors.delete(key);
  $('count').textContent = cursors.size;
}

const sub = sb.subscribe(CHANNEL, { datagram: true });
sub.on('publication', (p) => {
  received++;
  const d = p.data || {};
  if (typeof d.x === 'number' && typeof d.y === 'number') draw(String(d.id || (p.info && p.info.client) || '?'), d.x, d.y);
});
sub.on('leave', (e) => forget(e.name || e.client));
sb.on('transport', ({ transport }) => {
  $('in-use').textContent = transport;
  $('delivery').textContent = transport === 'webtransport' ? 'datagrams (latest-wins)' : 'reliable, in order';
});
sb.connect();
$('transport').addEventListener('change', () => sb.setTransports(chosen()));

// Forget cursors that went quiet (their page closed, or a bot stopped).
setInterval(() => {
  const now = performance.now();
  for (const [key, c] of cursors) if (key !== me && now - c.seen > 5000) forget(key);
  $('rate').textContent = received;
  received = 0;
}, 1000);

let pending = null;
let lastSent = 0;
function send(id, x, y) {
  sb.publish(CHANNEL, { id, x: Math.round(x * 1e4) / 1e4, y: Math.round(y * 1e4) / 1e4 }, { datagram: true }).catch(() => {});
}
board.addEventListener('pointermove', (ev) => {
  const r = board.getBoundingClientRect();
  pending = [(ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height];
  draw(me, ...pending);
});
setInterval(() => {
  if (!pending || sb.state !== 'connected') return;
  const now = performance.now();
  if (now - lastSent < SEND_MS) return;
  lastSent = now;
  send(me, ...pending);
  pending = null;
}, SEND_MS / 2);

// Bots: Lissajous curves, so a single page can show many cursors moving.
let t = 0;
setInterval(() => {
  if (sb.state !== 'connected') return;
  const n = Math.min(200, Number($('bots').value) || 0);
  t += SEND_MS / 1000;
  for (let i = 0; i < n; i++) {
    const a = 0.7 + (i % 7) * 0.11;
    const b = 0.5 + (i % 5) * 0.13;
    send(`${me}-bot${i}`, 0.5 + 0.45 * Math.sin(a * t + i), 0.5 + 0.45 * Math.sin(b * t + i * 1.7));
  }
}, SEND_MS);
