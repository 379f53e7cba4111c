// Switchboard browser SDK: one ES module, no build step, no dependencies.
// Wire contract: docs/protocol.md. Types and API docs: switchboard.d.ts. Guide: README.md.
//
// Layout:
//   helpers         base64, cursor codec, backoff, NDJSON line splitter, publication normalising
//   Emitter         on/off/emit shared by the client and subscriptions
//   Subscription    one channel: position, duplicate suppression, events
//   Switchboard     state machine: transport rounds with fallback, backoff, token, HTTP API
//   *Conn classes   one per transport; framing only, they feed the client's _push/_opened/_lost
//                   (WtConn is WsConn's protocol in WebTransport frames, plus datagrams;
//                   DcConn is WsConn's protocol on WebRTC data channels)
//   Room            WebRTC calls (docs/webrtc.md): mesh signalled through inboxes, or one SFU peer

const ALL_TRANSPORTS = ['webtransport', 'websocket', 'sse', 'stream', 'long-poll', 'poll'];
/** The default order where the platform has no WebTransport. */
const FALLBACK_TRANSPORTS = ALL_TRANSPORTS.slice(1);
/** Accepted when asked for, never in a default order: the data channel transport is opt-in. */
const KNOWN_TRANSPORTS = [...ALL_TRANSPORTS, 'webrtc'];
/** The most a client waits for ICE gathering before it sends an offer anyway (ms). */
const ICE_GATHER_MS = 2000;
/** WebTransport frame kinds (docs/webtransport.md): a JSON text frame, a binary `HEADER\nPAYLOAD` frame. */
const WT_TEXT = 0;
const WT_BINARY = 1;
const SUBPROTOCOL = 'switchboard.v1.json';
/** Extra seconds, on top of the server's ping interval, before a silent WebSocket counts as dead. */
const PONG_GRACE_SECS = 10;
/** Server error codes after which retrying the same request later may work. */
const RETRYABLE_CODES = new Set([100, 106, 109]);

// ---------------------------------------------------------------------------------------------
// helpers

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();
const noop = () => {};

/** Standard base64 of bytes. */
export function bytesToBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Bytes of a base64 string; accepts the standard and the URL-safe alphabet, padded or not. */
export function base64ToBytes(b64) {
  let s = String(b64).replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  s += '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Cursor of positions (protocol.md "Cursors"): URL-safe base64 without padding of the JSON
 * object `{channel: [epoch, offset]}`. Accepts `{channel: {epoch, offset}}` or `[epoch, offset]`.
 */
export function encodeCursor(positions) {
  const obj = {};
  for (const [channel, pos] of Object.entries(positions)) {
    if (pos == null) continue;
    obj[channel] = Array.isArray(pos) ? [pos[0], pos[1]] : [pos.epoch, pos.offset];
  }
  return bytesToBase64(utf8Encoder.encode(JSON.stringify(obj)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Positions in a cursor, as `{channel: {epoch, offset}}`. Throws a SwitchboardError (107) when it does not decode. */
export function decodeCursor(cursor) {
  let obj;
  try {
    obj = JSON.parse(utf8Decoder.decode(base64ToBytes(cursor)));
  } catch {
    throw new SwitchboardError(107, 'bad cursor');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new SwitchboardError(107, 'bad cursor');
  const out = {};
  for (const [channel, pos] of Object.entries(obj)) {
    if (!Array.isArray(pos) || typeof pos[0] !== 'string' || typeof pos[1] !== 'number') {
      throw new SwitchboardError(107, 'bad cursor');
    }
    out[channel] = { epoch: pos[0], offset: pos[1] };
  }
  return out;
}

function tryDecodeCursor(cursor) {
  if (!cursor) return null;
  try { return decodeCursor(cursor); } catch { return null; }
}

/**
 * Delay before reconnect attempt number `attempt` (0-based): exponential with full jitter,
 * uniformly in [0, min(maxMs, minMs * 2^attempt)).
 */
export function backoffDelay(attempt, { minMs = 200, maxMs = 10000 } = {}, random = Math.random) {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * cap);
}

/**
 * Splits a byte stream of NDJSON into lines, whatever the chunk boundaries (also inside a
 * multi-byte UTF-8 character). `push(chunk)` and `end()` call `onLine(line)` for each non-empty line.
 */
export function createLineSplitter(onLine) {
  const decoder = new TextDecoder();
  let buf = '';
  const drain = () => {
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
      if (line.trim()) onLine(line);
    }
  };
  return {
    push(chunk) {
      buf += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
      drain();
    },
    end() {
      buf += decoder.decode();
      drain();
      if (buf.trim()) onLine(buf);
      buf = '';
    },
  };
}

function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The publication as the app sees it: binary payloads (`b64` or a WS binary frame) become `Uint8Array`. */
function normalizePub(raw, payload) {
  const p = { ...raw };
  if (payload) {
    p.data = payload;
    p.binary = true;
  } else if (typeof p.b64 === 'string') {
    p.data = base64ToBytes(p.b64);
    delete p.b64;
    p.binary = true;
  } else {
    p.binary = false;
  }
  return p;
}

function report(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else console.error(err);
}

/** An error with the server's code (protocol.md "Command error codes"), or 0 for client-side ones. */
export class SwitchboardError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

async function errorFromResponse(res) {
  let code = 0;
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code ?? 0;
      message = body.error.message ?? message;
    }
  } catch { /* not JSON */ }
  return new SwitchboardError(code, message, { status: res.status });
}

// ---------------------------------------------------------------------------------------------
// events

class Emitter {
  constructor() { this._listeners = new Map(); }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, event) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(event); } catch (err) { report(err); }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// subscription

export class Subscription extends Emitter {
  constructor(client, channel, since, datagram) {
    super();
    this._client = client;
    this.channel = channel;
    /** Asked for latest-wins datagram delivery (honoured on WebTransport only). */
    this.datagram = !!datagram;
    /** `{epoch, offset}` of the last publication delivered (or where the subscription stands). */
    this.position = since ? { epoch: since.epoch, offset: since.offset } : null;
    /** 'pending' | 'subscribed' | 'unsubscribed' | 'failed' */
    this.state = 'pending';
  }

  unsubscribe() { this._client._unsubscribe(this); }

  /** Server says where the subscription stands (WS reply, SSE/stream `subscribed`, poll synthesised). */
  _subscribed(d) {
    this.position = { epoch: d.epoch, offset: d.offset };
    this.state = 'subscribed';
    this._emit('subscribed', {
      channel: this.channel,
      epoch: d.epoch,
      offset: d.offset,
      recovered: d.recovered === true,
      replayed: d.replayed ?? 0,
    });
  }

  /** Delivers `p` unless it is not newer than what was delivered already. Returns whether it was delivered. */
  _publication(p) {
    const pos = this.position;
    if (pos && pos.epoch === p.epoch && p.offset <= pos.offset) return false;
    if (pos && pos.epoch !== p.epoch) {
      // The stream's history was lost and nobody said so yet: say it, never silently.
      this._subscribed({ epoch: p.epoch, offset: p.offset - 1, recovered: false, replayed: 0 });
    }
    this.position = { epoch: p.epoch, offset: p.offset };
    this._emit('publication', p);
    return true;
  }

  _end(state, event) {
    this.state = state;
    this._emit(state === 'failed' ? 'error' : 'unsubscribed', event);
  }
}

// ---------------------------------------------------------------------------------------------
// client

export class Switchboard extends Emitter {
  constructor(opts = {}) {
    super();
    const g = globalThis;
    let url = opts.url ?? (g.location ? g.location.origin : undefined);
    if (!url) throw new TypeError('Switchboard: `url` is required outside a browser');
    url = String(url).replace(/\/+$/, '');
    this._httpBase = url.replace(/^ws(s?):/i, 'http$1:');
    this._wsBase = this._httpBase.replace(/^http(s?):/i, 'ws$1:');
    this._token = opts.token ?? null;
    this._getToken = opts.getToken ?? null;
    this._tokenStale = !this._token && !!this._getToken;
    this._tokenPromise = null;
    this._name = opts.name ?? null;
    this._backoff = { minMs: 200, maxMs: 10000, ...(opts.backoff || {}) };
    this._pollIntervalMs = opts.pollIntervalMs ?? 1000;
    this._longPollWait = opts.longPollWait ?? 25;
    this._timeoutMs = opts.timeoutMs ?? 10000;
    this._openTimeoutMs = opts.openTimeoutMs ?? 5000;
    // An injected `null` means "this platform has none".
    const pick = (key) => (opts[key] !== undefined ? opts[key] : g[key]);
    this._WebSocket = pick('WebSocket');
    this._WebTransport = pick('WebTransport');
    this._RTCPeerConnection = pick('RTCPeerConnection');
    this._transports = this._normalizeTransports(opts.transports);
    this._EventSource = pick('EventSource');
    const f = pick('fetch');
    this._fetch = f ? (u, init) => f.call(g, u, init) : null;
    const timers = opts.timers || {};
    this._setTimeout = timers.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms));
    this._clearTimeout = timers.clearTimeout ?? ((id) => g.clearTimeout(id));
    this._random = opts.random ?? Math.random;

    /** 'connecting' | 'connected' | 'disconnected' | 'closed' */
    this.state = 'disconnected';
    /** The transport in use (the last one that opened), or null. */
    this.transport = null;
    /** Client id the server gave this connection (not on polling). */
    this.clientId = null;

    this._subs = new Map();
    this._conn = null;
    this._gen = 0;
    this._sticky = null;
    this._round = [];
    this._roundIdx = 0;
    this._failures = 0;
    this._retryTimer = null;
  }

  // --- public API ---------------------------------------------------------------------------

  connect() {
    if (this.state === 'connecting' || this.state === 'connected') return;
    // After the server refused us, a fresh token is the likely fix.
    if (this.state === 'closed' && this._getToken) this._tokenStale = true;
    this._setState('connecting');
    this._failures = 0;
    this._startRound();
  }

  disconnect() {
    this._stop();
    this._setState('disconnected');
  }

  /** Drops the current transport as a network failure would; the client reconnects and resumes. */
  dropConnection() {
    if (this._conn) this._lost(this._conn, { code: 1006, reason: 'connection dropped' });
  }

  /** Uses other transports from now on; reconnects (resuming every subscription) when active. */
  setTransports(transports) {
    this._transports = this._normalizeTransports(transports);
    this._sticky = null;
    if (this.state === 'connecting' || this.state === 'connected') {
      this._stop();
      this._setState('connecting');
      this._failures = 0;
      this._startRound();
    }
  }

  get transports() { return this._transports.slice(); }

  subscribe(channel, { since, datagram } = {}) {
    if (typeof channel !== 'string' || channel.length === 0 || channel.length > 255) {
      throw new TypeError('Switchboard: channel must be a name of 1-255 characters');
    }
    if (this._subs.has(channel)) throw new Error(`Switchboard: already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, since, datagram);
    this._subs.set(channel, sub);
    this._sync();
    return sub;
  }

  /** The current subscription to `channel`, if any. */
  getSubscription(channel) { return this._subs.get(channel) ?? null; }

  async publish(channel, data, { idempotencyKey, datagram } = {}) {
    const conn = this._wsConn();
    const binary = isBinary(data);
    const body = { channel };
    if (idempotencyKey != null) body.idempotency_key = idempotencyKey;
    // Fire-and-forget over a WebTransport datagram: no reply, may be lost (cursors, game input).
    if (datagram && conn && conn.sendDatagram && !binary && conn.sendDatagram('publish', { ...body, data })) {
      return null;
    }
    if (conn) {
      if (binary) return conn.call('publish', body, toBytes(data));
      body.data = data;
      return conn.call('publish', body);
    }
    if (binary) body.b64 = bytesToBase64(toBytes(data));
    else body.data = data;
    return this._api('POST', '/api/publish', { body });
  }

  /**
   * A WebRTC room (docs/webrtc.md) on channel `name` (`room:NAME`): call `join()` on it.
   * Needs a two-way transport (webtransport, websocket or webrtc).
   */
  room(name, opts = {}) {
    return new Room(this, name, opts);
  }

  async presence(channel) {
    const conn = this._wsConn();
    if (conn) return conn.call('presence', { channel });
    return this._api('GET', '/api/presence', { query: { channel } });
  }

  async history(channel, { limit, since, reverse } = {}) {
    const conn = this._wsConn();
    let res;
    if (conn) {
      const body = { channel };
      if (since) body.since = { epoch: since.epoch, offset: since.offset };
      if (limit != null) body.limit = limit;
      if (reverse != null) body.reverse = !!reverse;
      res = await conn.call('history', body);
    } else {
      const query = { channel };
      if (since) query.since = `${since.epoch}:${since.offset}`;
      if (limit != null) query.limit = limit;
      if (reverse != null) query.reverse = String(!!reverse);
      res = await this._api('GET', '/api/history', { query });
    }
    return { ...res, publications: (res.publications || []).map((p) => normalizePub(p)) };
  }

  // --- connection rounds ---------------------------------------------------------------------
  // A round tries each configured transport once, the one that last worked first. A transport
  // that fails before it opens hands over to the next at once; when a round is used up, or an
  // open connection is lost, the next round starts after a backoff delay.

  _startRound() {
    this._retryTimer = null;
    const order = this._transports.slice();
    const i = order.indexOf(this._sticky);
    if (i > 0) order.unshift(...order.splice(i, 1));
    this._round = order;
    this._roundIdx = 0;
    this._attempt();
  }

  _attempt(planned = false) {
    const gen = ++this._gen;
    const name = this._round[this._roundIdx];
    const go = (token) => {
      if (gen !== this._gen) return;
      const conn = new CONNS[name](this, name, token);
      conn.planned = planned;
      this._conn = conn;
      conn.openTimer = this._setTimeout(() => {
        if (!conn.opened) this._lost(conn, { code: 0, reason: `${name} did not open in time` });
      }, this._openTimeoutMs);
      try {
        conn.open();
      } catch (err) {
        this._lost(conn, { code: 0, reason: err.message });
      }
    };
    if (!this._tokenStale) return go(this._token);
    this._ensureToken().then(go, (err) => {
      if (gen !== this._gen) return;
      this._emit('error', { code: 0, message: `getToken failed: ${err && err.message}`, fatal: false, transport: name });
      this._conn = null;
      this._retry();
    });
  }

  _opened(conn) {
    if (conn !== this._conn || conn.opened) return;
    conn.opened = true;
    this._clearTimeout(conn.openTimer);
    if (!conn.idle) {
      this._failures = 0;
      this._sticky = conn.name;
    }
    if (this.transport !== conn.name) {
      this.transport = conn.name;
      this._emit('transport', { transport: conn.name });
    }
    this._setState('connected');
    conn.sync();
  }

  /** The connection `conn` is gone (`info`: code, reason, fatal). Decides what comes next. */
  _lost(conn, info) {
    if (conn !== this._conn) return;
    this._conn = null;
    this._clearTimeout(conn.openTimer);
    conn.close();
    this.clientId = null;
    this._unsettleSubs();
    const code = info.code ?? 0;
    const reason = info.reason ?? '';
    if (info.fatal || (code >= 3500 && code <= 3999)) {
      this._gen++;
      this._setState('closed', { code, reason });
      this._emit('error', { code, message: reason, fatal: true, transport: conn.name });
      return;
    }
    if (code === 3005 && this._getToken) this._tokenStale = true;
    this._setState('connecting', { code, reason });
    if (!conn.opened && !conn.planned) {
      this._emit('error', { code, message: reason, fatal: false, transport: conn.name });
      if (++this._roundIdx < this._round.length) {
        const gen = ++this._gen;
        this._retryTimer = this._setTimeout(() => { if (gen === this._gen) this._attempt(); }, 0);
        return;
      }
    }
    this._retry();
  }

  _retry() {
    const gen = ++this._gen;
    const delay = backoffDelay(this._failures++, this._backoff, this._random);
    this._retryTimer = this._setTimeout(() => { if (gen === this._gen) this._startRound(); }, delay);
  }

  /** Reopens a one-way transport for a new set of channels, from the current positions. */
  _reopen(conn) {
    if (conn !== this._conn) return;
    this._conn = null;
    this._clearTimeout(conn.openTimer);
    conn.close();
    this._round = [conn.name, ...this._round.filter((n) => n !== conn.name)];
    this._roundIdx = 0;
    this._attempt(true);
  }

  _stop() {
    this._gen++;
    if (this._retryTimer != null) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const conn = this._conn;
    this._conn = null;
    if (conn) {
      this._clearTimeout(conn.openTimer);
      conn.close();
    }
    this.clientId = null;
    this._unsettleSubs();
  }

  /** No connection holds the subscriptions any more: they wait for the next one. */
  _unsettleSubs() {
    for (const sub of this._subs.values()) if (sub.state === 'subscribed') sub.state = 'pending';
  }

  _setState(state, extra) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous, ...(extra || {}) });
  }

  _sync() {
    if (this._conn && this._conn.opened) this._conn.sync();
  }

  _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    sub.state = 'unsubscribed';
    this._sync();
  }

  /** The open two-way connection (WebSocket, WebTransport, WebRTC: commands with replies), if any. */
  _wsConn() {
    const c = this._conn;
    return c instanceof WsConn && c.opened && !c.closed ? c : null;
  }

  /** The configured transports, or the default order (WebTransport first where the platform has it). */
  _normalizeTransports(t) {
    return normalizeTransports(t ?? (this._WebTransport ? ALL_TRANSPORTS : FALLBACK_TRANSPORTS));
  }

  // --- what the transports feed in -----------------------------------------------------------

  /** A server push, in the WebSocket/stream shape (`{pub}`, `{join}`, `{subscribed}`, ...). */
  _push(conn, msg, payload) {
    if (conn !== this._conn) return;
    if (msg.pub) {
      const sub = this._subs.get(msg.pub.channel);
      if (sub) sub._publication(normalizePub(msg.pub, payload));
    } else if (msg.join || msg.leave) {
      const type = msg.join ? 'join' : 'leave';
      const sub = this._subs.get(msg[type].channel);
      if (sub) sub._emit(type, msg[type]);
    } else if (msg.subscribed) {
      const sub = this._subs.get(msg.subscribed.channel);
      if (sub) sub._subscribed(msg.subscribed);
    } else if (msg.connected) {
      this.clientId = msg.connected.client ?? null;
      this._opened(conn);
    } else if (msg.unsubscribed) {
      this._serverUnsubscribed(conn, msg.unsubscribed);
    } else if (msg.disconnect) {
      this._lost(conn, { code: msg.disconnect.code, reason: msg.disconnect.reason });
    }
  }

  _serverUnsubscribed(conn, u) {
    const sub = this._subs.get(u.channel);
    if (!sub) return;
    if (u.code >= 3000 && u.code <= 3499 && conn.resubscribeLater) {
      conn.resubscribeLater(sub);
      return;
    }
    this._subs.delete(u.channel);
    sub._end('unsubscribed', { channel: u.channel, code: u.code, reason: u.reason });
  }

  _subscribeFailed(sub, err) {
    if (this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    sub._end('failed', err);
  }

  // --- token and HTTP API --------------------------------------------------------------------

  _ensureToken() {
    if (!this._tokenStale || !this._getToken) return Promise.resolve(this._token);
    if (!this._tokenPromise) {
      this._tokenPromise = Promise.resolve()
        .then(() => this._getToken())
        .then((token) => {
          this._token = token ?? null;
          this._tokenStale = false;
          return this._token;
        })
        .finally(() => { this._tokenPromise = null; });
    }
    return this._tokenPromise;
  }

  _url(path, query) {
    const parts = [];
    for (const [k, v] of Object.entries(query || {})) {
      for (const one of Array.isArray(v) ? v : [v]) {
        if (one != null) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
      }
    }
    return this._httpBase + path + (parts.length ? `?${parts.join('&')}` : '');
  }

  _authHeaders(token) {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async _api(method, path, { query, body } = {}) {
    if (!this._fetch) throw new SwitchboardError(0, 'fetch is not available');
    const token = await this._ensureToken();
    const headers = { Accept: 'application/json', ...this._authHeaders(token) };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await this._fetch(this._url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      const err = await errorFromResponse(res);
      if (res.status === 401 && this._getToken) this._tokenStale = true;
      throw err;
    }
    const text = await res.text();
    return text ? JSON.parse(text) : {}; // 204 and empty answers (DELETE) are `{}`
  }

  /** `GET /api/ice-servers` as RTCIceServer[]; none when the server has no TURN or says no. */
  async _fetchIceServers(token) {
    if (!this._fetch) return [];
    try {
      const res = await this._fetch(this._url('/api/ice-servers'), {
        headers: { Accept: 'application/json', ...this._authHeaders(token) },
      });
      if (res.status !== 200) return [];
      const body = await res.json();
      return Array.isArray(body && body.iceServers) ? body.iceServers : [];
    } catch {
      return [];
    }
  }

  /** Query for a one-way transport: its channels and the cursor of their positions. */
  _oneWayQuery(channels, { tokenInQuery, token, name }) {
    const positions = {};
    for (const ch of channels) {
      const sub = this._subs.get(ch);
      if (sub && sub.position) positions[ch] = sub.position;
    }
    const query = { channel: channels };
    if (Object.keys(positions).length) query.since = encodeCursor(positions);
    if (name && this._name) query.name = this._name;
    if (tokenInQuery && token) query.token = token;
    return query;
  }

  /** What an HTTP error on a one-way transport means for the connection. */
  _httpFailure(err) {
    if (err.status === 401) {
      if (this._getToken) {
        this._tokenStale = true;
        return { code: 0, reason: err.message };
      }
      return { code: err.code || 101, reason: err.message, fatal: true };
    }
    // A JSON error with a code is the server refusing this request (bad channel, forbidden, ...):
    // retrying the same request cannot help.
    if (err.status >= 400 && err.status < 500 && err.code && !RETRYABLE_CODES.has(err.code)) {
      return { code: err.code, reason: err.message, fatal: true };
    }
    return { code: 0, reason: err.message };
  }
}

function normalizeTransports(t) {
  const list = t == null ? FALLBACK_TRANSPORTS.slice() : Array.isArray(t) ? t.slice() : [t];
  if (list.length === 0) throw new TypeError('Switchboard: no transports');
  for (const name of list) {
    if (!KNOWN_TRANSPORTS.includes(name)) throw new TypeError(`Switchboard: unknown transport ${name}`);
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// transports: each one opens, frames and closes; the client decides everything else.

class WsConn {
  constructor(client, name, token) {
    this.client = client;
    this.name = name;
    this.token = token;
    this.opened = false;
    this.closed = false;
    this.nextId = 1;
    this.pending = new Map(); // id → {cmd, done(err, reply), timer}
    this.sent = new Map(); // channel → Subscription sent to the server on this connection
    this.pingSecs = 0;
    this.watchdog = null;
  }

  open() {
    const WS = this.client._WebSocket;
    if (!WS) throw new Error('WebSocket is not available');
    const ws = new WS(`${this.client._wsBase}/ws`, SUBPROTOCOL);
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this._onOpen();
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = (ev) => this.client._lost(this, { code: ev.code, reason: ev.reason || 'websocket closed' });
    ws.onerror = noop; // a close event follows
  }

  _onOpen() {
    const body = {};
    if (this.token) body.token = this.token;
    if (this.client._name) body.name = this.client._name;
    this._send('connect', body, null, (err, reply) => {
      if (this.closed) return;
      if (err) {
        const client = this.client;
        if (err.code === 101 && client._getToken) client._tokenStale = true;
        const fatal = !err.timeout && !RETRYABLE_CODES.has(err.code) && !(err.code === 101 && client._getToken);
        client._lost(this, { code: err.code, reason: `connect: ${err.message}`, fatal });
        return;
      }
      this.client.clientId = reply.client ?? null;
      this.pingSecs = Number(reply.ping) || 0;
      this._armWatchdog();
      this.client._opened(this);
    });
  }

  _armWatchdog() {
    const c = this.client;
    if (this.watchdog != null) c._clearTimeout(this.watchdog);
    this.watchdog = null;
    if (this.pingSecs > 0 && !this.closed) {
      this.watchdog = c._setTimeout(() => {
        c._lost(this, { code: 0, reason: 'no ping from the server' });
      }, (this.pingSecs + PONG_GRACE_SECS) * 1000);
    }
  }

  _onMessage(data) {
    if (this.closed) return;
    if (this.opened) this._armWatchdog();
    let msg;
    let payload = null;
    try {
      if (typeof data === 'string') {
        msg = JSON.parse(data);
      } else {
        const bytes = toBytes(data);
        const nl = bytes.indexOf(10);
        if (nl < 0) return;
        msg = JSON.parse(utf8Decoder.decode(bytes.subarray(0, nl)));
        payload = bytes.slice(nl + 1);
      }
    } catch {
      return; // not ours to parse; the server never sends this
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.id) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      this.client._clearTimeout(p.timer);
      if (msg.error) p.done(new SwitchboardError(msg.error.code ?? 0, msg.error.message ?? 'error'));
      else p.done(null, msg[p.cmd] ?? {});
      return;
    }
    if (msg.ping) {
      this._raw(JSON.stringify({ pong: {} }));
      return;
    }
    this.client._push(this, msg, payload);
  }

  _writable() {
    return !!this.ws && this.ws.readyState === 1;
  }

  _raw(frame) {
    try { this.ws.send(frame); } catch { /* the close event will follow */ }
  }

  /** Sends one command; `done(err, reply)` runs synchronously when the reply frame is handled. */
  _send(cmd, body, payload, done) {
    if (this.closed || !this._writable()) {
      done(new SwitchboardError(0, 'not connected'));
      return;
    }
    const id = this.nextId++;
    const timer = this.client._setTimeout(() => {
      if (!this.pending.delete(id)) return;
      done(new SwitchboardError(0, `${cmd} timed out`, { timeout: true }));
    }, this.client._timeoutMs);
    this.pending.set(id, { cmd, done, timer });
    if (payload) {
      const header = utf8Encoder.encode(`${JSON.stringify({ id, [cmd]: body })}\n`);
      const frame = new Uint8Array(header.length + payload.length);
      frame.set(header);
      frame.set(payload, header.length);
      this._raw(frame);
    } else {
      this._raw(JSON.stringify({ id, [cmd]: body }));
    }
  }

  call(cmd, body, payload) {
    return new Promise((resolve, reject) => {
      this._send(cmd, body, payload, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  /** Brings the server's subscriptions on this connection in line with the client's. */
  sync() {
    if (!this.opened || this.closed) return;
    const subs = this.client._subs;
    for (const [channel, sub] of this.sent) {
      if (subs.get(channel) === sub) continue;
      this.sent.delete(channel);
      this._send('unsubscribe', { channel }, null, noop);
    }
    for (const [channel, sub] of subs) {
      if (!this.sent.has(channel)) this._subscribe(sub);
    }
  }

  _subscribe(sub) {
    const client = this.client;
    this.sent.set(sub.channel, sub);
    const body = { channel: sub.channel };
    if (sub.position) body.since = { epoch: sub.position.epoch, offset: sub.position.offset };
    if (sub.datagram && this.datagrams) body.datagram = true;
    this._send('subscribe', body, null, (err, reply) => {
      if (this.closed || client._subs.get(sub.channel) !== sub) return;
      if (!err) {
        sub._subscribed(reply);
        return;
      }
      if (err.timeout || RETRYABLE_CODES.has(err.code)) {
        this.resubscribeLater(sub);
      } else {
        this.sent.delete(sub.channel);
        client._subscribeFailed(sub, err);
      }
    });
  }

  /** The server dropped one subscription, or could not take it now: try again after a backoff delay. */
  resubscribeLater(sub) {
    const c = this.client;
    if (this.sent.get(sub.channel) === sub) this.sent.delete(sub.channel);
    sub.retries = (sub.retries || 0) + 1;
    c._setTimeout(() => {
      if (!this.closed && c._subs.get(sub.channel) === sub && !this.sent.has(sub.channel)) this._subscribe(sub);
    }, backoffDelay(sub.retries, c._backoff, c._random));
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    const c = this.client;
    if (this.watchdog != null) c._clearTimeout(this.watchdog);
    const ws = this.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { if (ws.readyState <= 1) ws.close(1000); } catch { /* already gone */ }
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      c._clearTimeout(p.timer);
      p.done(new SwitchboardError(0, 'connection closed'));
    }
  }
}

/**
 * WebTransport (`/wt`, HTTP/3): WsConn's protocol on one bidirectional stream, in frames of
 * `KIND(u8) LENGTH(u32 BE) PAYLOAD`, plus datagrams (`KIND PAYLOAD`) for latest-wins channels.
 * On a page served from localhost it pins the server's development certificate by the hash
 * from `GET /wt/cert-hash` (`serverCertificateHashes`); elsewhere the certificate must be trusted.
 */
class WtConn extends WsConn {
  constructor(client, name, token) {
    super(client, name, token);
    this.datagrams = true;
    this.writer = null;
    this.dgWriter = null;
  }

  open() {
    const c = this.client;
    const WT = c._WebTransport;
    if (!WT) throw new Error('WebTransport is not available');
    this._start(WT).catch((err) => {
      if (!this.closed) c._lost(this, { code: 0, reason: `webtransport: ${(err && err.message) || err}` });
    });
  }

  async _start(WT) {
    const c = this.client;
    const base = c._httpBase.replace(/^http:/i, 'https:');
    const options = {};
    const host = new URL(base).hostname;
    if ((host === 'localhost' || host === '127.0.0.1' || host === '[::1]') && c._fetch) {
      const hash = await this._certHash();
      if (hash) options.serverCertificateHashes = [{ algorithm: 'sha-256', value: hash }];
    }
    if (this.closed) return;
    const wt = new WT(`${base}/wt`, options);
    this.wt = wt;
    wt.closed.then(
      (info) => c._lost(this, { code: (info && info.closeCode) || 0, reason: (info && info.reason) || 'webtransport closed' }),
      (err) => c._lost(this, { code: 0, reason: (err && err.message) || 'webtransport closed' }),
    );
    await wt.ready;
    if (this.closed) return;
    const stream = await wt.createBidirectionalStream();
    if (this.closed) return;
    this.writer = stream.writable.getWriter();
    this._readStream(stream.readable.getReader());
    if (wt.datagrams) {
      this.dgWriter = wt.datagrams.writable.getWriter();
      this._readDatagrams(wt.datagrams.readable.getReader());
    }
    this._onOpen();
  }

  /** The development certificate's SHA-256, or null (none, or a configured certificate). */
  async _certHash() {
    try {
      const res = await this.client._fetch(this.client._url('/wt/cert-hash'), { headers: { Accept: 'application/json' } });
      if (!res.ok) return null;
      const body = await res.json();
      const hex = String(body.hash || '');
      if (!/^[0-9a-f]{64}$/i.test(hex)) return null;
      return new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
    } catch {
      return null;
    }
  }

  async _readStream(reader) {
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closed) break;
        buf = concatBytes(buf, value);
        let at = 0;
        while (buf.length - at >= 5) {
          const len = new DataView(buf.buffer, buf.byteOffset + at + 1, 4).getUint32(0);
          if (buf.length - at < 5 + len) break;
          const kind = buf[at];
          const payload = buf.subarray(at + 5, at + 5 + len);
          at += 5 + len;
          this._onMessage(kind === WT_TEXT ? utf8Decoder.decode(payload) : payload.slice());
          if (this.closed) return;
        }
        buf = at > 0 ? buf.slice(at) : buf;
      }
    } catch { /* the stream failed: the session's close follows */ }
    if (!this.closed) this.client._lost(this, { code: 0, reason: 'webtransport stream ended' });
  }

  async _readDatagrams(reader) {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closed) return;
        if (!value || value.length < 1) continue;
        const payload = value.subarray(1);
        this._onMessage(value[0] === WT_TEXT ? utf8Decoder.decode(payload) : payload.slice());
      }
    } catch { /* closed */ }
  }

  _writable() {
    return !!this.writer;
  }

  _raw(frame) {
    const text = typeof frame === 'string';
    const payload = text ? utf8Encoder.encode(frame) : toBytes(frame);
    const out = new Uint8Array(5 + payload.length);
    out[0] = text ? WT_TEXT : WT_BINARY;
    new DataView(out.buffer).setUint32(1, payload.length);
    out.set(payload, 5);
    this.writer.write(out).catch(noop); // a failed write ends the session; its close follows
  }

  /** Sends a command as one datagram, without a reply; false when it cannot (then use the stream). */
  sendDatagram(cmd, body) {
    if (!this.dgWriter || this.closed) return false;
    const payload = utf8Encoder.encode(JSON.stringify({ id: this.nextId++, [cmd]: body }));
    const max = this.wt.datagrams.maxDatagramSize || 0;
    if (payload.length + 1 > max) return false;
    const out = new Uint8Array(payload.length + 1);
    out[0] = WT_TEXT;
    out.set(payload, 1);
    this.dgWriter.write(out).catch(noop);
    return true;
  }

  close() {
    if (this.closed) return;
    super.close();
    if (this.wt) {
      try { this.wt.close({ closeCode: 0, reason: 'client closed' }); } catch { /* already gone */ }
    }
  }
}

/**
 * WebRTC data channels (`POST /rtc/dc`, docs/webrtc.md): WsConn's protocol on the reliable,
 * ordered channel `switchboard`; `datagram` subscriptions arrive on `switchboard-unreliable`.
 * Messages of both channels feed the same handler. The server ends a session with a
 * `{"disconnect"}` message (handled by the client as a close code), then closes the connection.
 */
class DcConn extends WsConn {
  constructor(client, name, token) {
    super(client, name, token);
    this.datagrams = true;
    this.pc = null;
    this.dc = null;
    this.udc = null;
  }

  open() {
    const c = this.client;
    if (!c._RTCPeerConnection) throw new Error('RTCPeerConnection is not available');
    if (!c._fetch) throw new Error('fetch is not available');
    this._start().catch((err) => {
      if (!this.closed) c._lost(this, { code: 0, reason: `webrtc: ${(err && err.message) || err}` });
    });
  }

  async _start() {
    const c = this.client;
    const iceServers = await c._fetchIceServers(this.token);
    if (this.closed) return;
    const pc = new c._RTCPeerConnection({ iceServers });
    this.pc = pc;
    const lost = (reason) => c._lost(this, { code: 0, reason });
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') lost(`peer connection ${pc.connectionState}`);
    };
    this.dc = pc.createDataChannel('switchboard');
    this.udc = pc.createDataChannel('switchboard-unreliable', { ordered: false, maxRetransmits: 0 });
    for (const ch of [this.dc, this.udc]) {
      ch.binaryType = 'arraybuffer';
      ch.onmessage = (ev) => this._onMessage(ev.data);
    }
    this.dc.onopen = () => this._onOpen();
    this.dc.onclose = () => lost('data channel closed');
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, c);
    if (this.closed) return;
    const res = await c._fetch(c._url('/rtc/dc'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Accept: 'application/sdp', ...c._authHeaders(this.token) },
      body: pc.localDescription.sdp,
    });
    if (this.closed) return;
    if (!res.ok) {
      c._lost(this, c._httpFailure(await errorFromResponse(res)));
      return;
    }
    const sdp = await res.text();
    if (this.closed) return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
  }

  _writable() {
    return !!this.dc && this.dc.readyState === 'open';
  }

  _raw(frame) {
    try { this.dc.send(frame); } catch { /* the channel's close follows */ }
  }

  close() {
    if (this.closed) return;
    super.close();
    for (const ch of [this.dc, this.udc]) {
      if (!ch) continue;
      ch.onopen = ch.onmessage = ch.onclose = null;
      try { ch.close(); } catch { /* already gone */ }
    }
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      try { this.pc.close(); } catch { /* already gone */ }
    }
  }
}

/** Resolves once `pc` has gathered its ICE candidates, or after ICE_GATHER_MS (on the client's clock). */
function iceGathered(pc, client) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    let timer = null;
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const done = () => {
      client._clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', check);
    timer = client._setTimeout(done, ICE_GATHER_MS);
  });
}

function concatBytes(a, b) {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Shared by the one-way transports: the channels they were opened with, idle when there are none. */
class OneWayConn {
  constructor(client, name, token) {
    this.client = client;
    this.name = name;
    this.token = token;
    this.opened = false;
    this.closed = false;
    this.idle = false;
    this.channels = [...client._subs.keys()];
    this.reopenQueued = false;
  }

  open() {
    if (this.channels.length === 0) {
      // Nothing to listen to: hold no connection until there is.
      this.idle = true;
      this.client._opened(this);
      return;
    }
    this.start();
  }

  /** The set of channels changed: reopen with the new set from the current positions. */
  sync() {
    if (!this.opened || this.closed || this.reopenQueued) return;
    const now = [...this.client._subs.keys()];
    if (now.length === this.channels.length && now.every((ch) => this.channels.includes(ch))) return;
    this.reopenQueued = true;
    // Batch subscribe()/unsubscribe() calls made in the same task into one reopen.
    queueMicrotask(() => this.client._reopen(this));
  }

  close() {
    this.closed = true;
  }
}

class SseConn extends OneWayConn {
  start() {
    const c = this.client;
    const ES = c._EventSource;
    if (!ES) throw new Error('EventSource is not available');
    const query = c._oneWayQuery(this.channels, { tokenInQuery: true, token: this.token, name: true });
    const es = new ES(c._url('/sse', query));
    this.es = es;
    const on = (type, wrap) => es.addEventListener(type, (ev) => {
      if (this.closed) return;
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      c._push(this, wrap(data));
    });
    on('connected', (d) => ({ connected: d }));
    on('subscribed', (d) => ({ subscribed: d }));
    on('join', (d) => ({ join: d }));
    on('leave', (d) => ({ leave: d }));
    on('unsubscribed', (d) => ({ unsubscribed: d }));
    on('disconnect', (d) => ({ disconnect: d }));
    on('message', (d) => ({ pub: d }));
    // The SDK, not the browser, reconnects: then it always knows its positions and state.
    es.onerror = () => c._lost(this, { code: 0, reason: 'EventSource error' });
  }

  close() {
    super.close();
    if (this.es) {
      this.es.onerror = null;
      this.es.close();
    }
  }
}

class StreamConn extends OneWayConn {
  start() {
    const c = this.client;
    if (!c._fetch || typeof AbortController === 'undefined') throw new Error('fetch is not available');
    this.abort = new AbortController();
    const query = c._oneWayQuery(this.channels, { name: true });
    c._fetch(c._url('/stream', query), {
      headers: { Accept: 'application/x-ndjson', ...c._authHeaders(this.token) },
      signal: this.abort.signal,
    }).then(async (res) => {
      if (this.closed) return;
      if (!res.ok) {
        const err = await errorFromResponse(res);
        c._lost(this, c._httpFailure(err));
        return;
      }
      if (!res.body || !res.body.getReader) throw new Error('response streaming is not available');
      const reader = res.body.getReader();
      const splitter = createLineSplitter((line) => {
        if (this.closed) return;
        let msg;
        try { msg = JSON.parse(line); } catch { return; }
        if (msg && typeof msg === 'object') c._push(this, msg);
      });
      for (;;) {
        const { done, value } = await reader.read();
        if (this.closed) {
          reader.cancel().catch(noop);
          return;
        }
        if (done) break;
        splitter.push(value);
      }
      splitter.end();
      c._lost(this, { code: 0, reason: 'stream ended' });
    }).catch((err) => {
      if (!this.closed) c._lost(this, { code: 0, reason: (err && err.message) || 'stream failed' });
    });
  }

  close() {
    super.close();
    if (this.abort) this.abort.abort();
  }
}

class PollConn extends OneWayConn {
  constructor(client, name, token) {
    super(client, name, token);
    this.long = name === 'long-poll';
    // Every channel gets a `subscribed` event from the first response of this connection.
    this.unannounced = new Set(this.channels);
    this.first = true;
    this.timer = null;
  }

  start() {
    if (!this.client._fetch || typeof AbortController === 'undefined') throw new Error('fetch is not available');
    this._poll();
  }

  _poll() {
    const c = this.client;
    this.timer = null;
    if (this.closed) return;
    const query = c._oneWayQuery(this.channels, {});
    // The first request does not wait, so the connection learns where it stands at once.
    const wait = this.long && !this.first ? c._longPollWait : 0;
    if (wait) query.wait = wait;
    const abort = new AbortController();
    this.abort = abort;
    const limit = c._setTimeout(() => abort.abort(), wait * 1000 + c._timeoutMs);
    c._fetch(c._url('/poll', query), {
      headers: { Accept: 'application/json', ...c._authHeaders(this.token) },
      signal: abort.signal,
    }).then(async (res) => {
      let body = null;
      if (res.status !== 204 && res.ok) body = await res.json();
      c._clearTimeout(limit);
      if (this.closed) return;
      if (!res.ok) {
        c._lost(this, c._httpFailure(await errorFromResponse(res)));
        return;
      }
      this.first = false;
      c._opened(this);
      if (this.closed || this.reopenQueued) return;
      this._handle(body, res.headers.get('Switchboard-Cursor'));
      if (this.closed || this.reopenQueued) return;
      if ((body && body.more) || this.long) this._poll();
      else this.timer = c._setTimeout(() => this._poll(), c._pollIntervalMs);
    }).catch((err) => {
      c._clearTimeout(limit);
      if (!this.closed) c._lost(this, { code: 0, reason: (err && err.message) || 'poll failed' });
    });
  }

  /** One poll answer: say where each channel stands when that is news, then deliver in order. */
  _handle(body, headerCursor) {
    const c = this.client;
    const cursor = tryDecodeCursor((body && body.cursor) || headerCursor) || {};
    const pubs = ((body && body.publications) || []).map((p) => normalizePub(p));
    const unrecovered = new Set(body && body.recovered === false ? body.unrecovered || [] : []);
    for (const channel of this.channels) {
      const sub = c._subs.get(channel);
      if (!sub) continue;
      const mine = pubs.filter((p) => p.channel === channel);
      const first = mine[0];
      const pos = sub.position;
      const at = cursor[channel];
      let lost = unrecovered.has(channel);
      if (pos && !lost) {
        // Positions that jump without the publications in between were not honoured.
        const next = first || at;
        if (next && (next.epoch !== pos.epoch || (first ? first.offset > pos.offset + 1 : at.offset > pos.offset))) {
          lost = true;
        }
      }
      if (!lost && !this.unannounced.has(channel) && pos) continue;
      this.unannounced.delete(channel);
      const recovered = !lost && !!pos;
      const start = recovered ? pos : first ? { epoch: first.epoch, offset: first.offset - 1 } : at;
      if (!start) continue; // the server did not say; the next answer will
      sub._subscribed({ epoch: start.epoch, offset: start.offset, recovered, replayed: recovered ? mine.length : 0 });
    }
    for (const p of pubs) {
      const sub = c._subs.get(p.channel);
      if (sub) sub._publication(p);
    }
  }

  close() {
    super.close();
    if (this.timer != null) this.client._clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
  }
}

const CONNS = {
  webtransport: WtConn,
  websocket: WsConn,
  sse: SseConn,
  stream: StreamConn,
  'long-poll': PollConn,
  poll: PollConn,
  webrtc: DcConn,
};
