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
  let node = null;
  let code = 0;
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code ?? 0;
      message = body.error.message ?? message;
    }
    if (body && typeof body.node === 'string') node = body.node; // 111: the node that serves it
  } catch { /* not JSON */ }
  return new SwitchboardError(code, message, { status: res.status, ...(node ? { node } : {}) });
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
    /** Asked for latest-wins datagram delivery (honoured on WebTransport and WebRTC only). */
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
    /**
     * Client id the server gave this connection (not on polling). Reconnects keep it (the
     * server's session token reclaims it) unless the server cannot, e.g. after its restart.
     */
    this.clientId = null;
    this._session = null; // the last connect reply's session token

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
    this._session = null; // a deliberate disconnect ends this client's identity
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
    // Over HTTP the session token says which connection publishes (room signaling needs it).
    if (this._session && this.clientId) body.session = this._session;
    if (binary) body.b64 = bytesToBase64(toBytes(data));
    else body.data = data;
    return this._api('POST', '/api/publish', { body });
  }

  /**
   * A WebRTC room (docs/webrtc.md) on channel `name` (`room:NAME`): call `join()` on it.
   * Needs a transport with a client id: any but the polling ones.
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
      this._connected(msg.connected);
      this._opened(conn);
    } else if (msg.unsubscribed) {
      this._serverUnsubscribed(conn, msg.unsubscribed);
    } else if (msg.disconnect) {
      this._lost(conn, { code: msg.disconnect.code, reason: msg.disconnect.reason });
    }
  }

  /** A connect reply (or `connected` event): the client id, and the token to keep it. */
  _connected(reply) {
    const previous = this.clientId;
    this.clientId = reply.client ?? null;
    if (reply.session) this._session = reply.session;
    // A one-way transport reopening for new channels stays 'connected': say when the id changed.
    if (previous && this.clientId !== previous) this._emit('_clientid', { clientId: this.clientId, previous });
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
    const base = /^https?:\/\//i.test(path) ? '' : this._httpBase; // a resource on another node
    return base + path + (parts.length ? `?${parts.join('&')}` : '');
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
    if (name && this._session) query.session = this._session;
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
    if (this.client._session) body.session = this.client._session;
    this._send('connect', body, null, (err, reply) => {
      if (this.closed) return;
      if (err) {
        const client = this.client;
        if (err.code === 101 && client._getToken) client._tokenStale = true;
        const fatal = !err.timeout && !RETRYABLE_CODES.has(err.code) && !(err.code === 101 && client._getToken);
        client._lost(this, { code: err.code, reason: `connect: ${err.message}`, fatal });
        return;
      }
      this.client._connected(reply);
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
      // Refused here (WebRTC off, no usable SDP): the next transport may work, unlike a bad token.
      const err = await errorFromResponse(res);
      c._lost(this, err.status === 401 ? c._httpFailure(err) : { code: err.code, reason: `/rtc/dc: ${err.message}` });
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

// ---------------------------------------------------------------------------------------------
// rooms: WebRTC calls (docs/webrtc.md). Mesh: one peer connection per other participant,
// signalled through inboxes. SFU: one peer connection to the server, negotiated over HTTP.

/** Simulcast layers, low to high; the SFU's `layers` and `setLayer` name them by rid. */
const SIMULCAST_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f', scaleResolutionDownBy: 1 },
];
const KINDS = ['audio', 'video'];

/** The signaling inbox of participant `clientId` in room channel `room` (`room:NAME@CLIENT`). */
export function inboxChannel(room, clientId) {
  return `${room}@${clientId}`;
}

/**
 * Perfect negotiation roles: the peer whose client id sorts lower is polite (on glare it drops
 * its own offer and takes the other's). Both sides compute the same answer, so exactly one yields.
 */
export function isPolite(me, them) {
  return String(me) < String(them);
}

/**
 * What an SFU participant changes so that its receive m-lines carry exactly the room's tracks
 * that are not its own. `receivers`: `[{mid, kind, trackId}]` (trackId null: free); `tracks`: the
 * room's whole track list; `self`: own client id(s). Returns `{release: [{mid, trackId}],
 * assign: [{mid, track}], create: [track]}`: m-lines to stop (a released one may be assigned again
 * in the same plan), free m-lines to point at a track, and tracks that need a new m-line.
 */
export function planSubscriptions(receivers, tracks, self) {
  const mine = new Set(typeof self === 'string' ? [self] : self || []);
  const wanted = new Map();
  for (const t of tracks || []) {
    if (t && t.id != null && KINDS.includes(t.kind) && !mine.has(t.participant) && !wanted.has(t.id)) wanted.set(t.id, t);
  }
  const release = [];
  const free = [];
  const held = new Set();
  for (const r of receivers) {
    const t = r.trackId != null ? wanted.get(r.trackId) : null;
    if (t && t.kind === r.kind && !held.has(t.id)) {
      held.add(t.id);
      continue;
    }
    if (r.trackId != null) release.push({ mid: r.mid, trackId: r.trackId });
    free.push(r);
  }
  const assign = [];
  const create = [];
  for (const t of wanted.values()) {
    if (held.has(t.id)) continue;
    const i = free.findIndex((r) => r.kind === t.kind);
    if (i >= 0) assign.push({ mid: free.splice(i, 1)[0].mid, track: t });
    else create.push(t);
  }
  return { release, assign, create };
}

function defaultLabel(track) {
  return track.kind === 'audio' ? 'mic' : 'camera';
}

function streamOf(track) {
  return typeof MediaStream === 'function' ? new MediaStream([track]) : null;
}

/** Resolves once `sub` is subscribed; rejects when it is refused or the room is left meanwhile. */
/** How many times a signal lost with its connection is sent again. */
const SIGNAL_RETRIES = 3;

/**
 * A promise settled by the first of some events: `listen(ok, fail)` subscribes to them and
 * returns their `off` functions, which all run once it settles.
 */
function firstOf(listen) {
  return new Promise((resolve, reject) => {
    const end = (fn) => (v) => {
      for (const off of offs) off();
      fn(v);
    };
    const offs = listen(end(resolve), end(reject));
  });
}

function whenSubscribed(sub, room) {
  if (sub.state === 'subscribed') return Promise.resolve();
  return firstOf((ok, fail) => [
    sub.on('subscribed', () => ok()),
    sub.on('error', fail),
    sub.on('unsubscribed', (e) => fail(new SwitchboardError(e.code || 0, e.reason || 'unsubscribed'))),
    room.on('_left', () => fail(new SwitchboardError(0, 'left the room'))),
  ]);
}

export class Room extends Emitter {
  constructor(client, name, opts = {}) {
    super();
    if (typeof name !== 'string' || !name || name.length > 255 || name.includes('@')) {
      throw new TypeError('Switchboard: a room is a channel name without `@`, e.g. room:lobby');
    }
    const mode = opts.mode ?? 'mesh';
    if (mode !== 'mesh' && mode !== 'sfu') throw new TypeError(`Switchboard: unknown room mode ${mode}`);
    this._sb = client;
    this.name = name;
    this.mode = mode;
    /** 'idle' | 'joining' | 'joined' | 'left' */
    this.state = 'idle';
    /** This participant's client id; kept across reconnects unless the server cannot (then a rejoin). */
    this.clientId = null;
    this._rejoinGraceMs = opts.rejoinGraceMs ?? 15000;
    this._speakerIntervalMs = opts.speakerIntervalMs ?? 500;
    this._speakerThreshold = opts.speakerThreshold ?? 0.01;
    this._speakerTimer = null;
    this._speakersKey = '';
    this._energy = new Map(); // audio source → {e, d}: totals at the previous measurement
    this._sigTag = Math.floor(client._random() * 2 ** 32).toString(36); // idempotency keys of signals
    this._sigSeq = 0;
    this._givenIce = opts.iceServers ?? null;
    this._iceServers = [];
    this._icePolicy = opts.iceTransportPolicy ?? 'all';
    this._simulcast = !!opts.simulcast;
    this._muted = { audio: false, video: false };
    /** What this participant sends: {track, label, stream, media (from `media`/setMedia)}. */
    this._local = opts.media
      ? opts.media.getTracks().map((track) => ({ track, label: defaultLabel(track), stream: opts.media, media: true }))
      : [];
    this._people = new Map(); // client id → {client, user, name}
    this._pastIds = new Set(); // own ids of earlier connections: presence may still list them
    this._remote = new Map(); // trackId → track event, plus the pc it arrives on
    this._peers = new Map(); // mesh: client id → MeshPeer
    this._sfu = null; // {pc, peer, receivers: [{t, kind, trackId}], senders: Map(local entry → transceiver)}
    this._sfuFailures = 0;
    this._tracks = []; // the SFU's latest track list
    this._syncQueued = false;
    this._queue = Promise.resolve(); // SFU negotiations, one at a time
    this._gen = 0;
    this._sub = null;
    this._inbox = null;
    this._offState = null;
    this._bitrates = new Map(); // trackId → {bytes, at, bitrate} at the previous stats()
    this._reported = new WeakSet();
  }

  // --- public API ---------------------------------------------------------------------------

  /** Everyone in the room (this participant too), from its presence. */
  participants() {
    return [...this._people.values()];
  }

  /** Joins: subscribes to the room and this participant's inbox, then starts the media. */
  async join() {
    if (this.state === 'joining' || this.state === 'joined') return this;
    this.state = 'joining';
    try {
      await this._connected();
      if (this.state !== 'joining') throw new SwitchboardError(0, 'left the room');
      const offState = this._sb.on('state', (e) => this._onClientState(e));
      const offId = this._sb.on('_clientid', () => this._onClientState({ state: this._sb.state }));
      this._offState = () => { offState(); offId(); };
      if (this._listeners.get('speakers')?.size) this._speakerLoop();
      await this._start();
      if (this.state === 'left') throw new SwitchboardError(0, 'left the room');
      return this;
    } catch (err) {
      if (this.state !== 'left') {
        this._error(err);
        this.leave();
      }
      throw err;
    }
  }

  /** Closes every peer connection (mesh peers get a `bye`, the SFU peer a DELETE) and leaves. */
  async leave() {
    if (this.state === 'left') return;
    this.state = 'left';
    this._gen++;
    if (this._speakerTimer != null) this._sb._clearTimeout(this._speakerTimer);
    this._speakerTimer = null;
    this._speakersKey = '';
    this._emit('_left');
    if (this._offState) this._offState();
    this._offState = null;
    for (const id of [...this._peers.keys()]) this._closePeer(id, true);
    const deleted = this._teardownSfu();
    if (this._inbox) this._inbox.unsubscribe();
    if (this._sub) this._sub.unsubscribe();
    this._inbox = this._sub = null;
    this.clientId = null;
    this._people.clear();
    this._tracks = [];
    this._emit('participants', []);
    await deleted;
  }

  /** Replaces the camera/microphone media (tracks of the same kind are swapped without renegotiating). */
  setMedia(stream) {
    const old = this._local.filter((e) => e.media);
    for (const track of stream ? stream.getTracks() : []) {
      const i = old.findIndex((e) => e.track.kind === track.kind);
      if (i < 0) {
        this._publish({ track, label: defaultLabel(track), stream, media: true });
        continue;
      }
      const e = old.splice(i, 1)[0];
      e.stream = stream;
      this._replace(e, track);
    }
    for (const e of old) this._unpublish(e);
  }

  /** Sends one more track, e.g. a screen share: `addTrack(screenTrack, 'screen')`. */
  addTrack(track, label = defaultLabel(track)) {
    if (this._local.some((e) => e.track === track)) return;
    this._publish({ track, label: String(label), stream: streamOf(track), media: false });
  }

  /** Stops sending `track` (the track itself keeps running: stop it yourself). */
  removeTrack(track) {
    const e = this._local.find((x) => x.track === track);
    if (e) this._unpublish(e);
  }

  /** Mutes (track.enabled = false) every local track of `kind` except screen shares. */
  setMuted(kind, muted) {
    this._muted[kind] = !!muted;
    for (const e of this._local) if (e.track.kind === kind && e.label !== 'screen') e.track.enabled = !muted;
  }

  /** SFU: asks for simulcast layer `rid` ('q' | 'h' | 'f') of a received track. */
  setLayer(trackId, rid) {
    return this._enqueue(async () => {
      const sfu = this._sfu;
      const r = sfu && sfu.peer && sfu.receivers.find((x) => x.trackId === trackId && x.t.mid != null);
      if (!r) throw new SwitchboardError(0, `setLayer: track ${trackId} is not received from the SFU`);
      await this._sb._api('PATCH', this._peerPath(sfu), { body: { layers: { [r.t.mid]: rid } } });
    });
  }

  /** Listening for `speakers` starts measuring audio levels (every `speakerIntervalMs`). */
  on(type, fn) {
    const off = super.on(type, fn);
    if (type === 'speakers' && (this.state === 'joining' || this.state === 'joined')) this._speakerLoop();
    return off;
  }

  /** Inbound statistics of each remote track: size, frames decoded, bitrate since the last call. */
  async stats() {
    const out = [];
    const pcs = new Set([...this._remote.values()].map((i) => i.pc));
    for (const pc of pcs) {
      let report;
      try { report = await pc.getStats(); } catch { continue; }
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const info = this._remoteFor(pc, s);
        if (info) out.push(this._trackStats(info, s));
      });
    }
    return out;
  }

  // --- active speakers ----------------------------------------------------------------------

  _speakerLoop() {
    if (this._speakerTimer != null) return;
    const tick = async () => {
      const listening = this._listeners.get('speakers')?.size > 0;
      if (this.state === 'left' || !listening) {
        this._speakerTimer = null;
        return;
      }
      try {
        await this._measureSpeakers();
      } catch {
        // getStats fails on a peer connection closing under it: the next round measures again
      }
      this._speakerTimer = this._sb._setTimeout(tick, this._speakerIntervalMs);
    };
    this._speakerTimer = this._sb._setTimeout(tick, this._speakerIntervalMs);
  }

  /**
   * Who spoke since the last round: the RMS level of each participant's audio over the round
   * (from the energy totals in getStats, so short sounds between two rounds count), this
   * participant's own microphone included. `speakers` fires when the loudest-first list changes.
   */
  async _measureSpeakers() {
    const before = this._energy;
    const now = new Map();
    const levels = new Map(); // client id → level
    const note = (key, client, s) => {
      const e = s.totalAudioEnergy;
      const d = s.totalSamplesDuration;
      if (typeof e !== 'number' || typeof d !== 'number' || !client) return false;
      now.set(key, { e, d });
      const prev = before.get(key);
      if (!prev || d <= prev.d) return false;
      louder(client, Math.sqrt(Math.max(0, e - prev.e) / (d - prev.d)));
      return true;
    };
    const louder = (client, level) => {
      if (level > (levels.get(client) ?? 0)) levels.set(client, level);
    };
    const heard = []; // remote audio not played out (no energy totals): the last packet's level
    const pcs = new Set([...this._remote.values()].map((i) => i.pc));
    const mine = this._sfu ? this._sfu.pc : [...this._peers.values()].map((p) => p.pc)[0];
    if (mine) pcs.add(mine);
    for (const pc of pcs) {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.kind !== 'audio') return;
        if (s.type === 'inbound-rtp') {
          const info = this._remoteFor(pc, s);
          if (info) note(`in:${info.trackId}`, info.participant.client, s) || heard.push(info);
        } else if (s.type === 'media-source' && pc === mine && !this._muted.audio) {
          note(`out:${s.trackIdentifier || s.id}`, this.clientId, s);
        }
      });
    }
    for (const info of heard) {
      const receiver = info.pc.getReceivers().find((r) => r.track === info.track);
      const src = receiver && receiver.getSynchronizationSources ? receiver.getSynchronizationSources()[0] : null;
      if (src && typeof src.audioLevel === 'number') louder(info.participant.client, src.audioLevel);
    }
    this._energy = now;
    if (this.state !== 'joined') return;
    const speakers = [...levels]
      .filter(([, level]) => level >= this._speakerThreshold)
      .sort((a, b) => b[1] - a[1])
      .map(([client, level]) => ({ participant: this._participant(client), level }));
    const key = speakers.map((x) => x.participant.client).join(',');
    if (key === this._speakersKey) return;
    this._speakersKey = key;
    this._emit('speakers', speakers);
  }

  // --- joining and rejoining ----------------------------------------------------------------

  async _connected() {
    const sb = this._sb;
    if (sb.state === 'disconnected' || sb.state === 'closed') sb.connect();
    if (sb.state !== 'connected') {
      await firstOf((ok, fail) => [
        sb.on('state', (e) => {
          if (e.state === 'connected') ok();
          else if (e.state === 'closed' || e.state === 'disconnected') {
            fail(new SwitchboardError(e.code || 0, `cannot connect: ${e.reason || e.state}`));
          }
        }),
        this.on('_left', () => fail(new SwitchboardError(0, 'left the room'))),
      ]);
    }
  }

  /**
   * A reconnect normally keeps the client id, and with it the inbox, peer connections and SFU
   * tracks. A new id (the server could not reclaim the old one) is a new participant: rejoin.
   */
  _onClientState(e) {
    const id = this._sb.clientId;
    if (e.state !== 'connected' || !id || id === this.clientId) return;
    if (this.state !== 'joined' && this.state !== 'joining') return;
    this._teardownMedia();
    this.state = 'joining';
    this._start().catch((err) => this._error(err));
  }

  async _start() {
    const gen = ++this._gen;
    const sb = this._sb;
    if (!this._sub || sb.getSubscription(this.name) !== this._sub) this._sub = this._subscribeRoom();
    // A one-way transport holds no connection (and has no client id) until it has a channel.
    if (!sb.clientId) await whenSubscribed(this._sub, this);
    if (gen !== this._gen) return;
    if (!sb.clientId) {
      throw new SwitchboardError(0, 'rooms need a transport with a client id: not short or long polling');
    }
    if (this.clientId && this.clientId !== sb.clientId) {
      this._pastIds.add(this.clientId);
      this._people.delete(this.clientId);
    }
    this.clientId = sb.clientId;
    // ICE servers first: an offer may arrive as soon as the inbox is subscribed.
    this._iceServers = this._givenIce ?? (await sb._fetchIceServers(await sb._ensureToken()));
    if (gen !== this._gen) return;
    if (this._inbox) this._inbox.unsubscribe();
    const inbox = sb.subscribe(inboxChannel(this.name, this.clientId));
    this._inbox = inbox;
    inbox.on('publication', (p) => this._onSignal(p));
    inbox.on('error', (err) => this._error(err));
    await Promise.all([whenSubscribed(inbox, this), whenSubscribed(this._sub, this)]);
    if (gen !== this._gen) return;
    await this._refreshPresence();
    if (gen !== this._gen) return;
    this.state = 'joined';
    if (this.mode === 'mesh') {
      // The newcomer offers to everyone already there; members wait for newcomers' offers.
      for (const id of this._people.keys()) if (id !== this.clientId) this._meshPeer(id, true);
    } else {
      await this._enqueue(() => this._sfuStart(gen));
    }
  }

  _subscribeRoom() {
    const sub = this._sb.subscribe(this.name);
    sub.on('publication', (p) => this._onRoomPub(p));
    sub.on('join', (e) => this._addPerson(e));
    sub.on('leave', (e) => this._removePerson(e.client));
    // A resume may have missed joins and leaves: ask again.
    sub.on('subscribed', () => {
      if (this.state === 'joined') this._refreshPresence().catch((err) => this._error(err));
    });
    sub.on('error', (err) => this._error(err));
    sub.on('unsubscribed', (e) => this._error(new SwitchboardError(e.code || 0, `removed from ${this.name}: ${e.reason}`)));
    return sub;
  }

  _onRoomPub(p) {
    const d = p.data;
    if (this.mode !== 'sfu' || !d || typeof d !== 'object' || !d.sfu || !Array.isArray(d.sfu.tracks)) return;
    this._tracks = d.sfu.tracks;
    this._sfuSyncSoon();
  }

  _teardownMedia() {
    for (const id of [...this._peers.keys()]) this._closePeer(id, false);
    this._teardownSfu();
  }

  // --- participants -------------------------------------------------------------------------

  async _refreshPresence() {
    const res = await this._sb.presence(this.name);
    const now = new Map();
    for (const [id, info] of Object.entries((res && res.clients) || {})) {
      now.set(id, { client: id, user: info && info.user, name: info && info.name });
    }
    let changed = false;
    for (const id of [...this._people.keys()]) if (!now.has(id)) changed = this._removePerson(id, true) || changed;
    for (const p of now.values()) changed = this._addPerson(p, true) || changed;
    if (changed) this._emit('participants', this.participants());
  }

  _addPerson(e, quiet) {
    const id = e.client;
    if (!id || this._pastIds.has(id) || this.state === 'left') return false;
    const peer = this._peers.get(id);
    if (peer) peer.keep(); // back within the grace: the call goes on
    const known = this._people.has(id);
    const p = { client: id, user: e.user ?? null, name: e.name ?? null };
    this._people.set(id, p);
    if (known) return false;
    if (id !== this.clientId) this._emit('join', p);
    if (!quiet) this._emit('participants', this.participants());
    return true;
  }

  _removePerson(id, quiet) {
    this._orphanPeer(id);
    const p = this._people.get(id);
    if (!p) return false;
    this._people.delete(id);
    if (id !== this.clientId) this._emit('leave', p);
    if (!quiet) this._emit('participants', this.participants());
    return true;
  }

  _participant(id, name) {
    return this._people.get(id) || { client: id, user: null, name: name ?? null };
  }

  // --- local media --------------------------------------------------------------------------

  _publish(e) {
    if (e.label !== 'screen' && this._muted[e.track.kind]) e.track.enabled = false;
    this._local.push(e);
    for (const peer of this._peers.values()) peer.addLocal(e);
    if (this._sfu) this._enqueue(() => this._sfuPublish(e));
  }

  _unpublish(e) {
    this._local = this._local.filter((x) => x !== e);
    for (const peer of this._peers.values()) peer.removeLocal(e);
    if (this._sfu) this._enqueue(() => this._sfuUnpublish(e));
  }

  _replace(e, track) {
    const old = e.track;
    e.track = track;
    if (e.label !== 'screen' && this._muted[track.kind]) track.enabled = false;
    const senders = [];
    for (const peer of this._peers.values()) senders.push(...peer.pc.getSenders().filter((s) => s.track === old));
    const t = this._sfu && this._sfu.senders.get(e);
    if (t) senders.push(t.sender);
    for (const s of senders) s.replaceTrack(track).catch((err) => this._error(err));
  }

  _pcConfig() {
    return { iceServers: this._iceServers, iceTransportPolicy: this._icePolicy, bundlePolicy: 'max-bundle' };
  }

  /** Offer with every candidate in it (the SFU takes no trickle): gathering done or 2 s. */
  async _offer(pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, this._sb);
    return pc.localDescription.sdp;
  }

  // --- mesh ---------------------------------------------------------------------------------

  _onSignal(p) {
    const from = p.info && p.info.client; // set by the server: the only sender we trust
    const msg = p.data;
    if (this.mode !== 'mesh' || this.state === 'left' || !from || from === this.clientId) return;
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'bye') {
      this._closePeer(from, false);
      return;
    }
    let peer = this._peers.get(from);
    if (!peer) {
      if (msg.type !== 'offer') return; // the rest of a connection already closed
      this._addPerson({ client: from, user: p.info.user, name: p.info.name });
      peer = this._meshPeer(from, false);
      if (!peer) return;
    }
    peer.signal(msg);
  }

  _meshPeer(id, initiator) {
    if (this._peers.has(id)) return this._peers.get(id);
    try {
      const peer = new MeshPeer(this, id, initiator);
      this._peers.set(id, peer);
      return peer;
    } catch (err) {
      this._error(err);
      return null;
    }
  }

  /**
   * `id` left the presence without a `bye`: its connection dropped. It comes back with the same
   * id, so a peer connection that still carries media is kept for `rejoinGraceMs`.
   */
  _orphanPeer(id) {
    const peer = this._peers.get(id);
    if (!peer) return;
    if (peer.pc.connectionState !== 'connected' || !(this._rejoinGraceMs > 0)) return this._closePeer(id, false);
    peer.orphan(this._rejoinGraceMs, () => {
      if (!this._people.has(id)) this._closePeer(id, false);
    });
  }

  _closePeer(id, bye) {
    const peer = this._peers.get(id);
    if (!peer) return;
    this._peers.delete(id);
    if (bye) this._signal(id, { type: 'bye' });
    peer.close();
  }

  /**
   * Signals `to`. A message caught in a dropped connection goes again once the client is back
   * under the same id; its idempotency key makes the server drop a copy that did arrive.
   */
  _signal(to, data, key = `${this.clientId}.${this._sigTag}.${++this._sigSeq}`, tries = 0) {
    const id = this.clientId;
    this._sb.publish(inboxChannel(this.name, to), data, { idempotencyKey: key }).catch(async (err) => {
      if (this.state === 'left') return;
      if (err && err.code === 102) return this._closePeer(to, false); // they are not in the room any more
      if (err && !err.code && tries < SIGNAL_RETRIES) {
        try { await this._connected(); } catch { return; }
        if (this.clientId === id && this._sb.clientId === id) this._signal(to, data, key, tries + 1);
        return;
      }
      this._error(err);
    });
  }

  // --- SFU ----------------------------------------------------------------------------------

  /** Runs `fn` after every negotiation before it. The result rejects on failure; the error event fires too. */
  _enqueue(fn) {
    const task = this._queue.then(fn);
    this._queue = task.catch((err) => this._error(err));
    return task;
  }

  /** The SFU peer's resource: the absolute URL the server gave (another node's, in a cluster). */
  _peerPath(sfu) {
    return sfu.url || `/rtc/peers/${encodeURIComponent(sfu.peer)}`;
  }

  async _sfuStart(gen) {
    if (gen !== this._gen || this.state !== 'joined') return;
    const pc = new this._sb._RTCPeerConnection(this._pcConfig());
    const sfu = { pc, peer: null, receivers: [], senders: new Map() };
    this._sfu = sfu;
    pc.onconnectionstatechange = () => this._sfuState(sfu);
    try {
      for (const e of this._local) this._sfuSender(sfu, e);
      // An offer needs an m-line: with nothing to send, start with free receive m-lines.
      if (!this._local.length) for (const kind of KINDS) this._sfuReceiver(sfu, kind);
      const sdp = await this._offer(pc);
      if (sfu !== this._sfu) return;
      const publish = {};
      for (const [e, t] of sfu.senders) publish[t.mid] = e.label;
      const body = { client: this.clientId, sdp, publish, subscribe: {} };
      const path = `/rtc/sfu/${encodeURIComponent(this.name)}`;
      let res;
      try {
        res = await this._sb._api('POST', path, { body });
      } catch (err) {
        // In a cluster the room's media lives on one node: go there (code 111 names it).
        if (!(err && err.code === 111 && err.node)) throw err;
        res = await this._sb._api('POST', `${err.node.replace(/\/+$/, '')}${path}`, { body });
      }
      if (sfu !== this._sfu) {
        this._sfuDelete({ peer: res.peer, url: res.url });
        return;
      }
      sfu.peer = res.peer;
      sfu.url = res.url || null;
      await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
      if (Array.isArray(res.tracks)) this._tracks = res.tracks;
    } catch (err) {
      if (sfu !== this._sfu) return;
      this._teardownSfu();
      throw err;
    }
    this._sfuSyncSoon();
  }

  _sfuSender(sfu, e) {
    const init = { direction: 'sendonly' };
    if (e.stream) init.streams = [e.stream];
    if (this._simulcast && e.track.kind === 'video') init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
    const t = sfu.pc.addTransceiver(e.track, init);
    sfu.senders.set(e, t);
    return t;
  }

  _sfuReceiver(sfu, kind) {
    const r = { t: sfu.pc.addTransceiver(kind, { direction: 'recvonly' }), kind, trackId: null };
    sfu.receivers.push(r);
    return r;
  }

  async _sfuPublish(e) {
    const sfu = this._sfu;
    if (!sfu || !sfu.peer || sfu.senders.has(e) || !this._local.includes(e)) return;
    const t = this._sfuSender(sfu, e);
    await this._sfuRenegotiate(sfu, () => ({ publish: { [t.mid]: e.label } }), () => {
      sfu.senders.delete(e);
      t.stop();
    });
  }

  async _sfuUnpublish(e) {
    const sfu = this._sfu;
    const t = sfu && sfu.peer && sfu.senders.get(e);
    if (!t) return;
    sfu.senders.delete(e);
    t.stop(); // rejected in the next offer: the server drops the track
    await this._sfuRenegotiate(sfu, () => ({}), noop);
  }

  /** New offer, `PATCH {sdp, ...extra()}`, answer. `undo` runs after a rollback when it fails. */
  async _sfuRenegotiate(sfu, extra, undo) {
    try {
      const sdp = await this._offer(sfu.pc);
      const res = await this._sb._api('PATCH', this._peerPath(sfu), { body: { sdp, ...extra() } });
      if (sfu === this._sfu) await sfu.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    } catch (err) {
      if (sfu !== this._sfu) return;
      await this._rollback(sfu);
      undo();
      throw err;
    }
  }

  async _rollback(sfu) {
    if (sfu.pc.signalingState !== 'have-local-offer') return;
    try { await sfu.pc.setLocalDescription({ type: 'rollback' }); } catch { /* the next offer starts over */ }
  }

  _sfuSyncSoon() {
    if (this._syncQueued || this.mode !== 'sfu') return;
    this._syncQueued = true;
    this._enqueue(() => this._sfuSync());
  }

  /** Brings the receive m-lines in line with the latest track list, in one PATCH. */
  async _sfuSync() {
    this._syncQueued = false;
    const sfu = this._sfu;
    if (!sfu || !sfu.peer) return;
    const live = sfu.receivers.filter((r) => r.t.mid != null);
    const mine = [this.clientId, ...this._pastIds];
    const plan = planSubscriptions(live.map((r) => ({ mid: r.t.mid, kind: r.kind, trackId: r.trackId })), this._tracks, mine);
    if (!plan.release.length && !plan.assign.length && !plan.create.length) return;
    const at = (mid) => live.find((r) => r.t.mid === mid);
    const subscribe = {};
    for (const { mid, trackId } of plan.release) {
      at(mid).trackId = null;
      subscribe[mid] = null;
      this._trackEnded(trackId);
    }
    const created = plan.create.map((track) => [this._sfuReceiver(sfu, track.kind), track]);
    const fresh = [...plan.assign.map(({ mid, track }) => [at(mid), track]), ...created];
    for (const [r, track] of fresh) r.trackId = track.id;
    try {
      const body = { subscribe };
      if (created.length) body.sdp = await this._offer(sfu.pc);
      for (const [r, track] of fresh) subscribe[r.t.mid] = track.id;
      const res = await this._sb._api('PATCH', this._peerPath(sfu), { body });
      if (body.sdp && sfu === this._sfu) await sfu.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    } catch (err) {
      if (sfu !== this._sfu) return;
      // Free what the server did not take; the next track list tries again.
      for (const [r] of fresh) r.trackId = null;
      await this._rollback(sfu);
      for (const [r] of created) {
        try { r.t.stop(); } catch { /* never negotiated */ }
        sfu.receivers = sfu.receivers.filter((x) => x !== r);
      }
      throw err;
    }
    if (sfu !== this._sfu) return;
    for (const [r, track] of fresh) {
      const mst = r.t.receiver.track;
      this._addRemote({
        participant: this._participant(track.participant, track.name),
        track: mst,
        stream: streamOf(mst),
        kind: track.kind,
        label: track.label || defaultLabel(mst),
        trackId: track.id,
        mid: r.t.mid,
        layers: Array.isArray(track.layers) ? track.layers : [],
        pc: sfu.pc,
      });
    }
  }

  _sfuState(sfu) {
    if (sfu !== this._sfu) return;
    const s = sfu.pc.connectionState;
    if (s === 'connected') this._sfuFailures = 0;
    if (s !== 'failed') return;
    // The server drops a failed peer's tracks: start a new peer connection after a backoff delay.
    this._error(new SwitchboardError(0, 'SFU connection failed'));
    this._teardownSfu();
    const gen = this._gen;
    const sb = this._sb;
    sb._setTimeout(() => {
      if (gen === this._gen && this.state === 'joined') this._enqueue(() => this._sfuStart(gen));
    }, backoffDelay(this._sfuFailures++, sb._backoff, sb._random));
  }

  /** Closes the SFU peer connection; resolves once the server was told (DELETE). */
  _teardownSfu() {
    const sfu = this._sfu;
    if (!sfu) return Promise.resolve();
    this._sfu = null;
    sfu.pc.onconnectionstatechange = null;
    try { sfu.pc.close(); } catch { /* already closed */ }
    this._endTracksOf(sfu.pc);
    return this._sfuDelete(sfu);
  }

  _sfuDelete(sfu) {
    if (!sfu.peer) return Promise.resolve();
    return this._sb._api('DELETE', this._peerPath(sfu)).then(noop, noop);
  }

  // --- remote tracks ------------------------------------------------------------------------

  _addRemote(info) {
    this._remote.set(info.trackId, info);
    const { pc, ...event } = info;
    this._emit('track', event);
  }

  _trackEnded(trackId) {
    const info = this._remote.get(trackId);
    if (!info) return;
    this._remote.delete(trackId);
    this._bitrates.delete(trackId);
    this._emit('trackended', { participant: info.participant, trackId, kind: info.kind, label: info.label });
  }

  _endTracksOf(pc) {
    for (const [trackId, info] of [...this._remote]) if (info.pc === pc) this._trackEnded(trackId);
  }

  _remoteFor(pc, s) {
    for (const i of this._remote.values()) {
      if (i.pc === pc && ((s.mid != null && i.mid === s.mid) || (s.trackIdentifier && s.trackIdentifier === i.track.id))) return i;
    }
    return null;
  }

  _trackStats(info, s) {
    const prev = this._bitrates.get(info.trackId);
    const bytes = s.bytesReceived || 0;
    const at = s.timestamp || Date.now();
    let bitrate = prev ? prev.bitrate : 0;
    if (prev && at > prev.at && bytes >= prev.bytes) bitrate = Math.round(((bytes - prev.bytes) * 8000) / (at - prev.at));
    this._bitrates.set(info.trackId, { bytes, at, bitrate });
    return {
      trackId: info.trackId,
      participant: info.participant,
      kind: info.kind,
      label: info.label,
      mid: info.mid,
      width: s.frameWidth ?? null,
      height: s.frameHeight ?? null,
      framesDecoded: s.framesDecoded ?? null,
      framesPerSecond: s.framesPerSecond ?? null,
      bitrate,
      bytesReceived: bytes,
      packetsLost: s.packetsLost ?? 0,
    };
  }

  /** Every failure ends here, once: the `error` event (or the console when nobody listens). */
  _error(err) {
    if (this.state === 'left') return;
    const e = err instanceof Error ? err : new SwitchboardError(0, String((err && err.message) || err));
    if (this._reported.has(e)) return;
    this._reported.add(e);
    const set = this._listeners.get('error');
    if (set && set.size) this._emit('error', e);
    else report(e);
  }
}

/** Mesh: the peer connection to one other participant, with perfect negotiation over its inbox. */
class MeshPeer {
  constructor(room, id, initiator) {
    this.room = room;
    this.id = id;
    this.polite = isPolite(room.clientId, id);
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.closed = false;
    this.labels = {}; // their mid → label, from their offers and answers
    this.mids = new Map(); // mid → trackId of the remote tracks surfaced
    this.chain = Promise.resolve(); // signals are handled one at a time, in order
    const pc = new room._sb._RTCPeerConnection(room._pcConfig());
    this.pc = pc;
    pc.onnegotiationneeded = () => this._offer();
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (c && c.candidate) {
        this._send({ type: 'candidate', candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } });
      }
    };
    pc.ontrack = (ev) => this._track(ev);
    // Try an ICE restart; a peer that is really gone leaves the room's presence.
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && typeof pc.restartIce === 'function') pc.restartIce();
    };
    for (const e of room._local) this.addLocal(e);
    // The initiator's offer has an m-line of each kind, so the other side's media has one to answer on.
    if (initiator) {
      for (const kind of KINDS) {
        if (!room._local.some((e) => e.track.kind === kind)) pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
  }

  addLocal(e) {
    try {
      if (e.stream) this.pc.addTrack(e.track, e.stream);
      else this.pc.addTrack(e.track);
    } catch (err) {
      this.room._error(err);
    }
  }

  removeLocal(e) {
    const s = this.pc.getSenders().find((x) => x.track === e.track);
    if (!s) return;
    try { this.pc.removeTrack(s); } catch (err) { this.room._error(err); }
  }

  signal(msg) {
    this.chain = this.chain.then(() => this._handle(msg)).catch((err) => {
      if (!this.closed) this.room._error(err);
    });
  }

  async _offer() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const d = this.pc.localDescription;
      this._send({ type: d.type, sdp: d.sdp, labels: this._labels() });
    } catch (err) {
      if (!this.closed) this.room._error(err);
    } finally {
      this.makingOffer = false;
    }
  }

  async _handle(msg) {
    const pc = this.pc;
    if (this.closed) return;
    if ((msg.type === 'offer' || msg.type === 'answer') && typeof msg.sdp === 'string') {
      if (msg.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale
      const collision = msg.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      if (msg.labels && typeof msg.labels === 'object') Object.assign(this.labels, msg.labels);
      await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp }); // polite: rolls back its own offer
      if (msg.type === 'offer') {
        await pc.setLocalDescription();
        this._send({ type: 'answer', sdp: pc.localDescription.sdp, labels: this._labels() });
      }
      if (pc.signalingState === 'stable') this._checkEnded();
    } else if (msg.type === 'candidate' && msg.candidate && typeof msg.candidate === 'object') {
      try {
        await pc.addIceCandidate(msg.candidate);
      } catch (err) {
        if (!this.ignoreOffer) throw err; // candidates of an offer we ignored fail: expected
      }
    }
  }

  /** Our mid → label for what we send, so the other side can tell a screen from a camera. */
  _labels() {
    const out = {};
    for (const t of this.pc.getTransceivers()) {
      const e = t.mid != null && t.sender.track && this.room._local.find((x) => x.track === t.sender.track);
      if (e) out[t.mid] = e.label;
    }
    return out;
  }

  _track(ev) {
    const track = ev.track;
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    if (mid != null) {
      const before = this.mids.get(mid);
      if (before && before !== track.id) this.room._trackEnded(before);
      this.mids.set(mid, track.id);
    }
    this.room._addRemote({
      participant: this.room._participant(this.id),
      track,
      stream: (ev.streams && ev.streams[0]) || streamOf(track),
      kind: track.kind,
      label: (mid != null && this.labels[mid]) || defaultLabel(track),
      trackId: track.id,
      mid,
      pc: this.pc,
    });
  }

  /** After a negotiation: tracks whose m-line no longer receives have ended. */
  _checkEnded() {
    const all = this.pc.getTransceivers();
    for (const [mid, trackId] of [...this.mids]) {
      const t = all.find((x) => x.mid === mid);
      const dir = t && !t.stopped ? t.currentDirection : null;
      if (dir === 'recvonly' || dir === 'sendrecv') continue;
      this.mids.delete(mid);
      this.room._trackEnded(trackId);
    }
  }

  _send(data) {
    if (!this.closed) this.room._signal(this.id, data);
  }

  /** Its participant left without a `bye`: run `expire` after `ms` unless `keep()` comes first. */
  orphan(ms, expire) {
    if (this.orphanTimer != null || this.closed) return;
    const timers = this.room._sb;
    this.orphanTimer = timers._setTimeout(() => {
      this.orphanTimer = null;
      expire();
    }, ms);
  }

  keep() {
    if (this.orphanTimer == null) return;
    this.room._sb._clearTimeout(this.orphanTimer);
    this.orphanTimer = null;
  }

  close() {
    if (this.closed) return;
    this.keep();
    this.closed = true;
    const pc = this.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
    try { pc.close(); } catch { /* already closed */ }
    this.room._endTracksOf(pc);
  }
}
