// Mesh calls: a peer connection per other participant, signalled through their inboxes with
// perfect negotiation (docs/webrtc.md).

import { KINDS, defaultLabel, streamOf } from './tracks.js';

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
/** How many times a signal lost with its connection is sent again. */
const SIGNAL_RETRIES = 3;

/** The mesh of a room: its peers, and the signals between them. */
export class Mesh {
  constructor(room) {
    this.room = room;
    this.peers = new Map(); // client id → MeshPeer
    this.sigTag = Math.floor(room._sb._random() * 2 ** 32).toString(36); // idempotency keys of signals
    this.sigSeq = 0;
    this.sending = new Map(); // participant → the last signal's publish over HTTP (see signal())
  }

  /** A publication on this participant's inbox. */
  onSignal(p) {
    const room = this.room;
    const from = p.info && p.info.client; // set by the server: the only sender we trust
    const msg = p.data;
    if (room.mode !== 'mesh' || room.state === 'left' || !from || from === room.clientId) return;
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'bye') {
      this.close(from, false);
      return;
    }
    let peer = this.peers.get(from);
    if (!peer) {
      if (msg.type !== 'offer') return; // the rest of a connection already closed
      room._addPerson({ client: from, user: p.info.user, name: p.info.name });
      peer = this.peer(from, false);
      if (!peer) return;
    }
    peer.signal(msg);
  }

  /** The peer connection to `id`, made if there is none (`initiator`: this side offers first). */
  peer(id, initiator) {
    if (this.peers.has(id)) return this.peers.get(id);
    try {
      const peer = new MeshPeer(this, id, initiator);
      this.peers.set(id, peer);
      return peer;
    } catch (err) {
      this.room._error(err);
      return null;
    }
  }

  /**
   * `id` left the presence without a `bye`: its connection dropped. It comes back with the same
   * id, so a peer connection that still carries media is kept for `rejoinGraceMs`.
   */
  orphan(id) {
    const room = this.room;
    const peer = this.peers.get(id);
    if (!peer) return;
    if (peer.pc.connectionState !== 'connected' || !(room._rejoinGraceMs > 0)) return this.close(id, false);
    peer.orphan(room._rejoinGraceMs, () => {
      if (!room._people.has(id)) this.close(id, false);
    });
  }

  /** `id` is (back) in the presence: a peer kept for its return carries on. */
  keep(id) {
    const peer = this.peers.get(id);
    if (peer) peer.keep();
  }

  /** Closes the peer connection to `id`; with `bye`, tells them, and resolves once that is sent. */
  close(id, bye) {
    const peer = this.peers.get(id);
    if (!peer) return Promise.resolve();
    this.peers.delete(id);
    const sent = bye ? this.signal(id, { type: 'bye' }) : Promise.resolve();
    peer.close();
    return sent;
  }

  /** Closes every peer connection; resolves once the byes are sent (or failed). */
  closeAll(bye) {
    return Promise.all([...this.peers.keys()].map((id) => this.close(id, bye)));
  }

  addLocal(e) {
    for (const peer of this.peers.values()) peer.addLocal(e);
  }

  removeLocal(e) {
    for (const peer of this.peers.values()) peer.removeLocal(e);
  }

  /** The senders of every peer that send `track`. */
  sendersOf(track) {
    return [...this.peers.values()].flatMap((peer) => peer.pc.getSenders().filter((s) => s.track === track));
  }

  /** A peer connection of the mesh (any: each sends the same local tracks), or null. */
  anyPc() {
    const first = this.peers.values().next().value;
    return first ? first.pc : null;
  }

  /**
   * Signals `to`. A message caught in a dropped connection goes again once the client is back
   * under the same id; its idempotency key makes the server drop a copy that did arrive.
   */
  signal(to, data, key = `${this.room.clientId}.${this.sigTag}.${++this.sigSeq}`, tries = 0) {
    const room = this.room;
    const sb = room._sb;
    const id = room.clientId;
    const publish = () => sb.publish(inboxChannel(room.name, to), data, { idempotencyKey: key });
    // Over HTTP (the SSE, streaming and polling fallbacks) each publish is its own request, and
    // requests can overtake each other: a candidate reaching the peer before its offer fails
    // there (InvalidStateError). So one signal at a time per peer there; a socket keeps order.
    let sent;
    if (sb._wsConn()) {
      sent = publish();
    } else {
      sent = (this.sending.get(to) || Promise.resolve()).then(publish, publish);
      const settled = sent.catch(() => {});
      this.sending.set(to, settled);
      settled.then(() => { if (this.sending.get(to) === settled) this.sending.delete(to); });
    }
    const handled = sent.catch(async (err) => {
      if (room.state === 'left') return;
      if (err && err.code === 102) return this.close(to, false); // they are not in the room any more
      if (err && !err.code && tries < SIGNAL_RETRIES) {
        try { await room._connected(); } catch { return; }
        if (room.clientId === id && sb.clientId === id) this.signal(to, data, key, tries + 1);
        return;
      }
      room._error(err);
    });
    return handled;
  }
}

/** Mesh: the peer connection to one other participant, with perfect negotiation over its inbox. */
class MeshPeer {
  constructor(mesh, id, initiator) {
    const room = mesh.room;
    this.mesh = mesh;
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
    if (!this.closed) this.mesh.signal(this.id, data);
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
