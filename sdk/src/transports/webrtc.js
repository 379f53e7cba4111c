import { errorFromResponse } from '../errors.js';
import { iceGathered } from '../ice.js';
import { WsConn } from './websocket.js';

/**
 * WebRTC data channels (`POST /rtc/dc`, docs/webrtc.md): WsConn's protocol on the reliable,
 * ordered channel `switchboard`; `datagram` subscriptions arrive on `switchboard-unreliable`.
 * Messages of both channels feed the same handler. The server ends a session with a
 * `{"disconnect"}` message (handled by the client as a close code), then closes the connection.
 */
export class DcConn extends WsConn {
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
