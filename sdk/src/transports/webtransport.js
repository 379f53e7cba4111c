import { utf8Encoder, utf8Decoder, toBytes, concatBytes } from '../codec.js';
import { WsConn } from './websocket.js';

/** WebTransport frame kinds (docs/webtransport.md): a JSON text frame, a binary `HEADER\nPAYLOAD` frame. */
const WT_TEXT = 0;
const WT_BINARY = 1;
const noop = () => {};

/**
 * WebTransport (`/wt`, HTTP/3): WsConn's protocol on one bidirectional stream, in frames of
 * `KIND(u8) LENGTH(u32 BE) PAYLOAD`, plus datagrams (`KIND PAYLOAD`) for latest-wins channels.
 * On a page served from localhost it pins the server's development certificate by the hash
 * from `GET /wt/cert-hash` (`serverCertificateHashes`); elsewhere the certificate must be trusted.
 */
export class WtConn extends WsConn {
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
