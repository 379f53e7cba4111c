// The client: a state machine over transport rounds with fallback, backoff, the token and the HTTP API.

import { bytesToBase64, encodeCursor, isBinary, normalizePub, toBytes } from './codec.js';
import { SwitchboardError, errorFromResponse } from './errors.js';
import { Emitter } from './emitter.js';
import { RETRYABLE_CODES, backoffDelay } from './retry.js';
import { Subscription } from './subscription.js';
import { ensureToken } from './token.js';
import { WsConn } from './transports/websocket.js';
import { WtConn } from './transports/webtransport.js';
import { DcConn } from './transports/webrtc.js';
import { SseConn } from './transports/sse.js';
import { StreamConn } from './transports/stream.js';
import { PollConn } from './transports/poll.js';
import { Room } from './rooms/room.js';

/**
 * Close codes that say "do not reconnect": ours 3500–3999, and the application's 4500–4999
 * (Centrifugo's convention: an application's 4000–4499 reconnect, 4500–4999 do not).
 */
function doNotReconnect(code) {
  return (code >= 3500 && code <= 3999) || (code >= 4500 && code <= 4999);
}

/** @typedef {import('../switchboard.js').TransportName} TransportName */
/** @typedef {import('../switchboard.js').ConnectionState} ConnectionState */
/** @typedef {import('../switchboard.js').Switchboard} SwitchboardApi */

/** @type {TransportName[]} */
const ALL_TRANSPORTS = ['webtransport', 'websocket', 'sse', 'stream', 'long-poll', 'poll'];
/** The default order where the platform has no WebTransport. */
const FALLBACK_TRANSPORTS = ALL_TRANSPORTS.slice(1);
/** Accepted when asked for, never in a default order: the data channel transport is opt-in. */
const KNOWN_TRANSPORTS = [...ALL_TRANSPORTS, 'webrtc'];

/** The connection class of each transport name. */
const CONNS = {
  webtransport: WtConn,
  websocket: WsConn,
  sse: SseConn,
  stream: StreamConn,
  'long-poll': PollConn,
  poll: PollConn,
  webrtc: DcConn,
};

/** @implements {SwitchboardApi} */
export class Switchboard extends Emitter {
  /** @param {import('../switchboard.js').SwitchboardOptions} [opts] */
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
    const timers = opts.timers;
    this._setTimeout = timers?.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms));
    this._clearTimeout = timers?.clearTimeout ?? ((/** @type {any} */ id) => g.clearTimeout(id));
    this._random = opts.random ?? Math.random;

    /** @type {ConnectionState} */
    this.state = 'disconnected';
    /** @type {TransportName | null} The transport in use (the last one that opened). */
    this.transport = null;
    /**
     * Client id the server gave this connection (not on polling). Reconnects keep it (the
     * server's session token reclaims it) unless the server cannot, e.g. after its restart.
     */
    this.clientId = null;
    this._session = null; // the last connect reply's session token
    this._refreshTimer = null; // replaces an expiring token (`getToken`)

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

  /**
   * @param {string} channel
   * @param {import('../switchboard.js').SubscribeOptions} [options]
   */
  subscribe(channel, { since, datagram, token, getToken } = {}) {
    if (typeof channel !== 'string' || channel.length === 0 || channel.length > 255) {
      throw new TypeError('Switchboard: channel must be a name of 1-255 characters');
    }
    if (this._subs.has(channel)) throw new Error(`Switchboard: already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, since, datagram, token, getToken);
    this._subs.set(channel, sub);
    this._sync();
    return sub;
  }

  /** The current subscription to `channel`, if any. */
  getSubscription(channel) { return this._subs.get(channel) ?? null; }

  /**
   * @param {string} channel
   * @param {unknown} data
   * @param {import('../switchboard.js').PublishOptions} [options]
   */
  async publish(channel, data, { idempotencyKey, datagram } = {}) {
    const conn = this._wsConn();
    const binary = isBinary(data);
    const body = { channel };
    if (idempotencyKey != null) body.idempotency_key = idempotencyKey;
    // Fire-and-forget over a WebTransport datagram: no reply, may be lost (cursors, game input).
    if (datagram && conn && !binary && conn.sendDatagram('publish', { ...body, data })) {
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
  /**
   * @param {string} name
   * @param {import('../switchboard.js').RoomOptions} [opts]
   */
  room(name, opts = {}) {
    return new Room(this, name, opts);
  }

  async presence(channel) {
    const conn = this._wsConn();
    if (conn) return conn.call('presence', { channel });
    return this._api('GET', '/api/presence', { query: this._asConnection({ channel }) });
  }

  /**
   * @param {string} channel
   * @param {import('../switchboard.js').HistoryOptions} [options]
   */
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
      res = await this._api('GET', '/api/history', { query: this._asConnection(query) });
    }
    return { ...res, publications: (res.publications || []).map((p) => normalizePub(p)) };
  }

  /**
   * Calls `method` of the application's backend (the server's `app_proxy_url`) with `data` and
   * resolves its result. Needs a connection that carries commands (WebSocket, WebTransport, a
   * data channel): on the others it rejects with code 0.
   * @param {string} method
   * @param {unknown} [data]
   */
  async rpc(method, data = null) {
    if (typeof method !== 'string' || method.length === 0) {
      throw new TypeError('Switchboard: rpc needs a method name');
    }
    const conn = this._wsConn();
    if (!conn) {
      throw new SwitchboardError(0, 'rpc needs a connected WebSocket, WebTransport or data channel transport');
    }
    const res = await conn.call('rpc', { method, data });
    return res.data;
  }

  /** `query` with this connection's session, so the server API reads as this connection (its own
   * signaling inbox). */
  _asConnection(query) {
    if (this._session && this.clientId) query.session = this._session;
    return query;
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
    // One-way transports carry private channels' subscription tokens in their URL: fetch those
    // first (command transports fetch each when they subscribe).
    const oneWay = ['sse', 'stream', 'long-poll', 'poll'].includes(name);
    const subTokens = oneWay ? [...this._subs.values()].filter((s) => s._tokenStale).map((s) => s._ensureToken()) : [];
    if (!this._tokenStale && subTokens.length === 0) return go(this._token);
    Promise.all(subTokens).then(() => this._ensureToken()).then(go, (err) => {
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
    if (info.fatal || doNotReconnect(code)) {
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
    if (this._refreshTimer != null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
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
    } else if (msg.expiring) {
      this._expiring(conn);
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
    this._scheduleRefresh(reply.expires);
  }

  /** With `getToken`, a token that expires (`expires`, Unix seconds) is replaced shortly before:
   * a `refresh` command on a command transport, so nothing reconnects. On the one-way transports
   * (or if the refresh fails) the server closes at expiry with 3005 and the reconnect fetches a
   * fresh token, resuming every subscription. */
  _scheduleRefresh(expires) {
    if (this._refreshTimer != null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!expires || !this._getToken) return;
    const left = expires * 1000 - Date.now();
    const margin = Math.min(60_000, Math.max(5_000, left / 10));
    const gen = this._gen;
    this._refreshTimer = this._setTimeout(() => {
      this._refreshTimer = null;
      if (gen === this._gen) this._refreshToken().catch(() => {});
    }, Math.max(0, left - margin));
  }

  async _refreshToken() {
    const conn = this._wsConn();
    if (!conn) return;
    this._tokenStale = true;
    const token = await this._ensureToken();
    if (!token || this._wsConn() !== conn) return;
    const res = await conn.call('refresh', { token });
    this._scheduleRefresh(res?.expires);
  }

  /** The connection's token expires soon. A command transport refreshes it (`_scheduleRefresh`
   * has usually done so already); a one-way stream cannot, so it reopens with a new token from
   * where it stands, before the server's 3005 close. */
  _expiring(conn) {
    if (!this._getToken || conn !== this._conn || this._wsConn()) return;
    this._tokenStale = true;
    this._ensureToken().then(() => this._reopen(conn), () => {});
  }

  _serverUnsubscribed(conn, u) {
    const sub = this._subs.get(u.channel);
    if (!sub) return;
    // A subscription token expired: with `getToken`, subscribe again with a new one from where
    // the subscription stands (nothing is lost); without, the subscription ends.
    if (u.code === 3005 && sub._getToken) {
      sub._tokenStale = true;
      if (conn.resubscribeLater) {
        conn.resubscribeLater(sub);
      } else {
        sub._ensureToken().then(() => this._reopen(conn), () => {});
      }
      return;
    }
    if (u.code === 3005) {
      this._subs.delete(u.channel);
      sub._end('unsubscribed', { channel: u.channel, code: u.code, reason: u.reason });
      return;
    }
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
    return ensureToken(this, this._getToken && (() => this._getToken()));
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

  /**
   * @param {string} method
   * @param {string} path
   * @param {{query?: Record<string, unknown>, body?: unknown}} [request]
   */
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
    const subTokens = channels.map((ch) => this._subs.get(ch)?._token).filter(Boolean);
    if (subTokens.length) query.sub_token = subTokens;
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
