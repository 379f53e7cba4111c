// The transport lab's measuring side: one session (warm-up, a measured burst, an idle spell, a
// forced drop) over one technique, against the server's /lab/control socket. Every request and
// socket of the technique carries `sb_lab=SESSION`, so the server counts its bytes on the wire
// (request and response heads, framing, heart-beats) and applies the chosen impairment to it.
import { Switchboard } from '/sdk/switchboard.js';

export const TECHNIQUES = [
  { id: 'poll', label: 'Short polling', transport: 'poll' },
  { id: 'long-poll', label: 'Long polling', transport: 'long-poll' },
  { id: 'stream', label: 'HTTP streaming', transport: 'stream' },
  { id: 'sse', label: 'Server-Sent Events', transport: 'sse' },
  { id: 'websocket', label: 'WebSocket (JSON)', transport: 'websocket' },
  { id: 'stomp', label: 'WebSocket (STOMP)', stomp: 'ws' },
  { id: 'sockjs', label: 'SockJS xhr-streaming (STOMP)', stomp: 'sockjs' },
  { id: 'webtransport', label: 'WebTransport stream', transport: 'webtransport', udp: true },
  { id: 'webtransport-dg', label: 'WebTransport datagrams', transport: 'webtransport', datagram: true, udp: true },
  { id: 'webrtc', label: 'WebRTC data channel', transport: 'webrtc', udp: true },
  { id: 'webrtc-unreliable', label: 'WebRTC unreliable channel', transport: 'webrtc', datagram: true, udp: true },
];

/** Why a technique cannot run in this browser, or null. */
export function unavailable(t) {
  if (t.transport === 'webtransport' && typeof WebTransport === 'undefined') return 'no WebTransport in this browser';
  if (t.transport === 'webrtc' && typeof RTCPeerConnection === 'undefined') return 'no WebRTC in this browser';
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The lab session: its control socket (neither counted nor impaired). */
export class Control {
  static open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/lab/control`);
      const ctl = new Control(ws);
      ws.onmessage = (e) => ctl._message(JSON.parse(e.data), resolve);
      ws.onerror = () => reject(new Error('the lab control socket did not open (lab off, or lab_max_sessions reached)'));
      ws.onclose = () => { for (const p of ctl.pending.values()) p.reject(new Error('control socket closed')); ctl.pending.clear(); };
    });
  }
  constructor(ws) { this.ws = ws; this.pending = new Map(); this.next = 1; this.hello = null; }
  _message(m, opened) {
    if (m.session) { this.hello = m; opened(this); return; }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.error) p.reject(new Error(`${m.error.code}: ${m.error.message}`)); else p.resolve(m);
  }
  call(op, args = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, op, ...args }));
    });
  }
  async stats() { return (await this.call('stats')).stats; }
}

/** `url` with the session's tag. */
function tagged(url, sid) {
  const u = new URL(String(url), location.href);
  u.searchParams.set('sb_lab', sid);
  return u.toString();
}

/** The platform's constructors and fetch, tagging every URL with the session. */
function platform(sid) {
  const g = globalThis;
  const out = { fetch: (u, init) => g.fetch(tagged(u, sid), init) };
  if (g.WebSocket) out.WebSocket = class extends g.WebSocket { constructor(u, p) { super(tagged(u, sid), p); } };
  if (g.EventSource) out.EventSource = class extends g.EventSource { constructor(u, o) { super(tagged(u, sid), o); } };
  if (g.WebTransport) out.WebTransport = class extends g.WebTransport { constructor(u, o) { super(tagged(u, sid), o); } };
  return out;
}

/** A subscriber through the SDK. */
async function openSdk(t, sid, channel, on, opts) {
  const client = new Switchboard({
    transports: [t.transport],
    pollIntervalMs: opts.pollMs,
    longPollWait: 20,
    ...platform(sid),
  });
  client.on('state', (e) => on.state(e.state));
  const sub = client.subscribe(channel, t.datagram ? { datagram: true } : {});
  sub.on('publication', (p) => on.data(p.data?.n));
  const subscribed = new Promise((r) => sub.on('subscribed', r));
  client.connect();
  await subscribed;
  return { close: () => client.disconnect(), note: () => client.transport };
}

/** A minimal STOMP 1.2 client (docs/stomp.md) over a WebSocket or SockJS, resuming from the
 * last MESSAGE's `position` after a drop, as a Spring page's reconnect logic would. */
async function openStomp(t, sid, channel, on) {
  let position = null;
  let closed = false;
  let sock = null;
  let ready;
  const frame = (cmd, headers, body = '') =>
    `${cmd}\n${Object.entries(headers).map(([k, v]) => `${k}:${v}`).join('\n')}\n\n${body}\0`;
  if (t.stomp === 'sockjs' && !globalThis.SockJS) {
    await new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = '/sockjs/sockjs.min.js';
      s.onload = resolve;
      s.onerror = () => reject(new Error('cannot load sockjs-client from /sockjs/sockjs.min.js'));
      document.head.append(s);
    });
  }
  const connect = () => new Promise((resolve) => {
    ready = resolve;
    sock = t.stomp === 'sockjs'
      ? new globalThis.SockJS(tagged('/sockjs', sid), null, { transports: ['xhr-streaming'] })
      : new WebSocket(tagged(`${location.origin.replace(/^http/, 'ws')}/stomp`, sid), ['v12.stomp']);
    sock.onopen = () => sock.send(frame('CONNECT', { 'accept-version': '1.2', host: location.host, 'heart-beat': '0,0' }));
    sock.onmessage = (e) => {
      for (const f of String(e.data).split('\0')) {
        const text = f.replace(/^\n+/, '');
        if (!text) continue;
        const [head, ...rest] = text.split('\n\n');
        const [cmd, ...lines] = head.split('\n');
        const h = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
        if (cmd === 'CONNECTED') {
          const sub = { id: 'lab', destination: `/topic/${channel}`, receipt: 'sub' };
          if (position) sub.position = position;
          sock.send(frame('SUBSCRIBE', sub));
        } else if (cmd === 'RECEIPT') {
          on.state('connected');
          ready();
        } else if (cmd === 'MESSAGE') {
          if (h.position) position = h.position;
          on.data(JSON.parse(rest.join('\n\n')).n);
        }
      }
    };
    sock.onclose = () => {
      if (closed) return;
      on.state('connecting');
      setTimeout(() => { if (!closed) connect(); }, 100);
    };
  });
  await connect();
  return { close: () => { closed = true; sock.close(); }, note: () => t.stomp };
}

/** Percentile `q` (0..1) of sorted `xs`. */
export function percentile(xs, q) {
  if (!xs.length) return null;
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];
}

/**
 * Runs the session over technique `t`; `opts`: {count, gapMs, size, idleMs, dropCount, pollMs,
 * impairment, progress(text)}. Resolves the row of the results table.
 */
export async function measure(ctl, t, opts) {
  const { session: sid, channel } = ctl.hello;
  const sent = new Map();
  const seen = new Map();
  const latencies = []; // [n, ms]
  let state = 'connecting';
  const changes = [];
  const on = {
    data(n) {
      if (typeof n !== 'number') return;
      const now = performance.now();
      seen.set(n, (seen.get(n) || 0) + 1);
      if (seen.get(n) === 1 && sent.has(n)) latencies.push([n, now - sent.get(n)]);
    },
    state(s) { if (s !== state) { state = s; changes.push([performance.now(), s]); } },
  };
  let next = (ctl.n || 0) + 1;
  const publish = (n) => { sent.set(n, performance.now()); return ctl.call('pub', { n, size: opts.size }); };
  const until = async (ns, ms) => {
    const end = performance.now() + ms;
    while (performance.now() < end && ns.some((n) => !seen.has(n))) await sleep(20);
    return ns.filter((n) => !seen.has(n));
  };
  const step = (text) => opts.progress?.(text);
  const wait = opts.pollMs + 8000 + 2 * (opts.impairment?.delay_ms || 0);
  step('connecting');
  const sub = t.stomp ? await openStomp(t, sid, channel, on) : await openSdk(t, sid, channel, on, opts);
  try {
    step('warming up');
    const warm = [next++, next++];
    for (const n of warm) { await publish(n); await sleep(opts.gapMs); }
    await until(warm, wait);
    step(`measuring ${opts.count} messages`);
    latencies.length = 0;
    const s0 = await ctl.stats();
    const burst = [];
    for (let i = 0; i < opts.count; i++) {
      const n = next++;
      burst.push(n);
      await publish(n);
      await sleep(opts.gapMs);
    }
    const missing = await until(burst, wait);
    const s1 = await ctl.stats();
    const lat = latencies.filter(([n]) => burst.includes(n)).map(([, ms]) => ms);
    const series = latencies.filter(([n]) => burst.includes(n)).map(([n, ms]) => [n - burst[0], ms]);
    step(`idle for ${opts.idleMs / 1000} s`);
    const s2 = await ctl.stats();
    await sleep(opts.idleMs);
    const s3 = await ctl.stats();
    step('forcing a drop');
    const drops = [];
    const t0 = performance.now();
    await ctl.call('drop');
    for (let i = 0; i < opts.dropCount; i++) {
      const n = next++;
      drops.push(n);
      await publish(n);
      await sleep(20);
    }
    const lostAcross = await until(drops, wait + 5000);
    const noticed = changes.find(([at, s]) => at >= t0 && s !== 'connected');
    const firstBack = Math.min(...drops.filter((n) => seen.has(n)).map((n) => latencies.find(([m]) => m === n)?.[1] + sent.get(n)));
    ctl.n = next;
    const count = burst.length - missing.length;
    const sorted = [...lat].sort((a, b) => a - b);
    const perMin = 60000 / opts.idleMs;
    const dups = [...seen.values()].filter((c) => c > 1).length;
    let note = '';
    if (t.udp) {
      note = t.id === 'webtransport-dg'
        ? 'UDP: bytes not counted by the TCP listener; the impairment drops and delays its datagrams for real'
        : 'UDP: bytes not counted by the TCP listener; impairment and forced drop not applied';
    }
    if (t.datagram && (missing.length || lostAcross.length)) note += '; datagrams are unreliable and latest-wins: no retransmission, no resume';
    else if (lostAcross.length) note += '; lost across the drop';
    return {
      id: t.id,
      technique: t.label,
      transport: sub.note(),
      impairment: opts.impairment,
      messages: opts.count,
      received: count,
      lost: missing.length,
      p50_ms: round(percentile(sorted, 0.5)),
      p99_ms: round(percentile(sorted, 0.99)),
      max_ms: round(sorted[sorted.length - 1] ?? null),
      down_bytes_per_msg: t.udp ? null : Math.round((s1.tx - s0.tx) / Math.max(1, count)),
      up_bytes_per_msg: t.udp ? null : Math.round((s1.rx - s0.rx) / Math.max(1, count)),
      idle_requests_per_min: t.udp ? null : round((s3.requests - s2.requests) * perMin),
      idle_bytes_per_min: t.udp ? null : Math.round((s3.tx + s3.rx - s2.tx - s2.rx) * perMin),
      drop_noticed_ms: noticed ? round(noticed[0] - t0) : null,
      resumed_ms: Number.isFinite(firstBack) ? round(firstBack - t0) : null,
      lost_across_drop: lostAcross.length,
      duplicates: dups,
      note,
      latencies: lat.map(round),
      series,
    };
  } finally {
    sub.close();
  }
}

function round(x) {
  return x == null ? null : Math.round(x * 10) / 10;
}
