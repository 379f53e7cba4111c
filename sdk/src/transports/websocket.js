// WebSocket (`/ws`, docs/protocol.md): the JSON protocol with commands and replies. WebTransport
// and WebRTC data channels run the same protocol in their own frames (they extend WsConn).

import { utf8Encoder, utf8Decoder, toBytes } from '../codec.js';
import { SwitchboardError } from '../errors.js';
import { RETRYABLE_CODES, backoffDelay } from '../retry.js';
import { Conn } from './conn.js';

const SUBPROTOCOL = 'switchboard.v1.json';
/** Extra seconds, on top of the server's ping interval, before a silent WebSocket counts as dead. */
const PONG_GRACE_SECS = 10;
const noop = () => {};

/** The client's connection over a WebSocket; framing only, it feeds the client's _push/_opened/_lost. */
export class WsConn extends Conn {
  constructor(client, name, token) {
    super(client, name, token);
    this.nextId = 1;
    this.pending = new Map(); // id → {cmd, done(err, reply), timer}
    this.sent = new Map(); // channel → Subscription sent to the server on this connection
    this.pingSecs = 0;
    this.watchdog = null;
    /** Whether `datagram` subscriptions can be honoured (WebTransport, WebRTC). */
    this.datagrams = false;
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

  /** Sends a command as one datagram, without a reply; false when it cannot (then use the stream). */
  sendDatagram(_cmd, _body) {
    return false;
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
    if (sub._tokenStale) {
      // A private channel's subscription token comes first (`getToken`).
      sub._ensureToken().then(
        () => { if (!this.closed && this.sent.get(sub.channel) === sub) this._sendSubscribe(sub); },
        (err) => {
          if (this.closed || this.sent.get(sub.channel) !== sub) return;
          this.sent.delete(sub.channel);
          client._subscribeFailed(sub, { code: 0, message: `getToken failed: ${err && err.message}` });
        },
      );
      return;
    }
    this._sendSubscribe(sub);
  }

  _sendSubscribe(sub) {
    const client = this.client;
    const body = { channel: sub.channel };
    if (sub._token) body.token = sub._token;
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
